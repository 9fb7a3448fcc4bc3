# Report: LaTeX tables with CSV twins, the long metrics table and the figures. Each table and each set of figures is
# declared once, in a spec file written from the config by a local rule (its params rewrite it, and so rebuild its
# outputs, only when that declaration changes); dat.report reads it (layout and run files: dat.report_spec).


localrules:
    write_table_spec,
    write_figures_spec,
    make_table,
    make_metrics_csv,
    make_figures,
    make_figure2,


rule write_table_spec:
    output:
        spec="results/tables/{table}.spec.json",
    log:
        "logs/write_table_spec/{table}.log",
    params:
        spec=resolved_json(lambda wildcards: R.table_spec(wildcards.table)),
    run:
        write_resolved(params.spec, output.spec, log[0])


rule write_figures_spec:
    output:
        spec="results/figures/{figures}.spec.json",
    log:
        "logs/write_figures_spec/{figures}.log",
    wildcard_constraints:
        figures="|".join(FIGURE_SETS),
    params:
        spec=resolved_json(lambda wildcards: R.figures_spec(wildcards.figures)),
    run:
        write_resolved(params.spec, output.spec, log[0])


rule make_table:
    input:
        spec="results/tables/{table}.spec.json",
        runs=lambda wildcards: R.table_files(wildcards.table),
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
        "results/benchmarks/make_table/{table}.tsv"
    conda:
        ENV
    shell:
        "python -m dat.report table --spec {input.spec} --out-tex {output.tex} --out-csv {output.csv} > {log} 2>&1"


rule make_metrics_csv:
    input:
        metrics=R.metrics_files(),
    output:
        csv="results/report/metrics.csv",
    log:
        "logs/make_metrics_csv/metrics.log",
    benchmark:
        "results/benchmarks/make_metrics_csv/metrics.tsv"
    conda:
        ENV
    params:
        runs=" ".join(
            f"results/{key}"
            for run in R.table_rows("table1").values()
            for _, key in R.seeds(run)
        ),
    shell:
        "python -m dat.report metrics --runs {params.runs} --out {output.csv} > {log} 2>&1"


rule make_figures:
    input:
        spec="results/figures/main.spec.json",
        runs=R.figure_inputs("main"),
    output:
        figures=[
            report(
                path,
                caption="../report/figures.rst",
                category="Figures",
                labels={"figure": Path(path).name},
            )
            for path in R.figure_paths(R.figure_groups("main"))
        ],
    log:
        "logs/make_figures/figures.log",
    benchmark:
        "results/benchmarks/make_figures/figures.tsv"
    conda:
        ENV
    shell:
        "python -m dat.report figures --spec {input.spec} --out-dir results/figures > {log} 2>&1"


# paper Figure 2: stage-2 curves of the BCE-augmentation ablation (part of the `ablations` target)
rule make_figure2:
    input:
        spec="results/figures/ablations.spec.json",
        runs=R.figure_inputs("ablations"),
    output:
        figures=[
            report(
                path,
                caption="../report/figures.rst",
                category="Figures",
                labels={"figure": Path(path).name},
            )
            for path in R.figure_paths({"bce_curves": {}})
        ],
    log:
        "logs/make_figures/figure2.log",
    conda:
        ENV
    shell:
        "python -m dat.report figures --spec {input.spec} --out-dir results/figures > {log} 2>&1"
