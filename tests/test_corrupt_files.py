"""Bad input and damaged files (issue 24): a damaged checkpoint or dataset file is refused with an error that names
the file, what is wrong and how to get a good copy, never loaded quietly; a damaged resume point falls back to the
generation before it; a full disk names the file and keeps the previous one; every training attempt's log survives."""

import errno
import gzip
import json
import os
import re
import shutil
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dat import train
from dat.io import (
    CorruptCheckpointError,
    atomic_torch_save,
    load_checkpoint,
    save_npz,
    verify_checkpoint,
    write_json,
)

FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not (FMNIST / "t10k-images-idx3-ubyte.gz").exists(),
                                  reason="Debian package dataset-fashion-mnist not installed (run ./setup.sh)")
# what model.pt holds (Trainer.state(resumable=False)); the resume-only keys stay in last.pt
MODEL_KEYS = {"format_version", "git_sha", "torch_version", "model", "ema", "step", "epoch", "model_name",
              "model_kwargs", "config", "init_sha256", "diverged"}


# -- damaging files --------------------------------------------------------------------------------------------
def _flip_in_member(path: Path, member: zipfile.ZipInfo, mask: int) -> None:
    """XOR ``mask`` into the middle byte of the data of ``member`` (a zip member of ``path``)."""
    with open(path, "rb") as fh:
        fh.seek(member.header_offset)
        header = fh.read(30)  # local file header: name and extra-field lengths at 26 and 28
    name_len, extra_len = int.from_bytes(header[26:28], "little"), int.from_bytes(header[28:30], "little")
    start = member.header_offset + 30 + name_len + extra_len
    raw = bytearray(path.read_bytes())
    raw[start + member.file_size // 2] ^= mask
    path.write_bytes(bytes(raw))


def flip_tensor_byte(path: Path) -> None:
    """Flip one bit in the largest tensor's data (``<archive>/data/<n>``), as a bad disk or copy would."""
    with zipfile.ZipFile(path) as archive:
        member = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    _flip_in_member(path, member, 0x10)


def flip_pickle_byte(path: Path) -> None:
    """Change one byte of the checkpoint's pickled structure (``data.pkl``)."""
    with zipfile.ZipFile(path) as archive:
        member = next(i for i in archive.infolist() if i.filename.endswith("/data.pkl"))
    _flip_in_member(path, member, 0xFF)


def truncate(path: Path) -> None:
    """Cut off the second half of the file (a killed copy or a full disk)."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def html_page(path: Path) -> None:
    """What a failed download saves."""
    path.write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>")


def _checkpoint(path: Path) -> dict:
    state = {"model": {"w": torch.arange(64, dtype=torch.float32)}, "ema": None, "step": 3, "config": {"train": {}}}
    atomic_torch_save(state, path)
    return state


# -- checkpoints -----------------------------------------------------------------------------------------------
DAMAGES = [  # (how the file is damaged, fragment of the message)
    (flip_tensor_byte, r"member '[^']*/data/\d+' fails its CRC check"),
    (flip_pickle_byte, r"member '[^']*/data.pkl' fails its CRC check"),
    (truncate, r"is truncated \(\d+ bytes and no zip central directory"),
    (empty, r"is empty \(0 bytes: truncated\)"),
    (html_page, r"not a torch checkpoint \(no zip archive: it starts with b'<!DOCTYPE html><'\)"),
]


@pytest.mark.parametrize("damage, message", DAMAGES, ids=[d[0].__name__ for d in DAMAGES])
def test_a_damaged_checkpoint_is_refused_naming_file_cause_and_rerun(tmp_path, damage, message):
    path = tmp_path / "results/fmnist_at/model.pt"
    _checkpoint(path)
    assert verify_checkpoint(path) == "zip"
    damage(path)
    with pytest.raises(CorruptCheckpointError, match=message) as err:
        verify_checkpoint(path)
    assert err.value.path == str(path) and err.value.advice is None
    with pytest.raises(CorruptCheckpointError, match=message) as err:
        load_checkpoint(path)
    text = str(err.value)
    assert text.startswith(f"checkpoint {path} is ") and "snakemake results/fmnist_at/model.pt" in text
    assert "weights_only=False" not in text  # torch's advice, unsafe and no cure for a damaged file
    assert isinstance(err.value, ValueError)


def test_quick_verification_catches_truncation_only(tmp_path):
    """``full=False`` opens the archive (its central directory is at the end): a cut-off file fails, a flipped bit
    in a tensor does not (only the full CRC pass finds it)."""
    flipped, cut = tmp_path / "flipped.pt", tmp_path / "cut.pt"
    _checkpoint(flipped)
    _checkpoint(cut)
    flip_tensor_byte(flipped)
    truncate(cut)
    assert verify_checkpoint(flipped, full=False) == "zip"
    with pytest.raises(CorruptCheckpointError, match="CRC"):
        verify_checkpoint(flipped, full=True)
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        verify_checkpoint(cut, full=False)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        verify_checkpoint(tmp_path / "missing.pt")


def test_legacy_format_only_where_published_files_may_use_it(tmp_path):
    """torch's pre-1.6 format has no checksums: a published init_from file may be in it, a file of ours not."""
    path = tmp_path / "published.pt"
    torch.save({"state_dict": {"w": torch.ones(3)}}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CorruptCheckpointError, match="legacy"):
        load_checkpoint(path)
    assert verify_checkpoint(path, legacy=True) == "legacy"
    assert torch.equal(load_checkpoint(path, legacy=True)["state_dict"]["w"], torch.ones(3))
    truncate(path)  # unverifiable, but torch's own error is turned into one that names the file
    with pytest.raises(CorruptCheckpointError, match=f"checkpoint {path} is unreadable by torch.load .*download it"):
        load_checkpoint(path, legacy=True, advice="download it again")


def test_an_intact_file_with_foreign_objects_is_not_called_corrupt(tmp_path):
    import argparse

    path = tmp_path / "foreign.pt"
    torch.save({"args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(ValueError, match=r"foreign.pt is intact but holds Python objects .*argparse.Namespace") as err:
        load_checkpoint(path)
    assert not isinstance(err.value, CorruptCheckpointError) and "weights_only=False" not in str(err.value)


def _model_checkpoint(path: Path, run_cfg: dict | None = None) -> None:
    from dat.models import build_model

    spec = {"num_classes": 10, "in_channels": 1, "mean": [0.5], "std": [0.5], "widths": [4, 8, 8], "first_stride": 2}
    model = build_model("resnet_small", **spec)
    atomic_torch_save({"format_version": 1, "git_sha": "0" * 40, "torch_version": str(torch.__version__),
                       "model": model.state_dict(), "ema": model.state_dict(), "step": 4, "epoch": 0.25,
                       "model_name": "resnet_small", "model_kwargs": spec, "config": run_cfg or {"train": {}},
                       "init_sha256": None, "diverged": None}, path)


def test_every_loader_of_a_trained_model_verifies_it(tmp_path, run_json):
    """The loaders of the evaluation commands (load_model: dat.cli and dat.eval_snapshots), the final model's step of
    dat.eval_snapshots and the copy of dat.select_checkpoint all refuse a model.pt with a flipped bit, which
    torch.load alone reads without a word (every metric would quietly change)."""
    from dat import select_checkpoint
    from dat.checkpoint import load_model
    from dat.eval_snapshots import snapshot_candidates

    run_dir = tmp_path / "results/tiny_dat"
    run = run_json({"run": "tiny_dat", "evaluate": {"checkpoint": "best_fid"}})
    _model_checkpoint(run_dir / "model.pt", run)
    _model_checkpoint(run_dir / "snapshots/step_0000002.pt", run)
    load_model(run_dir / "model.pt")
    flip_tensor_byte(run_dir / "model.pt")
    torch.load(run_dir / "model.pt", weights_only=True)  # what happened before: no error
    fragment = r"model.pt is damaged: member '[^']*' fails its CRC check.*snakemake results/tiny_dat/model.pt"
    with pytest.raises(CorruptCheckpointError, match=fragment):
        load_model(run_dir / "model.pt")
    with pytest.raises(CorruptCheckpointError, match=fragment):
        snapshot_candidates(run_dir / "snapshots", run_dir / "model.pt")
    (run_dir / "run.json").write_text(json.dumps(run))
    point = {"step": 4, "fid": 1.0, "checkpoint": {"path": str(run_dir / "model.pt"), "weights": "ema"}}
    (run_dir / "snapshots.json").write_text(json.dumps({"points": [point]}))
    with pytest.raises(CorruptCheckpointError, match=fragment):
        select_checkpoint.main(["--config", str(run_dir / "run.json"), "--snapshots", str(run_dir / "snapshots.json"),
                                "--out", str(run_dir / "selected.pt"), "--record", str(run_dir / "selection.json")])
    assert not (run_dir / "selected.pt").exists()


# -- training: resume points, init files, logs -----------------------------------------------------------------
def _images(n: int) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz") as fh:
        x = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)[:n]
    with gzip.open(FMNIST / "t10k-labels-idx1-ubyte.gz") as fh:
        y = np.frombuffer(fh.read(), np.uint8, offset=8)[:n].astype(np.int64)
    return x.copy(), y


def _run_config(steps: int, stage: int = 1) -> dict:
    method = {"batch_size": 16, "steps": steps, "ema_decay": 0.9, "log_every": 1, "ckpt_every_steps": 2,
              "attack": {"norm": "L2", "eps": 1.5, "step_size": 0.5, "steps": 1},
              "optimizer": {"name": "sgd", "lr": 0.05, "schedule": "cosine"},
              "augment": {"at": ["crop", "flip"], "bce": ["crop", "flip"], "crop_padding": 2}}
    if stage == 2:
        method.update(freeze_batchnorm=True, bce={"batch_size": 8, "step_size": 0.5, "initial_steps": 1, "increment": 1,
                                                  "max_steps": 2, "auc_threshold": 0.5, "window_images": 8})
    return {"run": f"stage{stage}", "method": "at" if stage == 1 else "dat", "seed": 0, "init_from": None,
            "dataset": {"name": "fmnist", "num_classes": 10, "channels": 1, "image_size": 28, "mean": [0.286],
                        "std": [0.353]},
            "model": {"arch": "resnet_small", "kwargs": {"widths": [4, 8, 8], "first_stride": 2}},
            "train": method}


@pytest.fixture
def workdir(tmp_path):
    x, y = _images(128)
    save_npz(tmp_path / "data/train.npz", x=x, y=y)
    return tmp_path


def _train(workdir: Path, name: str, steps: int = 4, *extra: str, stage: int = 1) -> int:
    cfg = workdir / f"{name}.json"
    write_json(_run_config(steps, stage), cfg)
    out = workdir / name
    return train.main(["--config", str(cfg), "--data-dir", str(workdir / "data"), "--model-out", str(out / "model.pt"),
                       "--log-csv", str(out / "train_log.csv"), "--ckpt-dir", str(out / "ckpt"), "--threads", "1", *extra])


def _rows(run_dir: Path) -> list[dict]:
    import csv

    with open(run_dir / "train_log.csv") as fh:
        return list(csv.DictReader(fh))


def _weights_equal(a: Path, b: Path) -> bool:
    wa, wb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return all(torch.equal(wa[part][k], wb[part][k]) for part in ("model", "ema") for k in wa[part])


RESUME_DAMAGES = [  # (damage to last.pt, to last.prev.pt, resumed from, what the log says)
    (truncate, None, "last.prev.pt", r"resuming from .*last.prev.pt, the checkpoint before \(step 2\)"),
    (flip_tensor_byte, None, "last.prev.pt", r"resuming from .*last.prev.pt"),
    (truncate, flip_tensor_byte, None, r"no usable checkpoint in .*ckpt: training from scratch"),
    (empty, "missing", None, r"no usable checkpoint in .*ckpt: training from scratch"),
]


@needs_fmnist
@pytest.mark.parametrize("last_damage, prev_damage, resumed, message", RESUME_DAMAGES,
                         ids=["truncated", "flipped", "both_damaged", "empty_no_prev"])
def test_a_damaged_last_pt_is_set_aside_and_training_resumes_from_the_one_before(
        workdir, last_damage, prev_damage, resumed, message):
    """Killed after step 3 (last.pt at step 3, last.prev.pt at step 2): a damaged last.pt is kept as
    last.corrupt-*.pt and the rerun resumes from last.prev.pt (or starts afresh when that is bad too), saying so; the
    result equals an uninterrupted run's bit for bit."""
    assert _train(workdir, "full") == 0
    assert _train(workdir, "run", 4, "--stop-after", "3") == train.EXIT_INTERRUPTED
    ckpt = workdir / "run/ckpt"
    assert torch.load(ckpt / "last.pt", weights_only=True)["step"] == 3
    assert torch.load(ckpt / "last.prev.pt", weights_only=True)["step"] == 2
    last_damage(ckpt / "last.pt")
    if prev_damage == "missing":
        (ckpt / "last.prev.pt").unlink()
    elif prev_damage is not None:
        prev_damage(ckpt / "last.prev.pt")
    assert _train(workdir, "run") == 0
    assert len(list(ckpt.glob("last.corrupt-*.pt"))) == 1
    assert len(list(ckpt.glob("last.prev.corrupt-*.pt"))) == (prev_damage not in (None, "missing"))
    log_text = (ckpt / "train.log").read_text()
    assert re.search(rf"{ckpt / 'last.pt'} is [^\n]*: kept as last.corrupt-", log_text), log_text
    assert re.search(message, log_text), log_text
    header = [line for line in log_text.splitlines() if line.startswith("==== attempt")]
    assert len(header) == 2 and header[0].endswith("fresh start")
    assert header[1].endswith("resumed from last.prev.pt at step 2" if resumed else "fresh start")
    assert [int(r["step"]) for r in _rows(workdir / "run")] == [1, 2, 3, 4]
    assert _weights_equal(workdir / "run/model.pt", workdir / "full/model.pt")


@needs_fmnist
def test_a_finished_run_keeps_one_copy_of_its_weights_and_a_rerun_restores_model_pt(workdir):
    """While a run trains, each new last.pt keeps the one before (test above: last.prev.pt at step 2 after a kill at
    step 3); once model.pt is written the fallback generation is deleted and last.pt becomes model.pt's hard link
    (at ImageNet scale a 2.7 GB file per run saved). A rerun after model.pt was deleted (Snakemake deletes a job's
    outputs before it reruns it) writes the same model.pt back from last.pt without training."""
    assert _train(workdir, "run", 5) == 0
    ckpt, model_pt = workdir / "run/ckpt", workdir / "run/model.pt"
    assert (ckpt / "last.pt").samefile(model_pt) and not (ckpt / "last.prev.pt").exists()
    model = torch.load(model_pt, weights_only=True)
    assert set(model) == MODEL_KEYS and model["step"] == 5  # model.pt unchanged by the resume bookkeeping
    assert not [p.name for p in ckpt.iterdir() if p.name.endswith(".tmp")]
    content, rows = model_pt.read_bytes(), _rows(workdir / "run")
    model_pt.unlink()
    assert _train(workdir, "run", 5) == 0
    assert model_pt.read_bytes() == content and (ckpt / "last.pt").samefile(model_pt)
    assert _rows(workdir / "run") == rows  # nothing trained again
    assert "is the finished run (step 5)" in (ckpt / "train.log").read_text()
    # a longer budget is another run config: the finished weights are set aside (kept), training starts afresh
    assert _train(workdir, "run", 6) == 0
    stale = list(ckpt.glob("last.stale-*.pt"))
    assert len(stale) == 1 and stale[0].read_bytes() == content
    assert torch.load(model_pt, weights_only=True)["step"] == 6


def test_atomic_link_copies_where_hard_links_fail(tmp_path, monkeypatch):
    from dat.io import atomic_link

    source, target = tmp_path / "model.pt", tmp_path / "ckpt/last.pt"
    source.write_bytes(b"weights")
    target.parent.mkdir()
    target.write_bytes(b"older")
    assert atomic_link(source, target) is True and target.samefile(source)

    def no_links(*_args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    assert atomic_link(source, tmp_path / "copy.pt") is False
    assert (tmp_path / "copy.pt").read_bytes() == b"weights" and not (tmp_path / "copy.pt").samefile(source)
    with pytest.raises(FileNotFoundError):
        atomic_link(tmp_path / "missing.pt", target)
    assert target.read_bytes() == b"weights"  # untouched by the failed call


@needs_fmnist
@pytest.mark.parametrize("damage", [truncate, flip_tensor_byte, html_page], ids=["truncated", "flipped", "html"])
def test_a_damaged_init_fails_before_the_run_writes_anything(workdir, damage):
    """Stage 2 from a damaged stage-1 model.pt (or a published file) stops before it writes a file, naming the
    file and what to rerun."""
    assert _train(workdir, "stage1", 2) == 0
    init = workdir / "results/stage1/model.pt"
    init.parent.mkdir(parents=True)
    shutil.copy(workdir / "stage1/model.pt", init)
    damage(init)
    with pytest.raises(CorruptCheckpointError, match=rf"checkpoint {init} is .*snakemake results/stage1/model.pt"):
        _train(workdir, "stage2", 2, "--init", str(init), stage=2)
    assert not (workdir / "stage2").exists()
    published = workdir / "published.pt"
    shutil.copy(workdir / "stage1/model.pt", published)
    damage(published)
    with pytest.raises(CorruptCheckpointError, match=rf"checkpoint {published} is .*download it again"):
        _train(workdir, "stage2", 2, "--init", str(published), "--init-format", "state_dict", stage=2)
    assert not (workdir / "stage2").exists()


@needs_fmnist
def test_every_attempt_appends_to_train_log_and_time_s_counts_every_attempt(workdir, monkeypatch):
    """A signal's line survives the rerun in ckpt/train.log (Snakemake empties the rule's log at each start), and
    train_log.csv's time_s goes on from the training time kept in last.pt instead of restarting at 0."""
    real_step = train.Trainer.train_step

    def signalled_step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGUSR1)  # as Slurm warns a job before its time limit
        return out

    handler = signal.getsignal(signal.SIGUSR1)
    monkeypatch.setattr(train.Trainer, "train_step", signalled_step)
    try:
        assert _train(workdir, "run") == train.EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGUSR1, handler)
    monkeypatch.undo()
    kept = torch.load(workdir / "run/ckpt/last.pt", weights_only=True)
    assert kept["step"] == 2 and kept["train_time_s"] >= float(_rows(workdir / "run")[-1]["time_s"]) - 0.01
    assert _train(workdir, "run") == 0
    text = (workdir / "run/ckpt/train.log").read_text()
    first, second = text.split("==== attempt")[1:]
    assert first.rstrip().splitlines()[0].endswith("fresh start")
    assert f"received signal {int(signal.SIGUSR1)}" in first and "stopped at step 2" in first
    assert f"pid {os.getpid()}: resumed from last.pt at step 2" in second and "wrote" in second
    times = [float(r["time_s"]) for r in _rows(workdir / "run")]
    assert times == sorted(times) and times[2] >= kept["train_time_s"] - 0.01


# -- dataset files ---------------------------------------------------------------------------------------------
def _gzip_of_short_idx(path: Path) -> None:
    """A well-formed gzip whose IDX content is cut short (the header declares more labels than it holds)."""
    with gzip.open(path) as fh:
        raw = fh.read()
    with gzip.open(path, "wb") as fh:
        fh.write(raw[:-100])


def _flip_gzip_crc(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-6] ^= 0x01  # the CRC32 in the gzip trailer
    path.write_bytes(bytes(raw))


IDX_DAMAGES = [  # (damage, message fragment)
    (truncate, r"t10k-labels-idx1-ubyte.gz is truncated \(Compressed file ended"),
    (_flip_gzip_crc, r"t10k-labels-idx1-ubyte.gz is corrupt \(CRC check failed"),
    (_gzip_of_short_idx, r"t10k-labels-idx1-ubyte.gz is truncated: its header declares \(10000,\) = 10000 bytes"),
]


@needs_fmnist
@pytest.mark.parametrize("damage, message", IDX_DAMAGES, ids=["truncated", "crc", "short_content"])
def test_a_damaged_idx_gz_names_the_file_and_the_fix(tmp_path, damage, message):
    from dat.data import load_split

    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / name).symlink_to(FMNIST / name)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(FMNIST / name, tmp_path / name)
    damage(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(ValueError, match=message) as err:
        load_split("fashion_mnist", str(tmp_path), "test")
    assert str(tmp_path / "t10k-labels-idx1-ubyte.gz") in str(err.value)
    assert "download it again" in str(err.value) and "dataset-fashion-mnist" in str(err.value)


def test_a_truncated_cifar_batch_names_the_file(tmp_path):
    import pickle

    from dat.data import load_split

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    entry = {"data": np.zeros((4, 3 * 32 * 32), np.uint8), "labels": [0, 1, 2, 3]}
    (folder / "test_batch").write_bytes(pickle.dumps(entry)[:-200])
    with pytest.raises(ValueError, match=rf"{folder / 'test_batch'} is truncated or corrupt .*download it again"):
        load_split("cifar10", str(tmp_path), "test")


# -- a full disk -----------------------------------------------------------------------------------------------
class _FullDisk:
    """A file whose writes fail as on a full disk (ENOSPC)."""

    def __init__(self, fh):
        self.fh = fh

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def _full_open(file, mode="r", *args, **kwargs):
    fh = open(file, mode, *args, **kwargs)
    return _FullDisk(fh) if "w" in mode else fh


def _torch_save_full(obj, path, *args, **kwargs):
    """torch.save on a full disk: part of the file, then torch's own error (no errno)."""
    Path(path).write_bytes(b"PK\x03\x04 partial")
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


def _torch_save_enospc(obj, path, *args, **kwargs):
    Path(path).write_bytes(b"PK\x03\x04 partial")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


WRITERS = [  # (writer, what to patch, replacement)
    (lambda p: write_json({"acc_clean": 0.5}, p), "dat.io.open", _full_open),
    (lambda p: save_npz(p, x=np.zeros((4, 2, 2, 1), np.uint8)), "dat.io.open", _full_open),
    (lambda p: atomic_torch_save({"w": torch.zeros(3)}, p), "torch.save", _torch_save_full),
    (lambda p: atomic_torch_save({"w": torch.zeros(3)}, p), "torch.save", _torch_save_enospc),
]


@pytest.mark.parametrize("write, target, replacement", WRITERS,
                         ids=["write_json", "save_npz", "torch_save_runtime_error", "torch_save_enospc"])
def test_a_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch, write, target, replacement):
    path = tmp_path / "results/run/out.bin"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"the previous result")
    monkeypatch.setattr(target, replacement, raising=target != "dat.io.open")
    with pytest.raises(OSError) as err:
        write(path)
    assert err.value.errno == errno.ENOSPC
    text = str(err.value)
    assert f"{path}: no space left on device" in text and "MiB free" in text and "previous out.bin is kept" in text
    assert path.read_bytes() == b"the previous result"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.bin"]  # no temporary file left behind
    monkeypatch.undo()
    write(path)  # with room again, the write goes through
    assert path.read_bytes() != b"the previous result"


def test_other_write_errors_pass_unchanged(tmp_path, monkeypatch):
    def broken(obj, path, *args, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr("torch.save", broken)
    with pytest.raises(RuntimeError, match="^something else$"):
        atomic_torch_save({}, tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())

