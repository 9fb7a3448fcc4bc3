# Report: LaTeX tables with CSV twins, the long metrics table and the figures.


localrules:
    make_table,
    make_metrics_csv,
    make_figures,


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
        samples=expand("results/{run}/samples.npz", run=table_runs("table1")),
        metrics=expand(
            "results/{run}/metrics/{metric}.json",
            run=table_runs("table1"),
            metric=["calibration", "counterfactual"],
        ),
        models=expand("results/{run}/model.pt", run=table_runs("table1")),
    output:
        figures=[
            report(
                path,
                caption="../report/figures.rst",
                category="Figures",
                labels={"figure": Path(path).stem},
            )
            for path in figure_paths(table_runs("table1"))
        ],
    log:
        "logs/make_figures/figures.log",
    benchmark:
        "benchmarks/make_figures/figures.tsv"
    conda:
        ENV
    params:
        runs=" ".join(f"results/{run}" for run in table_runs("table1")),
        labels=" ".join(
            shlex.quote(label) for label in config["tables"]["table1"]["rows"]
        ),
    shell:
        "python -m dat.report figures --runs {params.runs} --labels {params.labels} --out-dir results/figures > {log} 2>&1"
