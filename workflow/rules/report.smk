# Report: LaTeX tables with CSV twins, the long metrics table and the figures.


localrules:
    make_table,
    make_metrics_csv,
    make_figures,
    make_figure2,


METRICS = ["fid", "robust", "ood", "calibration", "counterfactual"]


rule make_table:
    input:
        table_files,
    output:
        tex="results/tables/{table}.tex",
        csv=report(
            "results/tables/{table}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    log:
        "logs/make_table/{table}.log",
    benchmark:
        "benchmarks/make_table/{table}.tsv"
    conda:
        ENV
    params:
        command=lambda wildcards: table_command(wildcards.table),
    shell:
        "{params.command} --out-tex {output.tex} --out-csv {output.csv} > {log} 2>&1"


rule make_metrics_csv:
    input:
        metrics=expand(
            "results/{run}/metrics/{metric}.json",
            run=table_runs("table1"),
            metric=METRICS,
        ),
    output:
        csv="results/report/metrics.csv",
    log:
        "logs/make_metrics_csv/metrics.log",
    benchmark:
        "benchmarks/make_metrics_csv/metrics.tsv"
    conda:
        ENV
    params:
        runs=" ".join(f"results/{run}" for run in table_runs("table1")),
    shell:
        "python -m dat.report metrics --runs {params.runs} --out {output.csv} > {log} 2>&1"


rule make_figures:
    input:
        figure_inputs(),
    output:
        figures=[
            report(
                path,
                caption="../report/figures.rst",
                category="Figures",
                labels={"figure": Path(path).name},
            )
            for path in figure_paths()
        ],
    log:
        "logs/make_figures/figures.log",
    benchmark:
        "benchmarks/make_figures/figures.tsv"
    conda:
        ENV
    params:
        commands=figure_commands(),
    shell:
        "({params.commands}) > {log} 2>&1"


# paper Figure 2: stage-2 curves of the BCE-augmentation ablation (part of the `ablations` target)
rule make_figure2:
    input:
        bce_figure_inputs(),
    output:
        figures=[
            report(
                f"results/figures/figure2_bce_augment.{ext}",
                caption="../report/figures.rst",
                category="Figures",
                labels={"figure": f"figure2_bce_augment.{ext}"},
            )
            for ext in ("png", "pdf")
        ],
    log:
        "logs/make_figures/figure2.log",
    conda:
        ENV
    params:
        commands=figure_commands(bce_figure_group()),
    shell:
        "({params.commands}) > {log} 2>&1"
