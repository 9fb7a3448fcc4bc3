"""CLI: expected calibration error and reliability-diagram bins on the clean test set (paper Fig. 3, App. A.5).

Equal-width confidence bins (``evaluate.ece.n_bins``), no temperature scaling (Guo et al. 2017; the metric is
``dat.metrics.expected_calibration_error``).

Example::

    python -m dat.eval_calibration --config results/fmnist_dat/run.json --model results/fmnist_dat/model.pt \
        --data results/data/fmnist/test.npz --out results/fmnist_dat/metrics/calibration.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from dat.checkpoint import checkpoint_record, load_model
from dat.data import open_images, to_tensor
from dat.io import add_device_argument, provenance, read_json, resolve_device, set_threads, setup_logging, write_json
from dat.metrics import expected_calibration_error


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dat.eval_calibration", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="run JSON")
    p.add_argument("--model", type=Path, required=True, help="trained model.pt")
    p.add_argument("--data", type=Path, required=True, help="test.npz")
    p.add_argument("--out", type=Path, required=True, help="calibration.json to write")
    p.add_argument("--threads", type=int, default=None)
    add_device_argument(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    run = read_json(args.config)
    ev = run["evaluate"]
    device = resolve_device(args.device)
    model, ckpt = load_model(args.model, ev["weights"], device)
    t0 = time.time()
    x, y = open_images(args.data)
    n = min(ev["n_clean"] or len(y), len(y))
    y = y[:n]
    bs = ev["batch_size"]
    with torch.no_grad():  # images are converted batch by batch (an ImageNet test set does not fit as floats)
        probs = torch.cat([torch.softmax(model(to_tensor(x[i:min(i + bs, n)]).to(device)), 1).cpu()
                           for i in range(0, n, bs)]).numpy()
    result = expected_calibration_error(probs, y, n_bins=ev["ece"]["n_bins"])
    write_json({"run": run["run"], "dataset": run["dataset"]["name"], "ece": result["ece"], "n_bins": ev["ece"]["n_bins"],
                "n_examples": int(n), "acc_clean": float((probs.argmax(1) == y).mean()), "bins": result["bins"],
                "seed": run["seed"], "checkpoint": checkpoint_record(args.model, ckpt, ev["weights"]),
                "time_s": round(time.time() - t0, 2), **provenance()}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
