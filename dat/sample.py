"""CLI: draw class-balanced samples from a trained model at the grid-searched number of steps T.

Conditional sampling (the paper's default, Appendix A.2): y = arange(N) % K, chains start from uniform noise or,
with ``sampling.init: train`` and ``--starts``, from images of the auxiliary OOD set the run was trained against
(paper Table 8, "OOD data source"), T steps of normalised-gradient ascent on f(x)[y] with the dataset's step size
(``dat.sampling``). Unconditional sampling (``sampling.conditional: false``, or ``--unconditional`` for the second
sample set of paper Table 9) ascends logsumexp f(x) from the same starts, at the T the conditional grid search chose.
For unconditional samples ``y`` still holds arange(N) % K (not used by the sampler).

Example::

    python -m dat.sample --config results/fmnist_dat/run.json --model results/fmnist_dat/model.pt \
        --grid results/fmnist_dat/grid.json --out results/fmnist_dat/samples.npz
    python -m dat.sample ... --unconditional --out results/fmnist_dat/samples_uncond.npz
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dat.checkpoint import load_model
from dat.config import TrainConfig
from dat.data import open_images, to_tensor, to_uint8
from dat.io import add_device_argument, read_json, resolve_device, save_npz, set_threads, setup_logging
from dat.sampling import balanced_labels, normalized_gradient_ascent, uniform_noise

log = logging.getLogger("dat.sample")


def generate(
    model: nn.Module,
    *,
    n: int,
    num_classes: int,
    image_shape: tuple[int, int, int],
    step_size: float,
    steps: int,
    seed: int,
    record: list[int] | None = None,
    conditional: bool = True,
    batch_size: int = 250,
    device: str | torch.device = "cpu",
    starts=None,
) -> dict:
    """Run class-balanced chains from uniform noise (or images of ``starts``) in batches.

    Args:
        model: classifier in eval mode, inputs (N, C, H, W) in [0, 1].
        n: number of samples; labels are ``arange(n) % num_classes``.
        image_shape: (C, H, W).
        step_size: L2 step in pixel units; steps: T.
        seed: seeds the noise starts (use different seeds for grid-search and final samples).
        record: step counts whose iterates are also returned (the grid of T: one chain serves all).
        conditional: ascend f(x)[y] (True) or logsumexp f(x) (False).
        device: where the chains run (the model's device); the noise is drawn on the CPU from ``seed``, so the
            samples do not depend on the device beyond floating-point rounding.
        starts: None (uniform noise) or a pool of start images, uint8 (M, H, W, C) array or
            :class:`dat.data.ImageFiles`; ``seed`` permutes it (drawn without replacement while n <= M).

    Raises:
        ValueError: ``starts`` images of another shape than ``image_shape`` (both named).

    Returns:
        dict with ``x`` uint8 (n, H, W, C) at T = steps, ``y`` int64 (n,), ``x_init`` uint8 (n, H, W, C),
        and ``snapshots`` {t: uint8 (n, H, W, C)} for t in ``record``.
    """
    generator = torch.Generator().manual_seed(seed)
    y_all = balanced_labels(n, num_classes)
    record = sorted(set(record or []))
    order = None
    if starts is not None:
        c, h, w = image_shape
        if tuple(starts.shape[1:]) != (h, w, c):
            raise ValueError(f"start images are {tuple(starts.shape[1:])} (H, W, C); the model samples {(h, w, c)}")
        order = start_indices(n, len(starts), generator)
    outs, inits, snaps = [], [], {t: [] for t in record}
    for start in range(0, n, batch_size):
        y = y_all[start:start + batch_size]
        if order is None:
            x0 = uniform_noise(len(y), image_shape, generator)
        else:
            x0 = to_tensor(starts[order[start:start + len(y)]])
        x_T, snapshots = normalized_gradient_ascent(
            model, x0.to(device), y.to(device) if conditional else None, step_size=step_size, steps=steps, record=record
        )
        outs.append(to_uint8(x_T))
        inits.append(to_uint8(x0))
        for t in record:
            snaps[t].append(to_uint8(snapshots[t]))
    return {
        "x": np.concatenate(outs),
        "y": y_all.numpy(),
        "x_init": np.concatenate(inits),
        "snapshots": {t: np.concatenate(v) for t, v in snaps.items()},
    }


def start_indices(n: int, pool: int, generator: torch.Generator) -> np.ndarray:
    """``n`` indices into a pool of ``pool`` start images: one random permutation after another (no image is
    reused before every image has been used), int64 (n,)."""
    if pool < 1:
        raise ValueError("the pool of start images is empty")
    perms = [torch.randperm(pool, generator=generator) for _ in range(-(-n // pool))]
    return torch.cat(perms)[:n].numpy()


def load_starts(path: Path | None):
    """The start images of ``--starts`` (an npz written by the prepare_aux_ood rule), or None for uniform noise."""
    return None if path is None else open_images(path, labels=False)[0]


def starts_name(run: dict, path: Path | None) -> str:
    """What the chains start from, as grid.json and the sample files record it (paper Table 8's column):
    ``noise`` or the auxiliary OOD set of the run's method (its bce or ratio block's ``ood_set``)."""
    if path is None:
        return "noise"
    aux = TrainConfig.from_dict(run["train"]).aux
    return (aux.ood_set if aux else None) or str(path)


def add_starts_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--starts", type=Path, default=None,
                   help="npz of chain-start images (key x; the run's aux_ood.npz under sampling.init train); "
                        "default uniform noise")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dat.sample", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="run JSON (results/{run}/run.json)")
    p.add_argument("--model", type=Path, required=True, help="trained model.pt")
    p.add_argument("--grid", type=Path, required=True, help="grid.json with the chosen T")
    p.add_argument("--out", type=Path, required=True, help="samples.npz to write")
    p.add_argument("--unconditional", action="store_true",
                   help="ascend logsumexp f(x) whatever sampling.conditional says (paper Table 9, Figure 8)")
    add_starts_argument(p)
    p.add_argument("--threads", type=int, default=None)
    add_device_argument(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    run = read_json(args.config)
    ds, s = run["dataset"], run["sampling"]
    steps = int(read_json(args.grid)["chosen_steps"])  # unconditional samples use the conditional grid's T
    conditional = bool(s["conditional"]) and not args.unconditional
    device = resolve_device(args.device)
    model, _ = load_model(args.model, run["evaluate"]["weights"], device)
    t0 = time.time()
    out = generate(
        model, n=s["n_final"], num_classes=ds["num_classes"], image_shape=(ds["channels"], ds["image_size"], ds["image_size"]),
        step_size=float(ds["sampling_step_size"]), steps=steps, seed=s["seed_final"], conditional=conditional,
        batch_size=s["batch_size"], device=device, starts=load_starts(args.starts),
    )
    save_npz(args.out, x=out["x"], y=out["y"], x_init=out["x_init"], steps=np.int64(steps),
             conditional=np.bool_(conditional), starts=np.str_(starts_name(run, args.starts)))
    log.info("wrote %d samples at T=%d to %s in %.1f s", len(out["y"]), steps, args.out, time.time() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
