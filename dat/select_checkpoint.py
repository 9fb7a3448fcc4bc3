"""CLI: the best-FID checkpoint of a stage-2 run (``evaluate.checkpoint: best_fid``), which its evaluations measure.

The paper keeps the stage-2 checkpoint with the best FID (Appendix A.1.1; the authors' training loop measures the
FID of 10,000 samples of the EMA model at a fixed T every 50,000 images and saves ``model_bestfid.pth`` whenever it
improves: authors' code rebm/training/train.py, ``evaluate_and_log_fid``). Here the candidates are the weight
snapshots of the method's ``snapshots`` block (EMA weights when kept) and the final model, measured by
``dat.eval_snapshots``: FID of ``snapshots.n_samples`` samples at the final model's grid T, from chains of their own
(``sampling.seed_snapshots``, neither the grid's nor the final samples'). The snapshot of step 0 (the stage-1
weights, before any stage-2 update) is no candidate. :func:`best_fid_point` picks the lowest finite FID, the
earliest step on a tie; the command copies that checkpoint to ``--out`` in model.pt's layout (every evaluation
command reads it unchanged) with a ``selection`` record added, and writes that record with every candidate to
``--record``.

Example::

    python -m dat.select_checkpoint --config results/fmnist_dat/run.json \
        --snapshots results/fmnist_dat/metrics/snapshots.json --out results/fmnist_dat/selected.pt \
        --record results/fmnist_dat/selection.json
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from dat.cli import command_parser, start
from dat.config import RunConfig
from dat.io import atomic_torch_save, load_checkpoint, provenance, read_json, write_json

log = logging.getLogger("dat.select_checkpoint")


def best_fid_point(points: Sequence[dict], skip_step0: bool = True) -> dict:
    """The candidate with the lowest FID; on a tie the earliest step.

    Args:
        points: ``metrics/snapshots.json`` points, each with ``step`` (int, training updates) and ``fid`` (float,
            lower is better); non-finite FIDs (a diverged sampler) are never chosen.
        skip_step0: leave out step 0 (the weights before the first update: stage 1's model for a stage-2 run).

    Returns:
        the chosen point (the same dict).

    Raises:
        ValueError: no point with a finite FID (after leaving out step 0).
    """
    eligible = [p for p in points
                if not (skip_step0 and int(p["step"]) == 0) and p.get("fid") is not None and math.isfinite(p["fid"])]
    if not eligible:
        raise ValueError(f"no candidate checkpoint with a finite FID among steps {[p['step'] for p in points]}"
                         + (" (step 0, the initial weights, is no candidate)" if skip_step0 else ""))
    return min(eligible, key=lambda p: (float(p["fid"]), int(p["step"])))


def parse_args(argv=None):
    p = command_parser("dat.select_checkpoint", __doc__)
    p.add_argument("--config", type=Path, required=True, help="run JSON (results/{run}/run.json)")
    p.add_argument("--snapshots", type=Path, required=True, help="metrics/snapshots.json of dat.eval_snapshots")
    p.add_argument("--out", type=Path, required=True, help="selected.pt to write (model.pt's layout + selection)")
    p.add_argument("--record", type=Path, required=True, help="selection.json to write")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start(args, threads=False, device=False)
    run, snaps = RunConfig.read(args.config), read_json(args.snapshots)
    points = snaps["points"]
    best = best_fid_point(points)
    source = best["checkpoint"]["path"]
    ckpt = load_checkpoint(source)
    if int(ckpt["step"]) != int(best["step"]):
        raise ValueError(f"{source} holds step {ckpt['step']}, but {args.snapshots} measured step {best['step']} "
                         f"there; rerun dat.eval_snapshots")
    final_step = max(int(p["step"]) for p in points)
    selection = {"checkpoint": "best_fid", "requested": run.evaluate.checkpoint,
                 "step": int(best["step"]), "final_step": final_step, "fid": float(best["fid"]),
                 "source": str(source), "steps": snaps.get("steps"), "n_samples": snaps.get("n_samples"),
                 "seed": snaps.get("seed"), "weights": best["checkpoint"].get("weights")}
    ckpt["selection"] = selection
    atomic_torch_save(ckpt, args.out)
    candidates = [{"step": int(p["step"]), "fid": p["fid"], "acc_clean": p.get("acc_clean"),
                   "acc_pgd": p.get("acc_pgd"), "path": p["checkpoint"]["path"], "candidate": int(p["step"]) != 0}
                  for p in points]
    write_json({"run": run.run, **selection, "candidates": candidates, "snapshots": str(args.snapshots),
                **provenance()}, args.record)
    log.info("%s: best-FID checkpoint step %d of %d (FID %.2f at T=%s), written to %s", run.run, selection["step"],
             final_step, selection["fid"], selection["steps"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
