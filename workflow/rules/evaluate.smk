# Sampling and metrics. Every run goes through the same rules (a wildcard over the model), so the tables
# compare like with like.
# Every evaluation reads the checkpoint eval_model names (common.smk): model.pt, or under evaluate.checkpoint
# best_fid the selected.pt of rule select_checkpoint.


rule grid_search_steps:
    input:
        cfg="results/{run}/run.json",
        model=eval_model,
        ref=data_file("fid_ref.npz"),
        starts=sampling_starts_input,
    output:
        grid="results/{run}/grid.json",
    log:
        "logs/grid_search_steps/{run}.log",
    benchmark:
        "results/benchmarks/grid_search_steps/{run}.tsv"
    conda:
        ENV
    threads: GPU_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=240),
    params:
        starts=sampling_starts_args,
    shell:
        "python -m dat.grid_search --config {input.cfg} --model {input.model} --ref {input.ref} {params.starts}"
        " --out {output.grid} --threads {threads} > {log} 2>&1"


# the final model's grid, for the snapshot FIDs under best_fid (grid.json is then the selected model's)
use rule grid_search_steps as grid_search_final with:
    input:
        cfg="results/{run}/run.json",
        model="results/{run}/model.pt",
        ref=data_file("fid_ref.npz"),
        starts=sampling_starts_input,
    output:
        grid="results/{run}/grid_final.json",
    log:
        "logs/grid_search_final/{run}.log",
    benchmark:
        "results/benchmarks/grid_search_final/{run}.tsv"


rule sample_images:
    input:
        cfg="results/{run}/run.json",
        model=eval_model,
        grid="results/{run}/grid.json",
        starts=sampling_starts_input,
    output:
        samples="results/{run}/samples.npz",
    log:
        "logs/sample_images/{run}.log",
    benchmark:
        "results/benchmarks/sample_images/{run}.tsv"
    conda:
        ENV
    threads: GPU_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=240),
    params:
        mode="",
        starts=sampling_starts_args,
    shell:
        "python -m dat.sample --config {input.cfg} --model {input.model} --grid {input.grid} {params.starts}"
        " --out {output.samples}{params.mode} --threads {threads} > {log} 2>&1"


# paper Table 9 and Figure 8: unconditional samples (ascent on logsumexp f(x)) at the conditional grid's T
use rule sample_images as sample_images_uncond with:
    output:
        samples="results/{run}/samples_uncond.npz",
    log:
        "logs/sample_images_uncond/{run}.log",
    benchmark:
        "results/benchmarks/sample_images_uncond/{run}.tsv"
    params:
        mode=" --unconditional",
        starts=sampling_starts_args,


rule compute_fid:
    input:
        cfg="results/{run}/run.json",
        samples="results/{run}/samples.npz",
        ref=data_file("fid_ref.npz"),
        floor=data_file("fid_floor.json"),
        is_weights=is_weights_input,
    output:
        fid="results/{run}/metrics/fid.json",
    log:
        "logs/compute_fid/{run}.log",
    benchmark:
        "results/benchmarks/compute_fid/{run}.tsv"
    conda:
        ENV
    threads: GPU_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=120),
    shell:
        "python -m dat.eval_fid samples --config {input.cfg} --samples {input.samples} --ref {input.ref}"
        " --floor {input.floor} --out {output.fid} --threads {threads} > {log} 2>&1"


use rule compute_fid as compute_fid_uncond with:
    input:
        cfg="results/{run}/run.json",
        samples="results/{run}/samples_uncond.npz",
        ref=data_file("fid_ref.npz"),
        floor=data_file("fid_floor.json"),
        is_weights=is_weights_input,
    output:
        fid="results/{run}/metrics/fid_uncond.json",
    log:
        "logs/compute_fid_uncond/{run}.log",
    benchmark:
        "results/benchmarks/compute_fid_uncond/{run}.tsv"


rule eval_robust:
    input:
        cfg="results/{run}/run.json",
        model=eval_model,
        test=data_file("test.npz"),
    output:
        robust="results/{run}/metrics/robust.json",
    log:
        "logs/eval_robust/{run}.log",
    benchmark:
        "results/benchmarks/eval_robust/{run}.tsv"
    # The longest evaluation (AutoAttack): started first among the ready ones, so it never runs alone at the end.
    priority: 5
    conda:
        ENV
    threads: GPU_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=12 * 60),
    shell:
        "python -m dat.eval_robust --config {input.cfg} --model {input.model} --data {input.test}"
        " --out {output.robust} --threads {threads} > {log} 2>&1"


rule eval_ood:
    input:
        cfg="results/{run}/run.json",
        model=eval_model,
        test=data_file("test.npz"),
        ood=ood_inputs,
    output:
        ood="results/{run}/metrics/ood.json",
    log:
        "logs/eval_ood/{run}.log",
    benchmark:
        "results/benchmarks/eval_ood/{run}.tsv"
    conda:
        ENV
    threads: GPU_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=120),
    shell:
        "python -m dat.eval_ood --config {input.cfg} --model {input.model} --data {input.test} --ood {input.ood}"
        " --out {output.ood} --threads {threads} > {log} 2>&1"


rule eval_calibration:
    input:
        cfg="results/{run}/run.json",
        model=eval_model,
        test=data_file("test.npz"),
    output:
        calibration="results/{run}/metrics/calibration.json",
    log:
        "logs/eval_calibration/{run}.log",
    benchmark:
        "results/benchmarks/eval_calibration/{run}.tsv"
    conda:
        ENV
    threads: GPU_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=30),
    shell:
        "python -m dat.eval_calibration --config {input.cfg} --model {input.model} --data {input.test}"
        " --out {output.calibration} --threads {threads} > {log} 2>&1"


rule eval_counterfactual:
    input:
        cfg="results/{run}/run.json",
        model=eval_model,
        train=data_file("train.npz"),
        ref=data_file("fid_ref.npz"),
    output:
        counterfactual="results/{run}/metrics/counterfactual.json",
        examples="results/{run}/counterfactual_examples.npz",
    log:
        "logs/eval_counterfactual/{run}.log",
    benchmark:
        "results/benchmarks/eval_counterfactual/{run}.tsv"
    conda:
        ENV
    threads: GPU_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=240),
    shell:
        "python -m dat.eval_counterfactual --config {input.cfg} --model {input.model} --data {input.train}"
        " --ref {input.ref} --out {output.counterfactual} --examples {output.examples}"
        " --threads {threads} > {log} 2>&1"


# paper Figure 4: robust accuracy and FID of the weight snapshots of a run whose method has a snapshots block (and
# of model.pt when its step is not a snapshot's), at the final model's grid T (snapshot_grid), seed seed_snapshots
rule eval_snapshots:
    input:
        cfg="results/{run}/run.json",
        model="results/{run}/model.pt",
        test=data_file("test.npz"),
        ref=data_file("fid_ref.npz"),
        grid=snapshot_grid,
        starts=sampling_starts_input,
    output:
        snapshots="results/{run}/metrics/snapshots.json",
    log:
        "logs/eval_snapshots/{run}.log",
    benchmark:
        "results/benchmarks/eval_snapshots/{run}.tsv"
    conda:
        ENV
    threads: GPU_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=240),
    params:
        starts=sampling_starts_args,
    shell:
        "python -m dat.eval_snapshots --config {input.cfg} --snapshots results/{wildcards.run}/snapshots"
        " --final {input.model} --data {input.test} --ref {input.ref} --grid {input.grid} {params.starts}"
        " --out {output.snapshots} --threads {threads} > {log} 2>&1"


# evaluate.checkpoint best_fid: the snapshot with the lowest FID in snapshots.json becomes selected.pt (model.pt's
# format plus a `selection` record), the checkpoint every evaluation of the run then reads (eval_model)
rule select_checkpoint:
    input:
        cfg="results/{run}/run.json",
        snapshots="results/{run}/metrics/snapshots.json",
    output:
        model="results/{run}/selected.pt",
        selection="results/{run}/selection.json",
    log:
        "logs/select_checkpoint/{run}.log",
    benchmark:
        "results/benchmarks/select_checkpoint/{run}.tsv"
    conda:
        ENV
    resources:
        mem_mb=8000,
        runtime=runtime_min(30),
    shell:
        "python -m dat.select_checkpoint --config {input.cfg} --snapshots {input.snapshots}"
        " --out {output.model} --record {output.selection} > {log} 2>&1"
