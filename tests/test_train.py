"""Training command: stage 1 and stage 2 on real Fashion-MNIST images, resume after a kill, BatchNorm frozen."""

import copy
import csv
import os
import gzip
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dat import train
from dat.io import save_npz, write_json

FMNIST = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not (FMNIST / "t10k-images-idx3-ubyte.gz").exists(),
                                reason="Debian package dataset-fashion-mnist not installed (run ./setup.sh)")


def _real_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz") as fh:
        x = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)[:n]
    with gzip.open(FMNIST / "t10k-labels-idx1-ubyte.gz") as fh:
        y = np.frombuffer(fh.read(), np.uint8, offset=8)[:n].astype(np.int64)
    return x.copy(), y


def _run_config(stage: int, steps: int) -> dict:
    method = {
        "batch_size": 16, "steps": steps, "ema_decay": 0.9, "log_every": 1, "ckpt_every_steps": 2,
        "attack": {"norm": "L2", "eps": 1.5, "step_size": 0.5, "steps": 2},
        "optimizer": {"name": "sgd", "lr": 0.05, "schedule": "cosine" if stage == 1 else "constant"},
        "augment": {"at": ["crop", "flip"], "bce": ["crop", "flip"], "crop_padding": 2},
    }
    if stage == 2:
        method.update(freeze_batchnorm=True, bce={"batch_size": 8, "step_size": 0.5, "initial_steps": 1, "increment": 1,
                                                  "max_steps": 3, "auc_threshold": 0.5, "window_images": 8})
    return {
        "run": f"stage{stage}", "method": "at" if stage == 1 else "dat", "seed": 0, "init_from": None,
        "dataset": {"name": "fmnist", "num_classes": 10, "channels": 1, "image_size": 28, "mean": [0.286], "std": [0.353]},
        "model": {"arch": "resnet_small", "kwargs": {"widths": [8, 16, 32], "first_stride": 2}},
        "train": method,
    }


@pytest.fixture
def workdir(tmp_path):
    x, y = _real_images(256)
    save_npz(tmp_path / "data/train.npz", x=x, y=y)
    return tmp_path


def _cli(workdir: Path, cfg: Path, name: str) -> list[str]:
    """dat.train arguments of a run writing to ``workdir/name`` with run config ``cfg``, on one thread."""
    return ["--config", str(cfg), "--data-dir", str(workdir / "data"), "--model-out", str(workdir / f"{name}/model.pt"),
            "--log-csv", str(workdir / f"{name}/train_log.csv"), "--ckpt-dir", str(workdir / f"{name}/ckpt"), "--threads", "1"]


def _train(workdir: Path, stage: int, steps: int, name: str, init: Path | None = None, extra=()) -> tuple[int, Path]:
    cfg = workdir / f"{name}.json"
    write_json(_run_config(stage, steps), cfg)
    args = [*_cli(workdir, cfg, name), *extra]
    if init is not None:
        args += ["--init", str(init)]
    return train.main(args), workdir / name


def _log(run_dir: Path) -> list[dict]:
    with open(run_dir / "train_log.csv") as fh:
        return list(csv.DictReader(fh))


def test_stage1_then_stage2_keeps_batchnorm_statistics(workdir):
    rc, s1 = _train(workdir, 1, 4, "s1")
    assert rc == 0
    ckpt1 = torch.load(s1 / "model.pt", weights_only=True)
    assert ckpt1["step"] == 4 and ckpt1["ema"] is not None
    rc, s2 = _train(workdir, 2, 4, "s2", init=s1 / "model.pt")
    assert rc == 0
    ckpt2 = torch.load(s2 / "model.pt", weights_only=True)
    stats = [k for k in ckpt1["ema"] if "running_" in k]
    assert stats
    for key in stats:  # stage 2 starts from the stage-1 EMA and never updates BatchNorm statistics
        assert torch.equal(ckpt2["model"][key], ckpt1["ema"][key]), key
        assert torch.allclose(ckpt2["ema"][key], ckpt1["ema"][key], rtol=1e-6, atol=0), key  # averaging equal values
    changed = [k for k in ckpt1["ema"] if "weight" in k and not torch.equal(ckpt2["model"][k], ckpt1["ema"][k])]
    assert changed  # but the weights did train
    rows = _log(s2)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(r["bce"] and 0 <= float(r["auc"]) <= 1 for r in rows)
    assert int(rows[-1]["steps_T"]) >= 1


def test_resume_continues_the_same_run(workdir):
    full_rc, full = _train(workdir, 2, 6, "full", init=None)
    assert full_rc == 0
    rc, part = _train(workdir, 2, 6, "part", extra=["--stop-after", "3"])
    assert rc == train.EXIT_INTERRUPTED
    assert not (part / "model.pt").exists() and (part / "ckpt/last.pt").exists()
    assert torch.load(part / "ckpt/last.pt", weights_only=True)["step"] == 3
    rc, part = _train(workdir, 2, 6, "part")
    assert rc == 0
    a = torch.load(full / "model.pt", weights_only=True)
    b = torch.load(part / "model.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    assert [int(r["step"]) for r in _log(part)] == [1, 2, 3, 4, 5, 6]
    # same data order, RNG and curriculum: the resumed run ends where the uninterrupted one does
    for key in a["model"]:
        assert torch.allclose(a["model"][key].float(), b["model"][key].float(), atol=1e-5), key


def test_sigterm_saves_a_resumable_checkpoint(workdir):
    cfg = workdir / "sig.json"
    write_json(_run_config(1, 400), cfg)
    cmd = [sys.executable, "-m", "dat.train", "--config", str(cfg), "--data-dir", str(workdir / "data"),
           "--model-out", str(workdir / "sig/model.pt"), "--log-csv", str(workdir / "sig/train_log.csv"),
           "--ckpt-dir", str(workdir / "sig/ckpt"), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (workdir / "sig/ckpt/last.pt").exists():
        time.sleep(0.2)  # wait until training is under way (first periodic checkpoint)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == train.EXIT_INTERRUPTED, out
    step = torch.load(workdir / "sig/ckpt/last.pt", weights_only=True)["step"]
    assert 2 <= step < 400
    assert not (workdir / "sig/model.pt").exists()


def test_config_errors_name_the_key(workdir):
    cfg = _run_config(1, 2)
    cfg["train"]["attack"]["epz"] = 1
    write_json(cfg, workdir / "bad.json")
    with pytest.raises(ValueError, match="train.attack: unknown key.*epz"):
        train.main(["--config", str(workdir / "bad.json"), "--data-dir", str(workdir / "data"), "--model-out",
                    str(workdir / "m.pt"), "--log-csv", str(workdir / "l.csv"), "--ckpt-dir", str(workdir / "c")])
    write_json(_run_config(1, 2), workdir / "good.json")
    with pytest.raises(FileNotFoundError, match="nowhere/train.npz"):
        train.main(["--config", str(workdir / "good.json"), "--data-dir", str(workdir / "nowhere"), "--model-out",
                    str(workdir / "m.pt"), "--log-csv", str(workdir / "l.csv"), "--ckpt-dir", str(workdir / "c")])


def _ood_config(steps: int) -> dict:
    cfg = _run_config(2, steps)
    cfg["train"]["bce"].update(init="ood", ood_set="mnist5k", ood_images=64)
    return cfg


def test_stage2_from_auxiliary_ood_starts_resumes_exactly(workdir):
    """bce.init ood: chain starts are real MNIST digits (dat.prepare ood); the OOD stream resumes at its position."""
    from dat import prepare

    write_json(_run_config(2, 1)["dataset"] | {"source": "fashion_mnist", "root": str(FMNIST), "n_ood": 64,
                                               "subset_seed": 0}, workdir / "dataset.json")
    aux = workdir / "aux_ood.npz"
    assert prepare.main(["ood", "--config", str(workdir / "dataset.json"), "--name", "mnist5k", "--n", "64",
                         "--out", str(aux)]) == 0
    with np.load(aux) as f:
        assert f["x"].shape == (64, 28, 28, 1) and f["x"].dtype == np.uint8
    write_json(_ood_config(4), workdir / "ood.json")

    def run(name, *extra):
        return train.main([*_cli(workdir, workdir / "ood.json", name), "--aux-ood", str(aux), *extra])

    assert run("full") == 0
    assert run("part", "--stop-after", "2") == train.EXIT_INTERRUPTED
    assert run("part") == 0
    a = torch.load(workdir / "full/model.pt", weights_only=True)["model"]
    b = torch.load(workdir / "part/model.pt", weights_only=True)["model"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
    with pytest.raises(ValueError, match="--aux-ood"):
        train.Trainer(_ood_config(4), workdir / "data", None)


def test_ood_chain_starts_feed_the_sampler(workdir, monkeypatch):
    """With T = 0 the contrastive samples are the chain starts themselves: the given OOD batch, not noise."""
    cfg = _run_config(2, 1)
    cfg["train"]["bce"].update(initial_steps=0, max_steps=0)
    trainer = train.Trainer(cfg, workdir / "data", None)
    x, y = _real_images(16)
    batch = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(y))
    bce = (batch[0][:8], batch[1][:8])
    seen = {}
    real_ascent = train.normalized_gradient_ascent

    def spy(model, x_init, y, **kw):
        seen["x_init"] = x_init.clone()
        return real_ascent(model, x_init, y, **kw)

    monkeypatch.setattr(train, "normalized_gradient_ascent", spy)
    x_ood = torch.zeros(8, 1, 28, 28)
    trainer.train_step(batch, bce, x_ood)
    assert torch.equal(seen["x_init"], x_ood)
    trainer.train_step(batch, bce)  # noise starts: uniform in [0, 1), not the OOD batch
    assert seen["x_init"].std() > 0.2 and 0 <= seen["x_init"].min() and seen["x_init"].max() < 1


def test_device_resolution_names_a_missing_gpu():
    from dat.io import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda:0: CUDA is not available"):
            resolve_device("cuda:0")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_stage2_on_gpu_writes_cpu_checkpoints_that_resume(workdir):
    rc, run_dir = _train(workdir, 2, 4, "gpu", extra=["--device", "cuda", "--stop-after", "2"])
    assert rc == train.EXIT_INTERRUPTED
    rc, run_dir = _train(workdir, 2, 4, "gpu", extra=["--device", "cuda"])
    assert rc == 0
    ckpt = torch.load(run_dir / "model.pt", weights_only=True)
    assert ckpt["step"] == 4 and all(v.device.type == "cpu" for v in ckpt["model"].values())


def test_bf16_channels_last_and_timed_checkpoints(workdir, monkeypatch):
    """precision bf16 + channels_last train on the CPU with finite losses and fp32 weights; ckpt_every_minutes saves
    last.pt between the step-based checkpoints."""
    saved = []
    real_save = train.atomic_torch_save

    def recording_save(obj, path, **kwargs):
        saved.append((Path(path).name, obj["step"]))
        real_save(obj, path, **kwargs)

    monkeypatch.setattr(train, "atomic_torch_save", recording_save)
    cfg = _run_config(2, 3)
    cfg["train"].update(precision="bf16", channels_last=True, ckpt_every_steps=1000, ckpt_every_minutes=1e-9)
    write_json(cfg, workdir / "bf16.json")
    out = workdir / "bf16"
    assert train.main(_cli(workdir, workdir / "bf16.json", "bf16")) == 0
    assert saved == [("last.pt", 1), ("last.pt", 2), ("last.pt", 3), ("last.pt", 3), ("model.pt", 3)]
    rows = _log(out)
    assert len(rows) == 3 and all(np.isfinite(float(r["loss"])) and np.isfinite(float(r["bce"])) for r in rows)
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert all(v.dtype != torch.bfloat16 for v in ckpt["model"].values())
    cfg["train"]["precision"] = "fp16"
    write_json(cfg, workdir / "bad.json")
    with pytest.raises(ValueError, match="train.precision"):
        train.main(_cli(workdir, workdir / "bad.json", "bf16"))


def test_nonfinite_loss_stops_with_its_own_exit_code_keeping_the_last_good_checkpoint(workdir, monkeypatch):
    real_loss, calls = train.dat_loss, []

    def diverging_loss(*args, **kwargs):
        calls.append(1)
        terms = real_loss(*args, **kwargs)
        if len(calls) == 3:  # the third update diverges
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(train, "dat_loss", diverging_loss)
    rc, run_dir = _train(workdir, 1, 6, "nan")
    assert rc == train.EXIT_NONFINITE != train.EXIT_INTERRUPTED
    assert torch.load(run_dir / "ckpt/last.pt", weights_only=True)["step"] == 2  # saved every 2 steps, before step 3
    assert not (run_dir / "model.pt").exists()


def test_nonfinite_contrastive_logits_stop_like_a_nonfinite_loss(workdir, monkeypatch):
    """NaN contrastive samples (a blown-up model, as a 2-update rehearsal at the paper's lr gave) end the run with
    the divergence exit code, not a ValueError from the batch AUC."""
    real_ascent, calls = train.normalized_gradient_ascent, []

    def nan_at_3(*args, **kwargs):
        calls.append(1)
        x_T, extra = real_ascent(*args, **kwargs)
        return (x_T * float("nan") if len(calls) == 3 else x_T), extra

    monkeypatch.setattr(train, "normalized_gradient_ascent", nan_at_3)
    rc, run_dir = _train(workdir, 2, 6, "nan_fake")
    assert rc == train.EXIT_NONFINITE
    assert torch.load(run_dir / "ckpt/last.pt", weights_only=True)["step"] == 2


def _torchrun(workdir: Path, cfg_path: Path, name: str, nproc: int, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "dat.train",
           *_cli(workdir, cfg_path, name), "--device", "cpu", *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def test_data_parallel_stage2_matches_one_process_and_resumes(workdir):
    """torchrun with 2 CPU processes (gloo): each trains on half of every global batch; with BatchNorm frozen and no
    random augmentation the result equals the single-process run (same batches, same noise, same AUC and T), and a
    stopped data-parallel run resumes to the same end."""
    cfg = _run_config(2, 4)
    cfg["train"]["augment"] = {"at": ["none"], "bce": ["none"]}
    cfg["train"]["bce"]["auc_threshold"] = 0.6
    write_json(cfg, workdir / "ddp.json")
    assert train.main([*_cli(workdir, workdir / "ddp.json", "one"), "--device", "cpu"]) == 0
    proc = _torchrun(workdir, workdir / "ddp.json", "two", 2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one = torch.load(workdir / "one/model.pt", weights_only=True)
    two = torch.load(workdir / "two/model.pt", weights_only=True)
    assert one["step"] == two["step"] == 4
    for key in one["model"]:
        assert torch.allclose(one["model"][key].float(), two["model"][key].float(), atol=1e-4, rtol=1e-4), key
    rows_one, rows_two = _log(workdir / "one"), _log(workdir / "two")
    assert [r["steps_T"] for r in rows_one] == [r["steps_T"] for r in rows_two]
    assert [float(r["auc"]) for r in rows_one] == pytest.approx([float(r["auc"]) for r in rows_two], abs=1e-6)
    # interrupted after 2 steps, then resumed: the same end as the uninterrupted data-parallel run
    stopped = _torchrun(workdir, workdir / "ddp.json", "part", 2, "--stop-after", "2")
    stopped_at = torch.load(workdir / "part/ckpt/last.pt", weights_only=True)
    assert stopped.returncode != 0 and stopped_at["step"] == 2 and len(stopped_at["rng_ranks"]) == 2
    resumed = _torchrun(workdir, workdir / "ddp.json", "part", 2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    part = torch.load(workdir / "part/model.pt", weights_only=True)
    for key in two["model"]:
        assert torch.allclose(part["model"][key].float(), two["model"][key].float(), atol=1e-5), key
    assert (workdir / "part/ckpt/last.pt").samefile(workdir / "part/model.pt")  # the finished run: one copy


def test_global_batch_must_split_over_processes(workdir):
    from dat.distributed import DistEnv

    with pytest.raises(ValueError, match="train.batch_size = 16 does not split over 3 processes"):
        train.Trainer(_run_config(1, 2), workdir / "data", None, dist_env=DistEnv(rank=0, world_size=3))


def test_init_from_a_checkpoint_file_checks_its_sha256(workdir):
    """A published stage-1 checkpoint (here: our own stage-1 model.pt) replaces stage 1 when its sha256 matches."""
    from dat.io import sha256_file

    rc, s1 = _train(workdir, 1, 2, "pub")
    assert rc == 0
    digest = sha256_file(s1 / "model.pt")
    rc, s2 = _train(workdir, 2, 2, "from_pub", init=s1 / "model.pt", extra=["--init-sha256", digest])
    assert rc == 0
    ema = torch.load(s1 / "model.pt", weights_only=True)["ema"]
    stage2 = torch.load(s2 / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(stage2[k], v) for k, v in ema.items() if "running_" in k)
    with pytest.raises(ValueError, match=f"sha256 of .*pub/model.pt is {digest}, expected 0+"):
        _train(workdir, 2, 2, "bad_pub", init=s1 / "model.pt", extra=["--init-sha256", "0" * 64])


def _baseline_config(method: str, steps: int) -> dict:
    cfg = _run_config(1, steps)
    cfg["run"], cfg["method"] = method, method
    block = cfg["train"]
    if method == "ratio":
        block["ratio"] = {"lam": 1.0, "eps": 1.0, "step_size": 0.25, "steps": 2, "batch_size": 8}
    else:  # jem, ebjdat: Adam without weight decay (JEM), SGLD over a small buffer
        block.update(optimizer={"name": "adamw", "lr": 1e-4, "weight_decay": 0.0, "schedule": "constant"})
        block["sgld"] = {"buffer_size": 32, "reinit": 0.05, "steps": 3, "batch_size": 8}
        if method == "ebjdat":
            block["ebjdat"] = {"attack_steps": 2}
    return cfg


@pytest.mark.parametrize("method", ["ratio", "jem", "ebjdat"])
def test_baselines_train_and_resume_exactly(workdir, method):
    """RATIO, JEM and EB-JDAT train through the same command; a resumed run (JEM: replay buffer restored) ends
    where the uninterrupted run ends."""
    cfg = workdir / f"{method}.json"
    write_json(_baseline_config(method, 4), cfg)
    assert train.main(_cli(workdir, cfg, f"{method}_full")) == 0
    assert train.main([*_cli(workdir, cfg, f"{method}_part"), "--stop-after", "2"]) == train.EXIT_INTERRUPTED
    last = torch.load(workdir / f"{method}_part/ckpt/last.pt", weights_only=True)
    assert ("replay" in last) == (method != "ratio")
    assert train.main(_cli(workdir, cfg, f"{method}_part")) == 0
    a = torch.load(workdir / f"{method}_full/model.pt", weights_only=True)["model"]
    b = torch.load(workdir / f"{method}_part/model.pt", weights_only=True)["model"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
    row = _log(workdir / f"{method}_full")[-1]
    assert np.isfinite(float(row["kl_out" if method == "ratio" else "px"]))  # the method's own term is logged


def test_ebjdat_attacks_the_noisy_labelled_batch_with_its_labels(workdir, monkeypatch):
    """EB-JDAT's training attack starts from the labelled batch with JEM's data noise added and ascends the logits of
    its labels (authors' code: sampleXadv(f, x=x_lab, y=y_lab)), not from the clean images."""
    calls, real = [], train.ebjdat_attack

    def spy(model, x, y, **kwargs):
        calls.append((x.detach().clone(), y.clone()))
        return real(model, x, y, **kwargs)

    monkeypatch.setattr(train, "ebjdat_attack", spy)
    write_json(_baseline_config("ebjdat", 1), workdir / "ebjdat.json")
    assert train.main(_cli(workdir, workdir / "ebjdat.json", "ebjdat")) == 0
    (x, y), = calls
    assert y.dtype == torch.int64 and y.shape == (len(x),)
    off_grid = (x * 255 - (x * 255).round()).abs()  # clean images sit on the 1/255 grid, noisy ones do not
    assert off_grid.max() > 0.05 and off_grid.mean() > 0.1


def test_jem_energy_blow_up_stops_training_keeping_the_last_good_checkpoint(workdir):
    cfg = _baseline_config("jem", 6)
    cfg["train"]["sgld"]["energy_limit"] = 1e-6  # any sample energy counts as a blow-up
    write_json(cfg, workdir / "jem.json")
    assert train.main(_cli(workdir, workdir / "jem.json", "jem")) == train.EXIT_NONFINITE
    assert not (workdir / "jem/model.pt").exists()


def test_jem_divergence_with_keep_last_ends_with_the_last_good_checkpoint(workdir, monkeypatch):
    """on_divergence keep_last: the run ends cleanly, model.pt holds the step-2 checkpoint marked diverged, and the
    evaluation commands record it; a divergence before any checkpoint still exits 65."""
    from dat.checkpoint import checkpoint_record, load_model

    cfg = _baseline_config("jem", 6)
    cfg["train"].update(on_divergence="keep_last", ckpt_every_steps=2)
    write_json(cfg, workdir / "jem.json")
    real = train.Trainer._losses_jem

    def blow_up_at_3(self, *args):
        if self.step == 2:  # the third update (step counts completed updates)
            raise FloatingPointError("SGLD samples diverged at step 2: max |E(x_q)| = 3e+04")
        return real(self, *args)

    monkeypatch.setattr(train.Trainer, "_losses_jem", blow_up_at_3)
    assert train.main(_cli(workdir, workdir / "jem.json", "jem")) == 0
    last = torch.load(workdir / "jem/ckpt/last.pt", weights_only=True)
    model, ckpt = load_model(workdir / "jem/model.pt", "ema")
    assert ckpt["step"] == 2 and "optimizer" not in ckpt and "replay" not in ckpt
    assert ckpt["diverged"] == {"at_step": 3, "kept_step": 2, "reason": "SGLD samples diverged at step 2: max |E(x_q)| = 3e+04"}
    for key in ("model", "ema"):  # the weights of the last good checkpoint, unchanged
        assert (ckpt[key] is None) == (last[key] is None)
        assert all(torch.equal(ckpt[key][k], v) for k, v in (last[key] or {}).items())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in (last["ema"] or last["model"]).items())
    record = checkpoint_record(workdir / "jem/model.pt", ckpt, "ema")
    assert record["diverged"]["at_step"] == 3 and record["step"] == 2

    cfg["train"]["ckpt_every_steps"] = 50  # no checkpoint before the failing update: nothing good to keep
    write_json(cfg, workdir / "jem_early.json")
    assert train.main(_cli(workdir, workdir / "jem_early.json", "jem_early")) == train.EXIT_NONFINITE
    assert not (workdir / "jem_early/model.pt").exists()


def test_changed_config_sets_the_old_checkpoint_aside_and_trains_afresh(workdir):
    """A rerun after a hyperparameter change (Snakemake retrains on a params change) neither fails on nor resumes
    from the old last.pt: it is kept as last.stale-*.pt and the run equals a run of the new config from scratch;
    stale Figure 4 snapshots go too."""
    old, new = _run_config(1, 4), _run_config(1, 4)
    new["train"]["optimizer"]["lr"] = 0.02
    write_json(old, workdir / "old.json")
    write_json(new, workdir / "new.json")
    assert train.main([*_cli(workdir, workdir / "old.json", "run"), "--stop-after", "2"]) == train.EXIT_INTERRUPTED
    (workdir / "run/snapshots").mkdir()
    (workdir / "run/snapshots/step_0000003.pt").write_bytes(b"from the old config")
    assert train.main(_cli(workdir, workdir / "new.json", "run")) == 0
    assert train.main(_cli(workdir, workdir / "new.json", "fresh")) == 0
    stale = list((workdir / "run/ckpt").glob("last.stale-*.pt"))
    assert len(stale) == 1 and torch.load(stale[0], weights_only=True)["step"] == 2
    a = torch.load(workdir / "run/model.pt", weights_only=True)["model"]
    b = torch.load(workdir / "fresh/model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [int(r["step"]) for r in _log(workdir / "run")] == [1, 2, 3, 4]
    assert not (workdir / "run/snapshots/step_0000003.pt").exists()


def test_evaluation_settings_do_not_touch_training(workdir):
    """A run killed under one run.json resumes (no fresh start) under another that differs only in what
    evaluation reads (sampling/evaluate blocks, evaluation-only dataset keys), or under its train.json view."""
    from dat.config import training_view

    first = {**_run_config(1, 4), "sampling": {"n_final": 500}, "evaluate": {"n_clean": 100}}
    first["dataset"].update(counterfactual_radii=[0.5, 1.0], ood_sets=["noise"])
    second = copy.deepcopy(first)
    second["sampling"]["n_final"] = 50000
    second["dataset"]["counterfactual_radii"] = [1.0, 2.0]
    assert training_view(first) == training_view(second) == _run_config(1, 4)
    write_json(first, workdir / "first.json")
    write_json(training_view(second), workdir / "train.json")
    assert train.main([*_cli(workdir, workdir / "first.json", "run"), "--stop-after", "2"]) == train.EXIT_INTERRUPTED
    assert train.main(_cli(workdir, workdir / "train.json", "run")) == 0
    assert not list((workdir / "run/ckpt").glob("last.stale-*.pt"))  # resumed, not restarted
    assert [int(r["step"]) for r in _log(workdir / "run")] == [1, 2, 3, 4]
    assert torch.load(workdir / "run/model.pt", weights_only=True)["config"] == training_view(first)
