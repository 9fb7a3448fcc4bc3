# Config validation, cross-reference checks, wildcard constraints and input/param/resource helpers.
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# Every module imported here is torch-free (tests/test_config.py checks it), so building the DAG never imports torch.
from dat.config import EVALUATION_DATASET_KEYS, TrainConfig, deep_merge, training_view
from dat.registry import (
    CPU_KERNEL_ENV,
    DATASET_OOD_SETS,
    MANUAL_DOWNLOADS,
    ROOTED_OOD_SETS,
    missing_message,
)

# Report: each table and the figures are declared once, as spec files (dat.report_spec) that local rules write from
# the config; dat.report_spec also says which run files each table kind and figure group reads and what it writes,
# each row's printed label and each run's sampling chain source.
from dat.report_spec import (
    FIGURE_EXTENSIONS,
    FIGURE_GROUPS,
    METRICS_INPUTS,
    SAMPLING_KINDS,
    TABLE_INPUTS,
    chain_source,
    figure_stems,
    mixed_sources,
    row_label,
)
from dat.fixture_markers import pending as rehearsal_pending

SCHEMA = "../../dat/schemas/config.schema.yaml"
# Fills in the schema's defaults (the one place they are declared): the code below indexes every key that has one.
validate(config, SCHEMA)

# cpu_kernels: the environment that pins the CPU kernels of every job (dat.registry.CPU_KERNEL_ENV)
shell.prefix(JOB_PREFIX + CPU_KERNEL_ENV[config["cpu_kernels"]])


def write_json(obj, path):
    """Write a config file as dat.io.write_json does (indented, sorted keys, final newline), without torch."""
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sampling_cfg(dataset):
    """The sampling block of a dataset: the global one deep-merged with the dataset's ``sampling`` keys."""
    return deep_merge(config["sampling"], config["datasets"][dataset].get("sampling"))


def evaluate_cfg(dataset):
    """The evaluate block of a dataset: the global one deep-merged with the dataset's ``evaluate`` keys."""
    return deep_merge(config["evaluate"], config["datasets"][dataset].get("evaluate"))


def _check_dataset_overrides(cfg):
    """Validate each dataset's merged sampling/evaluate block against the global block's schema (typos fail here)."""
    for name in cfg["datasets"]:
        merged = {
            **cfg,
            "sampling": sampling_cfg(name),
            "evaluate": evaluate_cfg(name),
        }
        try:
            validate(merged, SCHEMA)
        except WorkflowError as err:
            raise WorkflowError(
                f"config: datasets.{name}.sampling/evaluate overrides are invalid: {err}"
            ) from err


def _check_snapshot_seeds(cfg):
    """The snapshot FIDs (Figure 4, the best-FID checkpoint) draw their own chains: a checkpoint chosen on the grid's
    or the final samples would be judged by the samples it was chosen on.
    """
    for name in cfg["datasets"]:
        s = sampling_cfg(name)
        for key in ("seed_grid", "seed_final"):
            if s["seed_snapshots"] == s[key]:
                raise WorkflowError(
                    f"config: sampling.seed_snapshots (dataset {name}) = {s['seed_snapshots']} equals "
                    f"sampling.{key}; the snapshot FIDs need chains of their own"
                )


def _check_references(cfg):
    """Fail at parse time, naming the key, when a run, table or dataset points at something undefined."""
    for run, r in cfg["runs"].items():
        for key, table in (
            ("dataset", "datasets"),
            ("model", "models"),
            ("method", "methods"),
        ):
            if r[key] not in cfg[table]:
                raise WorkflowError(
                    f"config: runs.{run}.{key} = {r[key]!r} is not a key of {table}: {sorted(cfg[table])}"
                )
        init = r.get("init_from")
        if isinstance(init, str) and init not in cfg["runs"]:
            raise WorkflowError(
                f"config: runs.{run}.init_from = {init!r} is not a run: {sorted(cfg['runs'])}"
            )
        if init == run:
            raise WorkflowError(f"config: runs.{run}.init_from names the run itself")
    for name, table in cfg["tables"].items():
        for label, run in table["rows"].items():
            if run not in cfg["runs"]:
                raise WorkflowError(
                    f"config: tables.{name}.rows.{label} = {run!r} is not a run: {sorted(cfg['runs'])}"
                )
        if table["kind"] == "main" and "dataset" not in table:
            raise WorkflowError(
                f"config: tables.{name}.dataset is required (kind main)"
            )
        if "dataset" in table and table["dataset"] not in cfg["datasets"]:
            raise WorkflowError(
                f"config: tables.{name}.dataset = {table['dataset']!r} is not a key of datasets"
            )
        if table.get("reported") and table["kind"] != "reproductions":
            raise WorkflowError(
                f"config: tables.{name}.reported is only printed by tables of kind reproductions"
            )
    for name, ds in cfg["datasets"].items():
        if len(ds["mean"]) != ds["channels"] or len(ds["std"]) != ds["channels"]:
            raise WorkflowError(
                f"config: datasets.{name}.mean/std need {ds['channels']} values (channels)"
            )
        for ood in ds["ood_sets"]:
            if ood in ROOTED_OOD_SETS and ood not in (ds.get("ood_roots") or {}):
                raise WorkflowError(
                    f"config: datasets.{name}.ood_sets lists {ood!r} but datasets.{name}.ood_roots.{ood} is not set"
                )


def _method_block(run):
    """The run's method block deep-merged with its train_overrides (the one merge: dat.config.deep_merge)."""
    r = config["runs"][run]
    return deep_merge(config["methods"][r["method"]], r.get("train_overrides"))


def bce_block(run):
    """The run's stage-2 BCE block ({} for a stage-1 method)."""
    return _method_block(run).get("bce") or {}


def aux_block(run):
    """The block whose init/ood_set choose auxiliary OOD images: DAT's bce or RATIO's ratio ({} otherwise)."""
    block = _method_block(run)
    return block.get("bce") or block.get("ratio") or {}


def _add_rows_if_present(cfg):
    """tables.<name>.rows_if_present: append each row whose run's published checkpoint (runs.<run>.init_from.path)
    exists now; leave it out, saying which file would add it, otherwise."""
    for name, table in cfg["tables"].items():
        for label, run in (table.get("rows_if_present") or {}).items():
            init = cfg["runs"].get(run, {}).get("init_from")
            if not isinstance(init, dict):
                raise WorkflowError(
                    f"config: tables.{name}.rows_if_present.{label} = {run!r} must be a run with "
                    f"init_from: {{path, ...}} (a published checkpoint)"
                )
            if label in table["rows"]:
                raise WorkflowError(
                    f"config: tables.{name}: row label {label!r} is in rows and rows_if_present"
                )
            if Path(init["path"]).is_file():
                table["rows"][label] = run
            else:
                print(
                    f"tables.{name}: row {label!r} ({run}) left out until {init['path']} exists"
                    + (f" (published at {init['url']})" if init.get("url") else ""),
                    file=sys.stderr,
                )


def _rehearsal_fixtures(cfg):
    """rehearsal_fixtures: write the fixture data and published-layout checkpoints the config points at
    (python -m dat.rehearsal, in a child process so that planning stays torch-free; skipped when every fixture
    marker is in place), before anything checks them.
    """
    kinds = {"restricted_imagenet": "imagenet", "imagenet_minus_rimagenet": "imagenet"}
    data = {}
    for ds in cfg["datasets"].values():
        data[ds["root"]] = kinds.get(ds["source"], ds["source"])
        for ood, root in (ds.get("ood_roots") or {}).items():
            data[root] = kinds.get(ood, ood)
    checkpoints = []
    for name, run in cfg["runs"].items():
        if isinstance(run.get("init_from"), dict):
            ds, model = cfg["datasets"][run["dataset"]], cfg["models"][run["model"]]
            checkpoints.append(
                {
                    "path": run["init_from"]["path"],
                    "format": run["init_from"]["format"],
                    "arch": model["arch"],
                    "kwargs": model.get("kwargs") or {},
                    "num_classes": ds["num_classes"],
                    "channels": ds["channels"],
                    "mean": ds["mean"],
                    "std": ds["std"],
                }
            )
    spec = {"data": data, "checkpoints": checkpoints}
    if not rehearsal_pending(spec):  # every marker in place: no child process
        return
    spec_file = Path(".snakemake/rehearsal_fixtures.json")
    spec_file.parent.mkdir(exist_ok=True)
    write_json(spec, spec_file)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])
        ),
    }
    done = subprocess.run(
        [sys.executable, "-m", "dat.rehearsal", "--spec", str(spec_file)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise WorkflowError(
            f"rehearsal_fixtures: python -m dat.rehearsal failed:\n{done.stderr[-2000:]}"
        )


if (
    config["rehearsal_fixtures"] and workflow.is_main_process
):  # jobs find the files in place
    _rehearsal_fixtures(config)


def _check_sampling_starts(cfg):
    """sampling.init ood needs its set (and the set's folder); every run of one dataset in a table that reports FID or
    T (dat.report_spec.SAMPLING_KINDS) starts its test-time chains from the same source, unless the table says
    mixed_starts: true (dat.report_spec.chain_source names each run's source)."""
    for name in cfg["datasets"]:
        s = sampling_cfg(name)
        if s["init"] != "ood":
            continue
        ood = s.get("ood_set")
        if not ood:
            raise WorkflowError(
                f"config: sampling.init ood (datasets.{name}) needs sampling.ood_set"
            )
        if ood in ROOTED_OOD_SETS and ood not in (
            cfg["datasets"][name].get("ood_roots") or {}
        ):
            raise WorkflowError(
                f"config: datasets.{name}: sampling.ood_set {ood!r} needs datasets.{name}.ood_roots.{ood}"
            )
    for name, table in cfg["tables"].items():
        if table["kind"] not in SAMPLING_KINDS or table["mixed_starts"]:
            continue
        datasets = {run: cfg["runs"][run]["dataset"] for run in table["rows"].values()}
        rows = {
            run: (ds, chain_source(sampling_cfg(ds), _method_block(run)))
            for run, ds in datasets.items()
        }
        for dataset, sources in mixed_sources(rows).items():
            listed = ", ".join(f"{run}: {src}" for run, src in sources.items())
            raise WorkflowError(
                f"config: tables.{name}: its {dataset} runs start their sampling chains from different "
                f"sources ({listed}); give them one source (sampling.init, datasets.{dataset}.sampling) or "
                f"set tables.{name}.mixed_starts: true"
            )


_check_references(config)
_add_rows_if_present(config)
_check_dataset_overrides(config)
_check_snapshot_seeds(config)
for _run in config["runs"]:
    _block = _method_block(_run)
    try:  # parse every run's training block now, so a bad override fails before any job starts
        TrainConfig.from_dict(
            _block,
            where=f"runs.{_run} (method {config['runs'][_run]['method']})",
        )
    except ValueError as err:
        raise WorkflowError(f"config: {err}") from err
    _evaluate = evaluate_cfg(config["runs"][_run]["dataset"])
    if (
        _block.get("snapshots")
        and _block.get("ema_decay")
        and _evaluate["weights"] == "raw"
    ):
        raise WorkflowError(  # dat.train snapshots of an EMA run keep the EMA weights only
            f"config: runs.{_run}: its weight snapshots (method {config['runs'][_run]['method']}: snapshots, "
            f"ema_decay {_block['ema_decay']}) hold the EMA weights only, and evaluate.weights of dataset "
            f"{config['runs'][_run]['dataset']} is raw; set it to ema, or ema_decay to null"
        )
    _ood_set = aux_block(_run).get("ood_set") or ""
    _ds = config["datasets"][config["runs"][_run]["dataset"]]
    if _ood_set.startswith(("npz:", "file:")) and not os.path.exists(
        _ood_set.split(":", 1)[1]
    ):
        raise WorkflowError(
            f"config: runs.{_run}: the auxiliary OOD file {_ood_set.split(':', 1)[1]} (ood_set) does not exist"
        )
    if _ood_set in ROOTED_OOD_SETS and _ood_set not in (_ds.get("ood_roots") or {}):
        raise WorkflowError(
            f"config: runs.{_run}: ood_set {_ood_set!r} needs datasets.{config['runs'][_run]['dataset']}"
            f".ood_roots.{_ood_set}"
        )


_check_sampling_starts(config)


def _download_roots(cfg):
    """source -> folder of every dataset (and dataset OOD set) whose files are downloaded (download: true), so
    that one job per source downloads, never two at once into the same folder."""
    roots = {}
    for name, ds in cfg["datasets"].items():
        if not ds["download"]:
            continue
        wanted = [(ds["source"], ds["root"], f"datasets.{name}.root")]
        wanted += [
            (ood, root, f"datasets.{name}.ood_roots.{ood}")
            for ood, root in (ds.get("ood_roots") or {}).items()
            if ood in ds["ood_sets"]
        ]
        for source, root, key in wanted:
            if (
                source in MANUAL_DOWNLOADS
            ):  # no downloader: _require_data says what to fetch by hand
                continue
            if roots.setdefault(source, (root, key))[0] != root:
                raise WorkflowError(
                    f"config: {key} = {root!r} differs from {roots[source][1]} = {roots[source][0]!r}; "
                    f"one folder per downloaded dataset"
                )
    return {source: root for source, (root, _) in roots.items()}


DOWNLOAD_ROOTS = _download_roots(config)
RUNS = list(config["runs"])
DATASETS = list(config["datasets"])


wildcard_constraints:
    run="|".join(RUNS),
    table="|".join(config["tables"]),
    dataset="|".join(DATASETS),
    source="[a-z0-9_]+",
    ood="[a-z0-9_]+",


def _require_data(source, root, download, key):
    """Fail the DAG (a dry run too), saying what to download and where, when a job needs data that is missing
    and that no rule can download. Evaluated only for the jobs a target needs, so the CIFAR tables plan without
    an ImageNet folder."""
    message = missing_message(source, root, download)
    if message:
        raise WorkflowError(f"{key}: {message}")


def dataset_downloads(wildcards):
    """The download marker of a dataset with download: true (nothing when its files are already in place)."""
    ds = config["datasets"][wildcards.dataset]
    _require_data(
        ds["source"],
        ds["root"],
        ds["download"],
        f"datasets.{wildcards.dataset}.root",
    )
    if ds["download"] and ds["source"] in DOWNLOAD_ROOTS:
        return f"results/downloads/{ds['source']}.json"
    return []


def _ood_input(dataset, ood):
    """The download marker (or the data check) of an OOD set read from a folder of its own. A dataset OOD set is
    downloaded when its dataset downloads, or when another dataset downloads that source into the same folder
    (RestrictedImageNet's CIFAR/SVHN OOD sets share the CIFAR datasets' download jobs).
    """
    ds = config["datasets"][dataset]
    if ood not in ROOTED_OOD_SETS:
        return []
    root = ds["ood_roots"][ood]
    download = ood in DATASET_OOD_SETS and (
        ds["download"] or DOWNLOAD_ROOTS.get(ood) == root
    )
    _require_data(ood, root, download, f"datasets.{dataset}.ood_roots.{ood}")
    return f"results/downloads/{ood}.json" if download else []


def ood_downloads(wildcards):
    """The download marker of a dataset OOD set (cifar10, cifar100, svhn) when some dataset downloads it there."""
    return _ood_input(wildcards.dataset, wildcards.ood)


def ood_root_arg(dataset, name):
    """`--root <folder>` of an OOD set read from a folder (datasets.<dataset>.ood_roots.<name>), else nothing: the
    folders are evaluation keys, left out of dataset.json (dat.config.EVALUATION_DATASET_KEYS).
    """
    root = (config["datasets"][dataset].get("ood_roots") or {}).get(name)
    return f"--root {shlex.quote(root)}" if root else ""


def is_block(dataset):
    """The dataset's evaluate.fid.inception_score block, or None when IS is off (absent or enabled false)."""
    block = evaluate_cfg(dataset)["fid"].get("inception_score") or {}
    return block if block.get("enabled") else None


def _is_weights(cfg):
    """Weights file name -> the inception_score block of every dataset that computes IS (one download job per
    file); two blocks naming the same file differently fail here."""
    found = {}
    for name in cfg["datasets"]:
        block = is_block(name)
        if block is None:
            continue
        key = Path(block["weights"]).name
        if found.setdefault(key, block) != block:
            raise WorkflowError(
                f"config: datasets.{name}: evaluate.fid.inception_score names the weights file {key} with another "
                f"path, url or sha256 than another dataset ({found[key]})"
            )
    return found


IS_WEIGHTS = _is_weights(config)


def is_weights_input(wildcards):
    """The IS weights marker of a run's dataset (written once the file is downloaded and its sha256 checks out), or
    nothing when IS is off. A missing file without a url fails the DAG, naming the key.
    """
    block = is_block(dataset_of(wildcards.run))
    if block is None:
        return []
    if not block.get("url") and not os.path.exists(block["weights"]):
        raise WorkflowError(
            f"evaluate.fid.inception_score.weights: {block['weights']} is not there and url is null; put the file "
            f"there (sha256 {block['sha256']}...) or set evaluate.fid.inception_score.url"
        )
    return f"results/downloads/inception/{Path(block['weights']).name}.json"


def dataset_of(run):
    return config["runs"][run]["dataset"]


def dataset_cfg(dataset, evaluation=True):
    """The dataset block (without the sampling/evaluate overrides, which reach the commands through the run JSON).
    ``evaluation=False`` also leaves out the keys only evaluation reads: that view is results/data/{dataset}/dataset.json,
    which data preparation reads, so that changing e.g. the OOD sets or counterfactual radii never re-prepares data.
    """
    ds = config["datasets"][dataset]
    leave_out = {"sampling", "evaluate", "label"}
    if not evaluation:
        leave_out |= set(EVALUATION_DATASET_KEYS)
    return {"name": dataset, **{k: v for k, v in ds.items() if k not in leave_out}}


def run_cfg(run):
    """The resolved run: everything one run's commands read, written to results/{run}/run.json. Its training view
    (dat.config.training_view) is results/{run}/train.json, the only config file training reads: a change to the
    evaluation settings re-runs evaluations, never training."""
    r = config["runs"][run]
    return {
        "run": run,
        "method": r["method"],
        "seed": r["seed"],
        "init_from": r.get("init_from"),
        "dataset": dataset_cfg(r["dataset"]),
        "model": {
            k: v for k, v in config["models"][r["model"]].items() if k != "label"
        },
        "train": _method_block(run),
        "sampling": sampling_cfg(r["dataset"]),
        "evaluate": evaluate_cfg(r["dataset"]),
    }


def train_cfg(run):
    return training_view(run_cfg(run))


def init_input(wildcards):
    """The checkpoint a run starts from: another run's model.pt, a published file, or nothing."""
    init = config["runs"][wildcards.run].get("init_from")
    if init is None:
        return []
    if isinstance(init, str):
        return f"results/{init}/model.pt"
    if not os.path.exists(init["path"]):
        where = f" (published at {init['url']})" if init.get("url") else ""
        raise WorkflowError(
            f"runs.{wildcards.run}.init_from.path: the published checkpoint {init['path']} is not there; download "
            f"it{where} and put it at that path, or point the path at your copy"
        )
    return init["path"]


def selects_checkpoint(run):
    """True when the run's evaluations measure its best-FID weight snapshot (evaluate.checkpoint best_fid and a
    method that saves snapshots); a run without snapshots is evaluated at its final model.pt.
    """
    return evaluate_cfg(dataset_of(run))["checkpoint"] == "best_fid" and bool(
        _method_block(run).get("snapshots")
    )


def eval_model(wildcards):
    """The checkpoint every evaluation of a run reads: results/{run}/selected.pt (rule select_checkpoint) when it
    selects its best-FID snapshot, else results/{run}/model.pt.
    """
    name = "selected.pt" if selects_checkpoint(wildcards.run) else "model.pt"
    return f"results/{wildcards.run}/{name}"


def snapshot_grid(wildcards):
    """The grid whose T the snapshot FIDs use: always the final model's. Under best_fid that is
    results/{run}/grid_final.json (rule grid_search_final), since grid.json is then the selected model's and
    depends on the selection; otherwise grid.json is the final model's grid.
    """
    name = "grid_final.json" if selects_checkpoint(wildcards.run) else "grid.json"
    return f"results/{wildcards.run}/{name}"


def init_args(wildcards, input):
    init = config["runs"][wildcards.run].get("init_from")
    if init is None:
        return ""
    if isinstance(init, str):
        return f"--init {input.init}"
    args = f"--init {input.init} --init-format {init['format']}"
    return args + (f" --init-sha256 {init['sha256']}" if init.get("sha256") else "")


def aux_ood_input(wildcards):
    """The auxiliary OOD chain starts of a stage-2 run with bce.init ood (nothing otherwise)."""
    if aux_block(wildcards.run).get("init") == "ood":
        return f"results/{wildcards.run}/aux_ood.npz"
    return []


def aux_ood_args(wildcards, input):
    return f"--aux-ood {input.aux_ood}" if input.aux_ood else ""


def sampling_starts_input(wildcards):
    """The chain starts of a run's test-time samples: its auxiliary OOD images under sampling.init train (for a run
    trained against such a set), its dataset's start images under sampling.init ood, nothing (uniform noise)
    otherwise."""
    init = sampling_cfg(dataset_of(wildcards.run))["init"]
    if init == "train":
        return aux_ood_input(wildcards)
    if init == "ood":
        return f"results/data/{dataset_of(wildcards.run)}/sampling_starts.npz"
    return []


def sampling_starts_user_file(wildcards):
    """The user's file (file:<path>), or the data check / download marker, behind a dataset's sampling.ood_set."""
    name = sampling_cfg(wildcards.dataset)["ood_set"]
    if name.startswith(("npz:", "file:")):
        return name.split(":", 1)[1]
    return _ood_input(wildcards.dataset, name)


def sampling_starts_args(wildcards, input):
    return f"--starts {input.starts}" if input.starts else ""


def aux_ood_user_file(wildcards):
    """The user's file behind bce.ood_set file:<path> (or npz:<path>), so a missing file fails the DAG, naming
    it; for a folder set (openimages, imagenet_minus_rimagenet, a dataset) its data check or download marker.
    """
    name = aux_block(wildcards.run).get("ood_set") or ""
    if name.startswith(("npz:", "file:")):
        return name.split(":", 1)[1]
    return _ood_input(dataset_of(wildcards.run), name)


def data_file(name):
    """Input function: results/data/{dataset}/<name> for the run's dataset."""

    def _input(wildcards):
        return f"results/data/{dataset_of(wildcards.run)}/{name}"

    return _input


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

    def _runtime(wildcards, attempt):
        return base * attempt

    return _runtime


def table_kind(name):
    return config["tables"][name].get("kind", "main")


def table_runs(name):
    return list(config["tables"][name]["rows"].values())


def _label(block, key):
    """The printed name of a dataset or model: its ``label``, or its key."""
    return config[block][key].get("label", key)


def _spec_rows(rows):
    """Spec rows (dat.report_spec) of a mapping row label -> run; a label names what a RATIO run was trained against
    when that is not the paper's 80M Tiny Images (dat.report_spec.row_label)."""
    return [
        {"label": row_label(label, _method_block(run)), "run_dir": f"results/{run}"}
        for label, run in rows.items()
    ]


def table_spec(name):
    """What results/tables/{name}.spec.json holds (layout: dat.report_spec): the table's own declaration, and for
    kind reproductions the printed dataset and model names of its rows, so that only a change to these rebuilds it.
    """
    table = config["tables"][name]
    kind = table_kind(name)
    spec = {"kind": kind, "rows": _spec_rows(table["rows"])}
    if kind == "main":
        spec["dataset_label"] = table.get("dataset_label", table["dataset"])
    if kind == "reproductions":
        spec["title"] = table.get("title")
        spec["reported"] = table.get("reported", [])
        for row, run in zip(spec["rows"], table["rows"].values()):
            row["dataset"] = _label("datasets", config["runs"][run]["dataset"])
            row["architecture"] = _label("models", config["runs"][run]["model"])
    return spec


def _run_files(run, relpaths):
    """results/{run}/<relpath> for each relpath a rule makes for that run (metrics/snapshots.json only where its
    method saves weight snapshots)."""
    return [
        f"results/{run}/{relpath}"
        for relpath in relpaths
        if relpath != "metrics/snapshots.json" or _method_block(run).get("snapshots")
    ]


def table_files(wildcards):
    """Input function: the run files the table named by {table} reads, for each of its rows."""
    kind = table_kind(wildcards.table)
    return [
        path
        for run in table_runs(wildcards.table)
        for path in _run_files(run, TABLE_INPUTS[kind])
    ]


def stage2_runs(runs):
    """The runs whose method has a BCE branch (DAT stage 2): they have stage-2 training curves."""
    return [run for run in runs if _method_block(run).get("bce")]


def _kind_rows(kind):
    """Rows (label -> run) of every table of a kind, merged in config order (a run keeps its first label)."""
    rows = {}
    for table in config["tables"].values():
        if table.get("kind", "main") == kind:
            for label, run in table["rows"].items():
                if run not in rows.values():
                    rows[label] = run
    return rows


def metrics_files():
    """The run files of results/report/metrics.csv (the runs of table1): every metrics JSON the `all` target makes
    for them, so that the table never depends on which evaluations happened to finish first.
    """
    conditional = _kind_rows("conditional").values()
    return [
        path
        for run in table_runs("table1")
        for path in _run_files(
            run,
            METRICS_INPUTS
            + ("metrics/snapshots.json",)
            + (("metrics/fid_uncond.json",) if run in conditional else ()),
        )
    ]


def figure_groups():
    """Figure group of dat.report_spec -> rows (label -> run) of the figures of `all`: sample/seed grids, stage-2
    curves and Figure 4 (runs with weight snapshots) of table1's runs, Figure 1 and the appendix A.3 grids /
    Figure 3 of the runs of the counterfactual / calibration tables, Figure 8 of the runs of the conditional tables.
    A group without runs is left out.
    """
    main = config["tables"]["table1"]["rows"]
    counterfactual = _kind_rows("counterfactual")
    groups = {
        "samples": main,
        "curves": {label: run for label, run in main.items() if stage2_runs([run])},
        "snapshots": {
            label: run
            for label, run in main.items()
            if _method_block(run).get("snapshots")
        },
        "counterfactual": counterfactual,
        "counterfactual_grid": counterfactual,
        "reliability": _kind_rows("calibration"),
        "unconditional": _kind_rows("conditional"),
    }
    return {group: rows for group, rows in groups.items() if rows}


def bce_figure_group():
    """Figure 2 (stage-2 curves per BCE-branch augmentation) from the stage-2 runs of ablation_bce_augment, if
    declared: part of the `ablations` target."""
    rows = config["tables"].get("ablation_bce_augment", {}).get("rows", {})
    rows = {label: run for label, run in rows.items() if stage2_runs([run])}
    return {"bce_curves": rows} if rows else {}


# results/figures/{figures}.spec.json -> its figure groups: the figures of `all` and Figure 2 of `ablations`
FIGURE_SPECS = {"main": figure_groups, "ablations": bce_figure_group}


def figures_spec(name):
    """What results/figures/{name}.spec.json holds (layout: dat.report_spec): figure group -> rows."""
    return {
        "groups": {
            group: _spec_rows(rows) for group, rows in FIGURE_SPECS[name]().items()
        }
    }


def figure_inputs(groups):
    """The run files the figure groups read."""
    return sorted(
        {
            path
            for group, rows in groups.items()
            for run in rows.values()
            for path in _run_files(run, FIGURE_GROUPS[group].inputs)
        }
    )


def figure_paths(groups):
    """The PNG and PDF files the figure groups write."""
    return [
        f"results/figures/{stem}.{ext}"
        for group, rows in groups.items()
        for stem in figure_stems(group, list(rows.values()))
        for ext in FIGURE_EXTENSIONS
    ]


def is_ablation(name):
    """Tables named ablation_* are built by the `ablations` target (`snakemake all ablations` builds everything)."""
    return name.startswith("ablation_")


def ablation_outputs():
    return [
        *(
            f"results/tables/{name}.tex"
            for name in config["tables"]
            if is_ablation(name)
        ),
        *figure_paths(bce_figure_group()),
    ]


def all_outputs():
    """Every results table of the config but the ablations, the long metrics table and the figures."""
    return [
        *(
            f"results/tables/{name}.tex"
            for name in config["tables"]
            if not is_ablation(name)
        ),
        "results/report/metrics.csv",
        *figure_paths(figure_groups()),
    ]
