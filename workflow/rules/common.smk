# Config validation, the call into the package's resolution (dat.resolve), wildcard constraints and the input and
# param functions of the rules. What a config means is decided in dat.resolve (torch-free, unit-tested there); this
# file only turns its answers into Snakemake's terms (inputs, params, WorkflowError).
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from dat.fixture_markers import pending as rehearsal_pending

# dat.io is torch-free at import: it imports torch and NumPy where they are used
from dat import io as dat_io
from dat.registry import CPU_KERNEL_ENV
from dat.resolve import FIGURE_SETS, ConfigError, Resolved, read_yaml, validate


def _rehearsal_fixtures(spec):
    """rehearsal_fixtures: write the fixture data and published-layout checkpoints the config points at (python -m
    dat.rehearsal, in a child process so that planning stays torch-free; skipped when every marker is in place).
    """
    if not rehearsal_pending(spec):
        return
    spec_file = Path(".snakemake/rehearsal_fixtures.json")
    spec_file.parent.mkdir(exist_ok=True)
    dat_io.write_json(spec, spec_file)
    path = os.pathsep.join(
        filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])
    )
    done = subprocess.run(
        [sys.executable, "-m", "dat.rehearsal", "--spec", str(spec_file)],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise WorkflowError(
            f"rehearsal_fixtures: dat.rehearsal failed:\n{done.stderr[-2000:]}"
        )


# Every check fails here, naming the file or key, before any job starts: each config file read again strictly (a key
# given twice; Snakemake's loader keeps the last), the schema (dat/schemas/config.schema.yaml, defaults filled in),
# then the cross-checks (the fixtures are written first, so that rows_if_present finds their files).
try:
    for _file in workflow.configfiles:
        read_yaml(_file)
    R = Resolved(validate(config), check=False)
    R.check_references()
    if config["rehearsal_fixtures"] and workflow.is_main_process:
        _rehearsal_fixtures(R.fixture_spec())
    R.check()
except ConfigError as err:
    raise WorkflowError(str(err)) from None
if workflow.is_main_process:
    for line in R.left_out:
        print(line, file=sys.stderr)

# cpu_kernels: the environment that pins the CPU kernels of every job (dat.registry.CPU_KERNEL_ENV)
shell.prefix(JOB_PREFIX + CPU_KERNEL_ENV[config["cpu_kernels"]])


wildcard_constraints:
    run="|".join(R.runs),
    table="|".join(R.tables),
    dataset="|".join(config["datasets"]),
    source="[a-z0-9_]+",
    ood="[a-z0-9_]+",


def dataset_of(run):
    return R.dataset_of(run)


def _checked(path, missing):
    """An input path (None: no input) of a resolved answer; a WorkflowError naming the key when it is missing."""
    if missing is not None:
        raise WorkflowError(str(missing))
    return path or []


def dataset_downloads(wildcards):
    """The download marker of a dataset with download: true (nothing when its files are in place). Data that is
    missing and that no rule can download fails the DAG, saying what to fetch and where; evaluated only for the
    jobs a target needs, so the CIFAR tables plan without an ImageNet folder."""
    source, missing = R.dataset_download(wildcards.dataset)
    return _checked(source and f"results/downloads/{source}.json", missing)


def _ood_input(dataset, ood):
    source, missing = R.ood_download(dataset, ood)
    return _checked(source and f"results/downloads/{source}.json", missing)


def ood_downloads(wildcards):
    """The download marker of a dataset OOD set (cifar10, cifar100, svhn) when some dataset downloads it there."""
    return _ood_input(wildcards.dataset, wildcards.ood)


def ood_root_arg(dataset, name):
    """`--root <folder>` of an OOD set read from a folder (an evaluation key, left out of dataset.json)."""
    root = R.ood_root(dataset, name)
    return f"--root {shlex.quote(root)}" if root else ""


def is_weights_input(wildcards):
    """The IS weights marker of a run's dataset (written once the file is there and its sha256 checks out), or
    nothing when IS is off."""
    name, missing = R.inception_score_input(dataset_of(wildcards.run))
    return _checked(name and f"results/downloads/inception/{name}.json", missing)


def _intact(path):
    """A run's checkpoint that a job reads: when it is there, its zip must open, so that a truncated model.pt fails
    here, naming it and the target to rerun, before Snakemake deletes the outputs of the jobs that read it.
    """
    if isinstance(path, str) and path.startswith("results/") and os.path.exists(path):
        try:
            dat_io.verify_checkpoint(path, full=False)
        except dat_io.CorruptCheckpointError as err:
            advice = dat_io.checkpoint_advice(path)
            raise WorkflowError(str(err.with_advice(advice))) from None
    return path


def init_input(wildcards):
    """The checkpoint a run starts from: another run's model.pt, a published file, or nothing."""
    return _intact(_checked(*R.init_input(wildcards.run)))


def init_args(wildcards, input):
    init = R.init_from(wildcards.run)
    if init is None:
        return ""
    if isinstance(init, str):
        return f"--init {input.init}"
    args = f"--init {input.init} --init-format {init['format']}"
    return args + (f" --init-sha256 {init['sha256']}" if init.get("sha256") else "")


def eval_model(wildcards):
    """The checkpoint every evaluation of a run reads: selected.pt (rule select_checkpoint) when it selects its
    best-FID snapshot, else model.pt."""
    name = "selected.pt" if R.selects_checkpoint(wildcards.run) else "model.pt"
    return _intact(f"results/{wildcards.run}/{name}")


def snapshot_grid(wildcards):
    """The grid whose T the snapshot FIDs use: always the final model's (grid_final.json under best_fid, where
    grid.json is the selected model's; else grid.json)."""
    name = "grid_final.json" if R.selects_checkpoint(wildcards.run) else "grid.json"
    return f"results/{wildcards.run}/{name}"


def aux_ood_input(wildcards):
    """The auxiliary OOD chain starts of a stage-2 run with bce.init ood (nothing otherwise)."""
    if R.aux_block(wildcards.run).get("init") == "ood":
        return f"results/{wildcards.run}/aux_ood.npz"
    return []


def aux_ood_args(wildcards, input):
    return f"--aux-ood {input.aux_ood}" if input.aux_ood else ""


def _user_file(dataset, name):
    """The user's file behind an ood_set file:<path> (or npz:<path>), so a missing file fails the DAG naming it;
    for a folder set its data check or download marker."""
    if name.startswith(("npz:", "file:")):
        return name.split(":", 1)[1]
    return _ood_input(dataset, name)


def aux_ood_user_file(wildcards):
    name = R.aux_block(wildcards.run).get("ood_set") or ""
    return _user_file(dataset_of(wildcards.run), name)


def sampling_starts_input(wildcards):
    """The chain starts of a run's test-time samples: its auxiliary OOD images under sampling.init train, its
    dataset's start images under sampling.init ood, nothing (uniform noise) otherwise.
    """
    init = R.sampling(dataset_of(wildcards.run))["init"]
    if init == "train":
        return aux_ood_input(wildcards)
    if init == "ood":
        return f"results/data/{dataset_of(wildcards.run)}/sampling_starts.npz"
    return []


def sampling_starts_user_file(wildcards):
    return _user_file(wildcards.dataset, R.sampling(wildcards.dataset)["ood_set"])


def sampling_starts_args(wildcards, input):
    return f"--starts {input.starts}" if input.starts else ""


def data_file(name):
    """Input function: results/data/{dataset}/<name> for the run's dataset."""
    return lambda wildcards: f"results/data/{dataset_of(wildcards.run)}/{name}"


def ood_inputs(wildcards):
    ds = dataset_of(wildcards.run)
    return [
        f"results/data/{ds}/ood_{o}.npz" for o in config["datasets"][ds]["ood_sets"]
    ]


def train_launcher(wildcards, resources):
    """`python -m dat.train`, or torchrun with one process per GPU when the job asks for several (set-resources
    train_model: gpu: N in a profile); the config's batch size stays the global batch.
    """
    gpus = int(getattr(resources, "gpu", 1) or 1)
    if gpus <= 1:
        return "python -m dat.train"
    return f"python -m torch.distributed.run --standalone --nproc_per_node={gpus} -m dat.train"


def runtime_min(base):
    """Runtime in minutes that grows with each retry (a preempted job gets more time)."""
    return lambda wildcards, attempt: base * attempt


# The threads of every GPU rule (torch intra-op threads, and the CPUs that profiles/slurm asks for beside each GPU,
# cpus_per_gpu): Snakemake gives a job at most --cores, and profiles/smoke and profiles/rehearsal cap every job at
# one thread (max-threads), so this is one number for every profile.
GPU_THREADS = 8


def gpu_resources(mem_mb, runtime):
    """The resources of each GPU rule, declared here once: one GPU (gpu=1, which a profile puts on a GPU partition
    and counts against --resources gpu=N), memory and a runtime that grows with each retry.
    """
    return {"mem_mb": mem_mb, "runtime": runtime_min(runtime), "gpu": 1}


def resolved_json(view):
    """Params function: the resolved view (a dict) of the job's wildcards as sorted JSON, so that the file a local
    rule writes from it changes exactly when the view does."""
    return lambda wildcards: json.dumps(view(wildcards), sort_keys=True)


def write_resolved(text, path, log):
    """Write ``text`` (resolved_json of a resolved view) to ``path`` atomically, for the local rules."""
    dat_io.write_json(json.loads(text), path)
    Path(log).write_text(f"wrote {path}\n")
