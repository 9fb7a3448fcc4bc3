"""CLI: robust accuracy and FID of the weight snapshots a stage-2 run saved along the way (paper Figure 4).

A method with ``snapshots: {every_steps: N}`` makes ``dat.train`` save the model (EMA weights when kept) before its
first update and after every N updates into ``results/{run}/snapshots/step_<step>.pt``. For each snapshot, in step
order (and for the final model ``--final`` when its step is not a snapshot's), this command measures what Figure 4
plots against the images seen: clean and L2/Linf PGD accuracy on the first ``snapshots.n_pgd`` test images (the same
PGD as ``dat.eval_robust``), and the FID of ``snapshots.n_samples`` class-balanced samples drawn at the T of the
final model's grid search (the same sampler as ``dat.sample``, seed ``sampling.seed_snapshots``: chains of their
own, neither the grid's nor the final samples') against the dataset's FID reference. These FIDs also choose the
best-FID checkpoint (``dat.select_checkpoint``, ``evaluate.checkpoint: best_fid``). The counts are small on purpose:
the curves show a trend; the final numbers are those of Table 1.

Example::

    python -m dat.eval_snapshots --config results/fmnist_dat/run.json --snapshots results/fmnist_dat/snapshots \
        --final results/fmnist_dat/model.pt --data results/data/fmnist/test.npz --ref results/data/fmnist/fid_ref.npz \
        --grid results/fmnist_dat/grid.json --out results/fmnist_dat/metrics/snapshots.json
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

import torch

from dat.attacks import pgd_robust, pgd_step_size
from dat.checkpoint import checkpoint_record, load_model
from dat.cli import add_machine_arguments, add_starts_argument, command_parser, start, starts_name
from dat.config import RunConfig
from dat.data import load_starts, open_images, to_tensor
from dat.inception import load_feature_extractor, read_fid_reference
from dat.io import load_checkpoint, provenance, read_json, write_json
from dat.metrics import fid_from_features
from dat.models import predict_logits
from dat.sampling import generate

log = logging.getLogger("dat.eval_snapshots")
SNAPSHOT_RE = re.compile(r"step_(\d+)\.pt")


def snapshot_files(folder: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step_<step>.pt`` in ``folder``, by step.

    Raises:
        FileNotFoundError: naming the folder when it holds no snapshot (the method needs a ``snapshots`` block).
    """
    found = sorted((int(m.group(1)), p) for p in folder.glob("step_*.pt") if (m := SNAPSHOT_RE.fullmatch(p.name)))
    if not found:
        raise FileNotFoundError(f"{folder}: no step_<n>.pt snapshots (set snapshots.every_steps in the run's method)")
    return found


def snapshot_candidates(folder: Path, final: Path | None = None) -> list[tuple[int, Path]]:
    """:func:`snapshot_files` of ``folder``, plus ``(step, final)`` when the checkpoint ``final`` (the run's
    model.pt) holds a step no snapshot has (training rarely ends on a multiple of ``every_steps``), by step.

    Raises:
        FileNotFoundError: as :func:`snapshot_files`.
    """
    found = snapshot_files(folder)
    if final is not None:
        step = int(load_checkpoint(final)["step"])
        if step not in {s for s, _ in found}:
            found = sorted([*found, (step, final)])
    return found


def parse_args(argv=None):
    p = command_parser("dat.eval_snapshots", __doc__)
    p.add_argument("--config", type=Path, required=True, help="run JSON")
    p.add_argument("--snapshots", type=Path, required=True, help="folder of step_<n>.pt snapshots")
    p.add_argument("--data", type=Path, required=True, help="test.npz")
    p.add_argument("--ref", type=Path, required=True, help="fid_ref.npz (mu, sigma, labels)")
    p.add_argument("--grid", type=Path, required=True, help="grid.json of the final model, with the chosen T")
    p.add_argument("--final", type=Path, default=None,
                   help="the run's model.pt: measured too when its step is not a snapshot's")
    p.add_argument("--out", type=Path, required=True, help="snapshots.json to write")
    add_starts_argument(p)
    add_machine_arguments(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = start(args)
    run = RunConfig.read(args.config)
    ds, ev, s = run.dataset, run.evaluate, run.sampling
    cfg = run.train.snapshots
    if cfg is None:
        raise ValueError(f"{args.config}: the run's method has no snapshots block")
    norm, eps = ds.threat_model.norm, ds.threat_model.eps
    p = ev.pgd
    steps_t = int(read_json(args.grid)["chosen_steps"])
    images, labels = open_images(args.data)
    n_pgd = min(cfg.n_pgd, len(labels))
    x, y = to_tensor(images[:n_pgd]), torch.from_numpy(labels[:n_pgd]).long()
    extractor = load_feature_extractor(ev.fid.extractor, str(device))
    mu_ref, sigma_ref, n_ref = read_fid_reference(args.ref)
    t0, points, starts = time.time(), [], load_starts(args.starts)
    for step, path in snapshot_candidates(args.snapshots, args.final):
        model, ckpt = load_model(path, ev.weights, device)
        acc_clean = float(predict_logits(model, x, ev.batch_size).argmax(1).eq(y).float().mean())
        correct, _ = pgd_robust(model, x, y, eps=eps, step_size=pgd_step_size(eps, p.steps, p.step_size_factor),
                                steps=p.steps, norm=norm, batch_size=ev.batch_size)
        samples = generate(model, n=cfg.n_samples, num_classes=ds.num_classes,
                           image_shape=(ds.channels, ds.image_size, ds.image_size),
                           step_size=float(ds.sampling_step_size), steps=steps_t, seed=s.seed_snapshots,
                           conditional=s.conditional, batch_size=s.batch_size, device=device, starts=starts)
        fid = float(fid_from_features(extractor(samples["x"])["features"], mu_ref, sigma_ref))
        points.append({"step": step, "images": step * run.train.batch_size, "acc_clean": acc_clean,
                       "acc_pgd": float(correct.float().mean()), "fid": fid,
                       "checkpoint": checkpoint_record(path, ckpt, ev.weights)})
        log.info("step %d: clean %.4f, PGD %.4f, FID %.2f", step, acc_clean, points[-1]["acc_pgd"], fid)
    write_json({"run": run.run, "dataset": ds.name, "points": points, "n_pgd": n_pgd, "norm": norm, "eps": eps,
                "pgd_steps": p.steps, "n_samples": cfg.n_samples, "n_ref": n_ref, "steps": steps_t,
                "extractor": extractor.name, "starts": starts_name(run, args.starts), "seed": s.seed_snapshots,
                "time_s": round(time.time() - t0, 2), **provenance()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
