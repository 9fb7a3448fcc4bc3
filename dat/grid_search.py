"""CLI: grid search of the sampling steps T by FID on held-out samples (protocol "Sampling", paper Table 8).

One chain per held-out sample runs to max(steps_grid); its iterates at every T of the grid are kept (a chain
to T steps is a prefix of the chain to T' > T), so the grid costs one chain plus the FID features of each T.
The held-out chains use ``sampling.seed_grid``, distinct from the final samples' ``sampling.seed_final``.
The chosen T (lowest FID) goes to grid.json, which the sampling rule reads; each T's FID has a 95% interval from
a delete-a-group jackknife over the held-out samples (``evaluate.intervals``; ``dat.metrics.fid_jackknife``).

Example::

    python -m dat.grid_search --config results/fmnist_dat/run.json --model results/fmnist_dat/model.pt \
        --ref results/data/fmnist/fid_ref.npz --out results/fmnist_dat/grid.json
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from dat.checkpoint import checkpoint_record
from dat.cli import (add_machine_arguments, add_run_arguments, add_starts_argument, command_parser, load_run_model, start,
                     starts_name)
from dat.data import load_starts
from dat.inception import load_feature_extractor, read_fid_reference
from dat.io import provenance, write_json
from dat.metrics import fid_jackknife
from dat.sampling import generate

log = logging.getLogger("dat.grid_search")


def parse_args(argv=None):
    p = command_parser("dat.grid_search", __doc__)
    add_run_arguments(p, data=None, out="grid.json")
    p.add_argument("--ref", type=Path, required=True, help="fid_ref.npz of the training set (mu, sigma)")
    add_starts_argument(p)
    add_machine_arguments(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = start(args)
    run, model, ckpt = load_run_model(args, device)
    ds, s, ev = run.dataset, run.sampling, run.evaluate
    grid = sorted(int(t) for t in s.steps_grid)
    step_size = float(ds.sampling_step_size)
    extractor = load_feature_extractor(ev.fid.extractor, str(device))
    mu_ref, sigma_ref, n_ref = read_fid_reference(args.ref)
    t0 = time.time()
    out = generate(
        model, n=s.n_grid, num_classes=ds.num_classes, image_shape=(ds.channels, ds.image_size, ds.image_size),
        step_size=step_size, steps=grid[-1], seed=s.seed_grid, record=grid, conditional=s.conditional,
        batch_size=s.batch_size, device=device, starts=load_starts(args.starts),
    )
    t_chain = time.time() - t0
    iv = ev.intervals
    fids, jks = [], []
    for t in grid:  # one log line per T
        feats = extractor(out["snapshots"][t])["features"]
        jks.append(fid_jackknife(feats, mu_ref, sigma_ref, groups=iv.fid_groups, level=iv.level, seed=iv.seed))
        fids.append(float(jks[-1]["fid"]))  # fid_from_features of the features
        log.info("T=%d: FID %.2f on %d samples", t, fids[-1], s.n_grid)
    chosen = grid[int(np.argmin(fids))]
    write_json({
        "run": run.run, "dataset": ds.name, "steps_grid": grid, "fid": fids,
        "fid_lo": [jk["fid_lo"] for jk in jks], "fid_hi": [jk["fid_hi"] for jk in jks],
        "fid_interval": jks[0]["fid_interval"], "chosen_steps": chosen,
        "step_size": step_size, "n_samples": s.n_grid, "n_ref": n_ref, "extractor": extractor.name,
        "conditional": s.conditional, "starts": starts_name(run, args.starts), "seed": s.seed_grid,
        "checkpoint": checkpoint_record(args.model, ckpt, ev.weights), "chain_time_s": round(t_chain, 2),
        "time_s": round(time.time() - t0, 2), **provenance(),
    }, args.out)
    log.info("chosen T=%d (FID %.2f); wrote %s", chosen, min(fids), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
