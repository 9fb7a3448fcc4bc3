"""The best-FID checkpoint (evaluate.checkpoint: best_fid): the pure choice, the command that writes selected.pt and
selection.json from snapshots.json, the record every evaluation then carries, and the final model as a candidate."""

import json
import math

import numpy as np
import pytest
import torch

from dat import eval_calibration, select_checkpoint
from dat.checkpoint import checkpoint_record, final_selection
from dat.config import RunConfig
from dat.eval_snapshots import snapshot_candidates
from dat.io import atomic_torch_save, save_npz
from dat.models import build_model
from dat.select_checkpoint import best_fid_point

MODEL = {"arch": "resnet_small", "num_classes": 10, "in_channels": 1, "mean": [0.286], "std": [0.353],
         "widths": [8, 16, 32], "first_stride": 2}


def test_best_fid_point_lowest_fid_earliest_on_a_tie():
    points = [{"step": 0, "fid": 1.0}, {"step": 20, "fid": 50.0}, {"step": 40, "fid": 30.0},
              {"step": 60, "fid": 30.0}, {"step": 80, "fid": math.nan}, {"step": 100, "fid": 45.0}]
    assert best_fid_point(points)["step"] == 40  # step 0 (stage 1) skipped, NaN never chosen, tie -> earliest
    assert best_fid_point(list(reversed(points)))["step"] == 40  # the order of the list does not matter
    assert best_fid_point(points, skip_step0=False)["step"] == 0
    assert best_fid_point([{"step": 5, "fid": 9.0}, {"step": 7, "fid": math.inf}])["step"] == 5


def test_best_fid_point_without_a_candidate_names_the_steps():
    with pytest.raises(ValueError, match=r"no candidate checkpoint with a finite FID among steps \[0, 4\]"):
        best_fid_point([{"step": 0, "fid": 10.0}, {"step": 4, "fid": math.nan}])


def _checkpoint(step: int, run_cfg: dict) -> dict:
    """A checkpoint in dat.train's layout (Trainer.state without the resumable state) whose weights depend on step."""
    torch.manual_seed(step)
    kwargs = {k: v for k, v in MODEL.items() if k != "arch"}
    model, ema = build_model(**MODEL), build_model(**MODEL)
    return {"format_version": 1, "git_sha": "0" * 40, "torch_version": str(torch.__version__),
            "model": model.state_dict(), "ema": ema.state_dict(), "step": step, "epoch": step / 100,
            "model_name": MODEL["arch"], "model_kwargs": kwargs, "config": run_cfg, "init_sha256": None,
            "diverged": None}


@pytest.fixture
def snapshot_run(tmp_path, run_json):
    """A run folder with snapshots at steps 0, 4, 8, a final model.pt at step 10, and a snapshots.json that measured
    them all (FID lowest at step 4)."""
    run_dir = tmp_path / "results/tiny_dat"
    run = run_json({"run": "tiny_dat", "seed": 0,
                    "model": {"arch": "resnet_small", "kwargs": {"widths": [8, 16, 32], "first_stride": 2}},
                    "train": {"batch_size": 16, "steps": 10, "snapshots": {"every_steps": 4}},
                    "evaluate": {"checkpoint": "best_fid", "weights": "ema", "batch_size": 8, "n_clean": None,
                                 "ece": {"n_bins": 5}}})
    (run_dir / "metrics").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(run))
    paths = {}
    for step in (0, 4, 8):
        paths[step] = run_dir / f"snapshots/step_{step:07d}.pt"
        atomic_torch_save(_checkpoint(step, run), paths[step])
    paths[10] = run_dir / "model.pt"
    atomic_torch_save(_checkpoint(10, run), paths[10])
    fids = {0: 10.0, 4: 20.0, 8: 25.0, 10: 21.5}
    points = [{"step": step, "images": step * 16, "acc_clean": 0.5, "acc_pgd": 0.3, "fid": fids[step],
               "checkpoint": {"path": str(paths[step]), "step": step, "weights": "ema"}} for step in (0, 4, 8, 10)]
    (run_dir / "metrics/snapshots.json").write_text(json.dumps(
        {"run": "tiny_dat", "points": points, "n_samples": 20, "steps": 6, "seed": 4000}))
    return run_dir, paths


def test_select_checkpoint_writes_the_chosen_weights_and_its_record(snapshot_run):
    run_dir, paths = snapshot_run
    out, record = run_dir / "selected.pt", run_dir / "selection.json"
    assert select_checkpoint.main(["--config", str(run_dir / "run.json"), "--snapshots",
                                   str(run_dir / "metrics/snapshots.json"), "--out", str(out),
                                   "--record", str(record)]) == 0
    selected, source = torch.load(out, weights_only=True), torch.load(paths[4], weights_only=True)
    # model.pt's layout and the weights of step 4 (the lowest FID once step 0, the stage-1 weights, is left out)
    assert set(selected) == set(source) | {"selection"} and selected["step"] == 4
    for key in ("model", "ema"):
        assert all(torch.equal(selected[key][k], v) for k, v in source[key].items())
    final_ema = torch.load(paths[10], weights_only=True)["ema"]
    assert any(not torch.equal(selected["ema"][k], v) for k, v in final_ema.items())  # not the final model's
    sel = json.loads(record.read_text())
    assert (sel["checkpoint"], sel["step"], sel["final_step"], sel["fid"]) == ("best_fid", 4, 10, 20.0)
    assert (sel["steps"], sel["n_samples"], sel["seed"]) == (6, 20, 4000)
    assert [(c["step"], c["fid"], c["candidate"]) for c in sel["candidates"]] == [
        (0, 10.0, False), (4, 20.0, True), (8, 25.0, True), (10, 21.5, True)]
    assert selected["selection"] == {k: v for k, v in sel.items() if k in selected["selection"]}

    # an evaluation command reads selected.pt unchanged; its checkpoint block names the selected update
    x = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1), dtype=np.uint8)
    save_npz(run_dir / "test.npz", x=x, y=(np.arange(16) % 10).astype(np.int64))
    assert eval_calibration.main(["--config", str(run_dir / "run.json"), "--model", str(out), "--data",
                                  str(run_dir / "test.npz"), "--out", str(run_dir / "metrics/calibration.json"),
                                  "--threads", "1", "--device", "cpu"]) == 0
    calibration = json.loads((run_dir / "metrics/calibration.json").read_text())
    block = calibration["checkpoint"]
    # the intervals (issue 22): bootstrap of the ECE, Wilson of the clean accuracy, around their values
    assert calibration["ece_lo"] <= calibration["ece"] <= calibration["ece_hi"]
    assert calibration["acc_clean_lo"] <= calibration["acc_clean"] <= calibration["acc_clean_hi"]
    assert calibration["interval"]["n_resamples"] == 1000 and calibration["interval"]["level"] == 0.95
    assert block["step"] == 4 and block["selection"]["checkpoint"] == "best_fid" and block["selection"]["step"] == 4
    # the final model of the same run says it is the final one, though best_fid was asked for
    assert eval_calibration.main(["--config", str(run_dir / "run.json"), "--model", str(paths[10]), "--data",
                                  str(run_dir / "test.npz"), "--out", str(run_dir / "final.json"),
                                  "--threads", "1", "--device", "cpu"]) == 0
    final = json.loads((run_dir / "final.json").read_text())["checkpoint"]["selection"]
    assert (final["checkpoint"], final["requested"], final["step"]) == ("final", "best_fid", 10)
    assert "not the selected checkpoint" in final["reason"]


def test_select_checkpoint_refuses_a_stale_snapshot(snapshot_run):
    run_dir, paths = snapshot_run
    run = json.loads((run_dir / "run.json").read_text())
    atomic_torch_save(_checkpoint(5, run), paths[4])  # the file changed since snapshots.json measured it
    with pytest.raises(ValueError, match="holds step 5"):
        select_checkpoint.main(["--config", str(run_dir / "run.json"), "--snapshots",
                                str(run_dir / "metrics/snapshots.json"), "--out", str(run_dir / "selected.pt"),
                                "--record", str(run_dir / "selection.json")])


def test_final_selection_says_why_the_final_model_is_measured(run_json):
    ckpt = {"step": 280}
    stage1 = RunConfig.from_dict(run_json({"evaluate": {"checkpoint": "best_fid"}}, run="fmnist_at"))
    assert stage1.train.snapshots is None
    record = final_selection(stage1, ckpt)
    assert (record["checkpoint"], record["requested"], record["step"]) == ("final", "best_fid", 280)
    assert "saves no weight snapshots" in record["reason"]
    final = RunConfig.from_dict(run_json({"evaluate": {"checkpoint": "final"}}))
    assert final_selection(final, ckpt) == {"checkpoint": "final", "requested": "final", "step": 280,
                                            "final_step": 280}
    assert checkpoint_record("m.pt", {**ckpt, "selection": record}, "ema")["selection"] == record


def test_the_final_model_is_a_candidate_when_no_snapshot_has_its_step(snapshot_run):
    run_dir, paths = snapshot_run
    folder = run_dir / "snapshots"
    assert snapshot_candidates(folder) == [(0, paths[0]), (4, paths[4]), (8, paths[8])]
    assert snapshot_candidates(folder, paths[10]) == [(0, paths[0]), (4, paths[4]), (8, paths[8]), (10, paths[10])]
    atomic_torch_save(torch.load(paths[8], weights_only=True), run_dir / "model8.pt")  # training ended on a snapshot
    assert snapshot_candidates(folder, run_dir / "model8.pt") == [(0, paths[0]), (4, paths[4]), (8, paths[8])]
