"""CLI: expected calibration error and reliability-diagram bins on the clean test set (paper Fig. 3, App. A.5).

Equal-width confidence bins (``evaluate.ece.n_bins``), no temperature scaling (Guo et al. 2017; the metric is
``dat.metrics.expected_calibration_error``). The ECE has a percentile bootstrap interval over the test examples
(``evaluate.intervals``: level, resamples, seed), the clean accuracy a Wilson interval.

Example::

    python -m dat.eval_calibration --config results/fmnist_dat/run.json --model results/fmnist_dat/model.pt \
        --data results/data/fmnist/test.npz --out results/fmnist_dat/metrics/calibration.json
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from dat.checkpoint import checkpoint_record
from dat.cli import add_machine_arguments, add_run_arguments, command_parser, load_run_model, start
from dat.data import open_images, take, to_tensor
from dat.io import provenance, write_json
from dat.metrics import ece_interval, expected_calibration_error, wilson_fields
from dat.models import predict_logits


def parse_args(argv=None):
    p = command_parser("dat.eval_calibration", __doc__)
    add_run_arguments(p, data="test.npz", out="calibration.json")
    add_machine_arguments(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    run, model, ckpt = load_run_model(args, start(args))
    ev = run.evaluate
    t0 = time.time()
    x, y = open_images(args.data)
    n = min(ev.n_clean or len(y), len(y))
    y = y[:n]
    bs = ev.batch_size
    # images are converted batch by batch (an ImageNet test set does not fit as floats)
    probs = torch.softmax(predict_logits(model, take(x, slice(0, n)), bs, convert=to_tensor), 1).numpy()
    result = expected_calibration_error(probs, y, n_bins=ev.ece.n_bins)
    iv, n_correct = ev.intervals, int((probs.argmax(1) == y).sum())
    ece_lo, ece_hi = ece_interval(probs, y, ev.ece.n_bins, rng=np.random.default_rng(iv.seed), level=iv.level,
                                  n_resamples=iv.n_resamples)
    write_json({"run": run.run, "dataset": run.dataset.name, "ece": result["ece"], "ece_lo": ece_lo, "ece_hi": ece_hi,
                "n_bins": ev.ece.n_bins, "n_examples": int(n), "acc_clean": float((probs.argmax(1) == y).mean()),
                **wilson_fields("acc_clean", n_correct, int(n), iv.level),
                "interval": {"method": "ece: percentile bootstrap over the test examples, bins fixed; acc_clean: wilson",
                             "level": iv.level, "n_resamples": iv.n_resamples, "seed": iv.seed},
                "bins": result["bins"],
                "seed": run.seed, "checkpoint": checkpoint_record(args.model, ckpt, ev.weights),
                "time_s": round(time.time() - t0, 2), **provenance()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
