"""CLI: grid search of the sampling steps T by FID on held-out samples (protocol "Sampling", paper Table 8).

One chain per held-out sample runs to max(steps_grid); its iterates at every T of the grid are kept (a chain
to T steps is a prefix of the chain to T' > T), so the grid costs one chain plus the FID features of each T.
The held-out chains use ``sampling.seed_grid``, distinct from the final samples' ``sampling.seed_final``.
The chosen T (lowest FID) goes to grid.json, which the sampling rule reads.

Example::

    python -m dat.grid_search --config results/fmnist_dat/run.json --model results/fmnist_dat/model.pt \
        --ref results/data/fmnist/fid_ref.npz --out results/fmnist_dat/grid.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from dat.checkpoint import checkpoint_record, load_model
from dat.inception import load_feature_extractor
from dat.io import add_device_argument, provenance, read_json, resolve_device, set_threads, setup_logging, write_json
from dat.metrics import fid_from_features
from dat.sample import add_starts_argument, generate, load_starts, starts_name

log = logging.getLogger("dat.grid_search")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dat.grid_search", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="run JSON (results/{run}/run.json)")
    p.add_argument("--model", type=Path, required=True, help="trained model.pt")
    p.add_argument("--ref", type=Path, required=True, help="fid_ref.npz of the training set (mu, sigma)")
    p.add_argument("--out", type=Path, required=True, help="grid.json to write")
    add_starts_argument(p)
    p.add_argument("--threads", type=int, default=None)
    add_device_argument(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    run = read_json(args.config)
    ds, s, ev = run["dataset"], run["sampling"], run["evaluate"]
    grid = sorted(int(t) for t in s["steps_grid"])
    step_size = float(ds["sampling_step_size"])
    device = resolve_device(args.device)
    model, ckpt = load_model(args.model, ev["weights"], device)
    extractor = load_feature_extractor(ev["fid"]["extractor"], str(device))
    with np.load(args.ref) as ref:
        mu_ref, sigma_ref, n_ref = ref["mu"], ref["sigma"], len(ref["labels"])
    t0 = time.time()
    out = generate(
        model, n=s["n_grid"], num_classes=ds["num_classes"], image_shape=(ds["channels"], ds["image_size"], ds["image_size"]),
        step_size=step_size, steps=grid[-1], seed=s["seed_grid"], record=grid, conditional=s["conditional"],
        batch_size=s["batch_size"], device=device, starts=load_starts(args.starts),
    )
    t_chain = time.time() - t0
    fids = []
    for t in grid:
        feats = extractor(out["snapshots"][t])["features"]
        fids.append(float(fid_from_features(feats, mu_ref, sigma_ref)))
        log.info("T=%d: FID %.2f on %d samples", t, fids[-1], s["n_grid"])
    chosen = grid[int(np.argmin(fids))]
    write_json({
        "run": run["run"], "dataset": ds["name"], "steps_grid": grid, "fid": fids, "chosen_steps": chosen,
        "step_size": step_size, "n_samples": s["n_grid"], "n_ref": n_ref, "extractor": extractor.name,
        "conditional": s["conditional"], "starts": starts_name(run, args.starts), "seed": s["seed_grid"],
        "checkpoint": checkpoint_record(args.model, ckpt, ev["weights"]), "chain_time_s": round(t_chain, 2),
        "time_s": round(time.time() - t0, 2), **provenance(),
    }, args.out)
    log.info("chosen T=%d (FID %.2f); wrote %s", chosen, min(fids), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
