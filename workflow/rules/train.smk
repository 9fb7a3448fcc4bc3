# Training: the run config, then one training rule for both stages (the method block decides which).
# ckpt/last.pt is deliberately not an output: Snakemake deletes the outputs of a failed job, and last.pt is the
# resume point of a killed or preempted job. Rerunning the rule resumes from it.


localrules:
    write_run_config,
    write_train_config,


rule write_run_config:
    output:
        cfg="results/{run}/run.json",
    log:
        "logs/write_run_config/{run}.log",
    params:
        cfg=resolved_json(lambda wildcards: R.run_cfg(wildcards.run)),
    run:
        write_resolved(params.cfg, output.cfg, log[0])


# The training view of run.json (no sampling/evaluate settings): training reruns only when this file changes.
rule write_train_config:
    output:
        cfg="results/{run}/train.json",
    log:
        "logs/write_train_config/{run}.log",
    params:
        cfg=resolved_json(lambda wildcards: R.train_cfg(wildcards.run)),
    run:
        write_resolved(params.cfg, output.cfg, log[0])


rule train_model:
    input:
        cfg="results/{run}/train.json",
        train=data_file("train.npz"),
        init=init_input,
        aux_ood=aux_ood_input,
    output:
        model="results/{run}/model.pt",
    log:
        "logs/train_model/{run}.log",
    benchmark:
        "results/benchmarks/train_model/{run}.tsv"
    # Training is the critical path (stage 2 waits for stage 1, every metric for both): it goes before the evaluation
    # jobs whenever both are ready, so that a machine with few cores never leaves stage 2 waiting behind them.
    priority: 10
    conda:
        ENV
    threads: GPU_THREADS
    resources:
        **gpu_resources(mem_mb=16000, runtime=24 * 60),
    params:
        init=init_args,
        aux_ood=aux_ood_args,
        launcher=train_launcher,
        data_dir=lambda wildcards: f"results/data/{dataset_of(wildcards.run)}",
    shell:
        "{params.launcher} --config {input.cfg} --data-dir {params.data_dir} {params.init}"
        " {params.aux_ood} --model-out {output.model} --log-csv results/{wildcards.run}/train_log.csv"
        " --ckpt-dir results/{wildcards.run}/ckpt --threads {threads} > {log} 2>&1"


rule prepare_aux_ood:
    input:
        cfg=lambda wildcards: f"results/data/{dataset_of(wildcards.run)}/dataset.json",
        user_file=aux_ood_user_file,
    output:
        aux_ood="results/{run}/aux_ood.npz",
    log:
        "logs/prepare_aux_ood/{run}.log",
    benchmark:
        "results/benchmarks/prepare_aux_ood/{run}.tsv"
    conda:
        ENV
    resources:
        mem_mb=8000,
        runtime=runtime_min(60),
    params:
        name=lambda wildcards: shlex.quote(R.aux_block(wildcards.run)["ood_set"]),
        n=lambda wildcards: R.aux_block(wildcards.run)["ood_images"],
        seed=lambda wildcards: R.runs[wildcards.run]["seed"],
        root=lambda wildcards: ood_root_arg(
            dataset_of(wildcards.run), R.aux_block(wildcards.run)["ood_set"]
        ),
    shell:
        "python -m dat.prepare ood --config {input.cfg} --name {params.name} --n {params.n} --seed {params.seed} --split train"
        " {params.root} --out {output.aux_ood} > {log} 2>&1"
