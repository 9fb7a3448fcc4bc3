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
        spec=lambda wildcards: json.dumps(table_spec(wildcards.table), sort_keys=True),
    run:
        write_json(json.loads(params.spec), output.spec)
        Path(log[0]).write_text(f"wrote {output.spec}\n")


rule write_figures_spec:
    output:
        spec="results/figures/{figures}.spec.json",
    log:
        "logs/write_figures_spec/{figures}.log",
    wildcard_constraints:
        figures="|".join(FIGURE_SPECS),
    params:
        spec=lambda wildcards: json.dumps(
            figures_spec(wildcards.figures), sort_keys=True
        ),
    run:
        write_json(json.loads(params.spec), output.spec)
        Path(log[0]).write_text(f"wrote {output.spec}\n")


rule make_table:
    input:
        spec="results/tables/{table}.spec.json",
        runs=table_files,
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
    shell:
        "python -m dat.report table --spec {input.spec} --out-tex {output.tex} --out-csv {output.csv} > {log} 2>&1"


rule make_metrics_csv:
    input:
        metrics=metrics_files(),
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
        spec="results/figures/main.spec.json",
        runs=figure_inputs(figure_groups()),
    output:
        figures=[
            report(
                path,
                caption="../report/figures.rst",
                category="Figures",
                labels={"figure": Path(path).name},
            )
            for path in figure_paths(figure_groups())
        ],
    log:
        "logs/make_figures/figures.log",
    benchmark:
        "benchmarks/make_figures/figures.tsv"
    conda:
        ENV
    shell:
        "python -m dat.report figures --spec {input.spec} --out-dir results/figures > {log} 2>&1"


# paper Figure 2: stage-2 curves of the BCE-augmentation ablation (part of the `ablations` target)
rule make_figure2:
    input:
        spec="results/figures/ablations.spec.json",
        runs=figure_inputs(bce_figure_group()),
    output:
        figures=[
            report(
                path,
                caption="../report/figures.rst",
                category="Figures",
                labels={"figure": Path(path).name},
            )
            for path in figure_paths({"bce_curves": {}})
        ],
    log:
        "logs/make_figures/figure2.log",
    conda:
        ENV
    shell:
        "python -m dat.report figures --spec {input.spec} --out-dir results/figures > {log} 2>&1"
