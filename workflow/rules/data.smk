# Data: dataset config, training/test arrays, OOD evaluation sets, FID reference statistics and floor.


# Downloads run where Snakemake runs (cluster compute nodes often have no internet).
localrules:
    write_dataset_config,
    download_data,
    download_is_weights,


rule write_dataset_config:
    output:
        cfg="results/data/{dataset}/dataset.json",
    log:
        "logs/write_dataset_config/{dataset}.log",
    params:
        cfg=resolved_json(
            lambda wildcards: R.dataset_cfg(wildcards.dataset, evaluation=False)
        ),
    run:
        write_resolved(params.cfg, output.cfg, log[0])


rule download_data:
    output:
        done="results/downloads/{source}.json",
    log:
        "logs/download_data/{source}.log",
    benchmark:
        "results/benchmarks/download_data/{source}.tsv"
    conda:
        ENV
    resources:
        mem_mb=8000,
        runtime=runtime_min(120),
    params:
        root=lambda wildcards: shlex.quote(R.download_roots[wildcards.source]),
    shell:
        "python -m dat.prepare download --source {wildcards.source} --root {params.root} --done {output.done}"
        " > {log} 2>&1"


# The Inception Score network's weights (evaluate.fid.inception_score): downloaded once per file unless already in
# place, sha256-checked either way; compute_fid checks the digest again before use.
rule download_is_weights:
    output:
        done="results/downloads/inception/{weights}.json",
    log:
        "logs/download_is_weights/{weights}.log",
    wildcard_constraints:
        weights="[^/]+",
    conda:
        ENV
    params:
        out=lambda wildcards: shlex.quote(R.is_weights[wildcards.weights]["weights"]),
        sha256=lambda wildcards: R.is_weights[wildcards.weights]["sha256"],
        url=lambda wildcards: (
            f"--url {shlex.quote(R.is_weights[wildcards.weights]['url'])}"
            if R.is_weights[wildcards.weights].get("url")
            else ""
        ),
    shell:
        "python -m dat.prepare weights {params.url} --sha256 {params.sha256} --out {params.out} --done {output.done}"
        " > {log} 2>&1"


rule prepare_data:
    input:
        cfg="results/data/{dataset}/dataset.json",
        downloads=dataset_downloads,
    output:
        train="results/data/{dataset}/train.npz",
        test="results/data/{dataset}/test.npz",
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_data/{dataset}.tsv"
    conda:
        ENV
    resources:
        mem_mb=8000,
        runtime=runtime_min(60),
    shell:
        "python -m dat.prepare splits --config {input.cfg} --out-dir results/data/{wildcards.dataset} > {log} 2>&1"


rule prepare_ood:
    input:
        cfg="results/data/{dataset}/dataset.json",
        downloads=ood_downloads,
    output:
        ood="results/data/{dataset}/ood_{ood}.npz",
    log:
        "logs/prepare_ood/{dataset}_{ood}.log",
    benchmark:
        "results/benchmarks/prepare_ood/{dataset}_{ood}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=runtime_min(30),
    params:
        n=lambda wildcards: config["datasets"][wildcards.dataset]["n_ood"],
        root=lambda wildcards: ood_root_arg(wildcards.dataset, wildcards.ood),
    shell:
        "python -m dat.prepare ood --config {input.cfg} --name {wildcards.ood} --n {params.n} {params.root}"
        " --out {output.ood} > {log} 2>&1"


rule prepare_sampling_starts:
    input:
        cfg="results/data/{dataset}/dataset.json",
        user_file=sampling_starts_user_file,
    output:
        starts="results/data/{dataset}/sampling_starts.npz",
    log:
        "logs/prepare_sampling_starts/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_sampling_starts/{dataset}.tsv"
    conda:
        ENV
    resources:
        mem_mb=8000,
        runtime=runtime_min(60),
    params:
        name=lambda wildcards: shlex.quote(R.sampling(wildcards.dataset)["ood_set"]),
        n=lambda wildcards: R.sampling(wildcards.dataset)["ood_images"],
        root=lambda wildcards: ood_root_arg(
            wildcards.dataset, R.sampling(wildcards.dataset)["ood_set"]
        ),
    shell:
        "python -m dat.prepare ood --config {input.cfg} --name {params.name} --n {params.n} --split train"
        " {params.root} --out {output.starts} > {log} 2>&1"


rule fid_ref:
    input:
        train="results/data/{dataset}/train.npz",
    output:
        ref="results/data/{dataset}/fid_ref.npz",
        meta="results/data/{dataset}/fid_ref.json",
    log:
        "logs/fid_ref/{dataset}.log",
    benchmark:
        "results/benchmarks/fid_ref/{dataset}.tsv"
    conda:
        ENV
    threads: GPU_THREADS
    # memory: the statistics are streamed (two 2048x2048 float64 sums, 64 MiB); per-image float32 features are kept up
    # to 524,288 images (<= 4 GiB; RestrictedImageNet's ~257k: 2.1 GB, ImageNet-1k: not kept), one Inception batch
    # (~0.3 GB) and the PyTorch runtime (peak RSS 1.3 GB measured on CPU, 1,000 images) stay under 8 GB
    resources:
        **gpu_resources(mem_mb=8000, runtime=240),
    params:
        n_ref=lambda wildcards: R.evaluate(wildcards.dataset)["fid"]["n_ref"] or 0,
        extractor=lambda wildcards: R.evaluate(wildcards.dataset)["fid"]["extractor"],
    shell:
        "python -m dat.fid_ref --data {input.train} --n-ref {params.n_ref} --seed 0 --extractor {params.extractor}"
        " --out {output.ref} --meta-out {output.meta} --threads {threads} > {log} 2>&1"


rule fid_floor:
    input:
        test="results/data/{dataset}/test.npz",
        ref="results/data/{dataset}/fid_ref.npz",
    output:
        floor="results/data/{dataset}/fid_floor.json",
    log:
        "logs/fid_floor/{dataset}.log",
    benchmark:
        "results/benchmarks/fid_floor/{dataset}.tsv"
    conda:
        ENV
    threads: GPU_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=120),
    params:
        n=lambda wildcards: R.sampling(wildcards.dataset)["n_final"],
        extractor=lambda wildcards: R.evaluate(wildcards.dataset)["fid"]["extractor"],
    shell:
        "python -m dat.eval_fid floor --data {input.test} --n {params.n} --seed 0 --extractor {params.extractor}"
        " --ref {input.ref} --out {output.floor} --threads {threads} > {log} 2>&1"
