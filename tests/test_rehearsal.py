"""The rehearsal of the paper configuration (profiles/rehearsal): it changes sizes only, its fixtures are read by the
real parsing and import code, and (slow) every target of `all` and `ablations` executes on the CPU."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dat import fixture_markers, rehearsal
from dat.checkpoint import published_weights
from dat.config import deep_merge
from dat.data import imagenet_files, load_ood, load_split
from dat.io import write_json
from dat.models import build_model

REPO = Path(__file__).resolve().parents[1]
# the leaves config/rehearsal.yaml may change: sizes, counts, paths and machine settings, never a method's settings
SIZE_KEYS = {"root", "cifar10", "cifar100", "svhn", "imagenet_minus_rimagenet", "openimages",  # data folders
             "path",  # init_from checkpoint files
             "image_size", "n_ood", "n_examples", "n_images", "n_in", "n_out", "n_grid", "n_final", "n_pgd",
             "n_samples", "batch_size", "epochs", "window_images", "ood_images", "buffer_size", "num_workers",
             "every_steps", "steps_grid", "rehearsal_fixtures"}
# evaluation iteration counts the rehearsal shortens (the trained methods keep theirs: attack.steps is not here)
EVAL_STEPS = {("evaluate", "pgd", "steps"), ("evaluate", "ood", "steps"), ("evaluate", "counterfactual", "steps"),
              ("evaluate", "fid", "inception_score", "enabled")}  # IS weights: downloaded at run time
WHEEL_MISSING = not rehearsal.FOOLBOX_WHEEL.exists() and not os.environ.get("CI")
needs_wheel = pytest.mark.skipif(WHEEL_MISSING, reason=f"{rehearsal.FOOLBOX_WHEEL} missing (run ./setup.sh)")


def _leaves(tree, prefix=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, (*prefix, key))
    else:
        yield prefix, tree


def test_rehearsal_config_changes_sizes_only():
    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    sizes = yaml.safe_load((REPO / "config/rehearsal.yaml").read_text())
    merged = deep_merge(paper, sizes)
    changed = [path for path, value in _leaves(sizes)]
    assert changed, "config/rehearsal.yaml is empty"
    for path in changed:
        if path[-1] == "lr":  # learning rates follow the batch size (linear scaling)
            method, paper_method = merged["methods"][path[1]], paper["methods"][path[1]]
            scale = method["batch_size"] / paper_method["batch_size"]
            assert method["optimizer"]["lr"] == pytest.approx(paper_method["optimizer"]["lr"] * scale), path
            continue
        if path[-1] == "seeds":  # fewer replicates, never other ones: a prefix of the paper's seeds
            paper_seeds = paper["runs"][path[1]]["seeds"]
            assert merged["runs"][path[1]]["seeds"] == paper_seeds[:len(merged["runs"][path[1]]["seeds"])], path
            continue
        assert path[-1] in SIZE_KEYS or path in EVAL_STEPS, f"config/rehearsal.yaml changes {'.'.join(path)}"
    # nothing added or dropped: the same runs, tables, models and methods as the paper
    for key in ("runs", "tables", "models", "methods", "datasets"):
        assert list(merged[key]) == list(paper[key]), key
    assert merged["models"] == paper["models"] and merged["tables"] == paper["tables"]
    for name, method in paper["methods"].items():
        for key in ("attack", "augment", "freeze_batchnorm", "ema_decay", "precision", "bce", "sgld", "ratio"):
            for leaf, value in _leaves(method.get(key) or {}):
                if leaf[-1:] not in (("window_images",), ("ood_images",), ("buffer_size",)):
                    assert dict(_leaves(merged["methods"][name].get(key) or {}))[leaf] == value, (name, key, leaf)
        assert {k: v for k, v in merged["methods"][name].get("optimizer", {}).items() if k != "lr"} == {
            k: v for k, v in method.get("optimizer", {}).items() if k != "lr"}, name
    # every ImageNet-size dataset is shrunk the same way, and every CIFAR one keeps its 32 px
    assert {d["image_size"] for d in merged["datasets"].values()} == {32, 64}


def test_rehearsal_profile_runs_the_paper_config_merged_with_the_sizes():
    """profiles/rehearsal is in the repository (a `rehearsal/` ignore pattern once kept it out of every clone) and
    names config.yaml and then config/rehearsal.yaml: configfiles given by a profile replace config.yaml."""
    profile = yaml.safe_load((REPO / "profiles/rehearsal/config.v8+.yaml").read_text())
    assert profile["configfile"] == ["config.yaml", "config/rehearsal.yaml"]
    assert profile["directory"] == "rehearsal"  # outputs and fixtures never land in results/ or a real dataset
    if (REPO / ".git").exists():
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "profiles/rehearsal/config.v8+.yaml"],
                                 cwd=REPO, capture_output=True, text=True)
        assert tracked.returncode == 0, "profiles/rehearsal is not tracked by git (.gitignore?)"


def test_fixture_markers_say_what_is_missing(tmp_path):
    """The planning-time check (dat.fixture_markers, no torch) agrees with dat.rehearsal.build's markers."""
    root, ckpt = tmp_path / "c10", tmp_path / "ckpt/m.pt"
    entry = {"path": str(ckpt), "format": "state_dict", "arch": "torchvision_resnet", "kwargs": {"depth": 18},
             "num_classes": 10, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3}
    spec = {"data": {str(root): "cifar10"}, "checkpoints": [entry]}
    assert fixture_markers.pending(spec) == [str(root), str(ckpt)]
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"x")
    write_json(entry, fixture_markers.checkpoint_marker(ckpt))
    root.mkdir()
    write_json({"kind": "cifar100"}, fixture_markers.data_marker(root))  # another kind: still missing
    assert fixture_markers.pending(spec) == [str(root)]
    write_json({"kind": "cifar10"}, fixture_markers.data_marker(root))
    assert fixture_markers.pending(spec) == []
    write_json({**entry, "kwargs": {"depth": 50}}, fixture_markers.checkpoint_marker(ckpt))  # built otherwise
    assert fixture_markers.pending(spec) == [str(ckpt)]


@needs_wheel
def test_fixtures_are_read_by_the_real_loaders(tmp_path):
    spec = {"data": {str(tmp_path / "c10"): "cifar10", str(tmp_path / "c100"): "cifar100",
                     str(tmp_path / "svhn"): "svhn", str(tmp_path / "in"): "imagenet",
                     str(tmp_path / "oi"): "openimages"}}
    assert set(rehearsal.build(spec).values()) == {"written"}
    assert set(rehearsal.build(spec).values()) == {"present"}  # a second build writes nothing
    x, y = load_split("cifar10", str(tmp_path / "c10"), "train")
    real, labels = rehearsal.foolbox_images("cifar10")
    assert x.shape == (40, 32, 32, 3) and np.array_equal(x[:20], real) and np.array_equal(x[20:], real[:, :, ::-1])
    assert np.array_equal(y, np.concatenate([labels, labels]))
    x, y = load_split("cifar100", str(tmp_path / "c100"), "test")
    assert x.shape == (20, 32, 32, 3) and y.max() >= 10
    x, y = load_split("svhn", str(tmp_path / "svhn"), "test")
    assert x.shape == (20, 32, 32, 3) and 0 <= y.min() and y.max() <= 9
    x, y = imagenet_files(str(tmp_path / "in"), "train", restricted=True, size=64)
    assert x.shape == (16, 64, 64, 3) and set(y.tolist()) == set(range(9))  # one class in each super-class
    assert load_ood("imagenet_minus_rimagenet", 100, 3, 32, 0, root=str(tmp_path / "in")).shape == (7, 32, 32, 3)
    assert load_ood("openimages", 5, 3, 64, 0, root=str(tmp_path / "oi")).shape == (5, 64, 64, 3)
    # a folder with other files is never written to
    (tmp_path / "real").mkdir()
    (tmp_path / "real/data_batch_1").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not a rehearsal fixture"):
        rehearsal.build({"data": {str(tmp_path / "real"): "cifar10"}})


@pytest.mark.parametrize("arch, kwargs, fmt", [
    ("wide_resnet", {"depth": 10, "widen_factor": 1}, "robustbench"),
    ("torchvision_resnet", {"depth": 18}, "robustness"),
    ("torchvision_resnet", {"depth": 18}, "state_dict"),
    ("timm_convnext", {"variant": "convnext_atto", "convstem": True}, "revisiting_at"),
])
def test_published_layouts_import_back_to_the_same_weights(arch, kwargs, fmt):
    """dat.rehearsal writes each published layout; dat.checkpoint.published_weights reads it back unchanged."""
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3, **kwargs)
    ckpt = rehearsal.published_checkpoint(model, fmt)
    if fmt == "robustbench":
        assert "block1.layer.0.conv1.weight" in ckpt and "sub_block1.layer.0.conv1.weight" in ckpt
    state = published_weights(ckpt, fmt, model)
    own = model.state_dict()
    assert set(state) == set(own)
    for key, value in own.items():
        if fmt == "robustbench" and key.startswith("normalize."):
            continue  # RobustBench models take [0, 1] inputs: identity normalization
        assert torch.equal(state[key], value), key


def _disk_use_gb(path: Path) -> float:
    """Bytes of the files under ``path``, each file once (a finished run's last.pt is its model.pt's hard link)."""
    files = {(s.st_dev, s.st_ino): s.st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()
             for s in [f.stat()]}
    return sum(files.values()) / 1e9


@pytest.mark.slow
@needs_wheel
def test_rehearsal_of_every_paper_target(tmp_path):
    """`snakemake --profile profiles/rehearsal all ablations`: the paper's config.yaml at toy size, every table and
    figure. Set DAT_REHEARSAL_REPORT=<file> to keep its wall time, disk use and per-rule job times there."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--profile",
           str(REPO / "profiles/rehearsal"), "--directory", str(tmp_path), "all", "ablations"]
    try:
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600)
        if os.environ.get("DAT_REHEARSAL_REPORT"):
            _report(tmp_path, time.time() - t0, proc.returncode, Path(os.environ["DAT_REHEARSAL_REPORT"]))
        assert proc.returncode == 0, proc.stderr[-6000:]
        _check_rehearsal_outputs(tmp_path / "results")
    finally:  # tens of GB of weights: pytest would keep them in its three last base folders
        shutil.rmtree(tmp_path, ignore_errors=True)


def _report(workdir: Path, wall_s: float, returncode: int, out: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from summarize import collect

    jobs = collect(workdir)
    by_rule = jobs.groupby("rule")["wall_s"].agg(["count", "sum", "max"]).sort_values("sum", ascending=False)
    runs = sorted(((_disk_use_gb(d), d.name) for d in (workdir / "results").iterdir() if d.is_dir()), reverse=True)
    out.write_text(f"exit {returncode}; wall {wall_s:.0f} s; {len(jobs)} jobs, sum of job times "
                   f"{jobs.wall_s.sum():.0f} s; disk {_disk_use_gb(workdir):.1f} GB\n\n{by_rule.to_string()}\n\n"
                   + "\n".join(f"{gb:7.2f} GB  {name}" for gb, name in runs) + "\n")


def _check_rehearsal_outputs(res: Path) -> None:
    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    for name in paper["tables"]:  # every table of all and ablations
        assert (res / f"tables/{name}.tex").read_text().count(r"\bottomrule") == 1, name
    # the published checkpoints' rows are there, imported from their layouts and evaluated as they are
    assert "RATIO (official checkpoint)" in (res / "tables/table1.tex").read_text()
    for run in ("cifar10_ratio_official", "imagenet256_convnext_at"):
        ckpt = torch.load(res / run / "model.pt", weights_only=True)
        assert ckpt["step"] == 0 and len(ckpt["init_sha256"]) == 64
    # the paper's class counts and image formats reached the models and the samples
    for run, shape in (("cifar100_dat", (4, 32, 32, 3)), ("rimagenet_dat", (4, 64, 64, 3)),
                       ("imagenet256_convnext_dat", (4, 64, 64, 3))):
        with np.load(res / run / "samples.npz") as s:
            assert s["x"].shape == shape and s["x"].dtype == np.uint8, run
