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

import logging
import sys
import time
from pathlib import Path

import numpy as np

from dat.cli import (add_machine_arguments, add_run_arguments, add_starts_argument, command_parser, load_run_model, start,
                     starts_name)
from dat.data import load_starts
from dat.io import read_json, save_npz
from dat.sampling import generate

log = logging.getLogger("dat.sample")


def parse_args(argv=None):
    p = command_parser("dat.sample", __doc__)
    add_run_arguments(p, data=None, out="samples.npz")
    p.add_argument("--grid", type=Path, required=True, help="grid.json with the chosen T")
    p.add_argument("--unconditional", action="store_true",
                   help="ascend logsumexp f(x) whatever sampling.conditional says (paper Table 9, Figure 8)")
    add_starts_argument(p)
    add_machine_arguments(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = start(args)
    run, model, _ = load_run_model(args, device)
    ds, s = run.dataset, run.sampling
    steps = int(read_json(args.grid)["chosen_steps"])  # unconditional samples use the conditional grid's T
    conditional = bool(s.conditional) and not args.unconditional
    t0 = time.time()
    out = generate(
        model, n=s.n_final, num_classes=ds.num_classes, image_shape=(ds.channels, ds.image_size, ds.image_size),
        step_size=float(ds.sampling_step_size), steps=steps, seed=s.seed_final, conditional=conditional,
        batch_size=s.batch_size, device=device, starts=load_starts(args.starts),
    )
    save_npz(args.out, x=out["x"], y=out["y"], x_init=out["x_init"], steps=np.int64(steps),
             conditional=np.bool_(conditional), starts=np.str_(starts_name(run, args.starts)))
    log.info("wrote %d samples at T=%d to %s in %.1f s", len(out["y"]), steps, args.out, time.time() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
