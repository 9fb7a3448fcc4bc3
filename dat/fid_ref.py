"""CLI: FID reference statistics of the training set (Karras et al. protocol: samples vs training images).

Picks a class-balanced random subset of ``--n-ref`` training images (0 = all), computes their Inception features
(``dat.inception``) and writes ``features`` (float64 (N, 2048)), ``labels`` (int64 (N,)), ``mu`` and ``sigma`` to an
NPZ, and the extractor's name with the counts to a JSON. Per-class features serve the counterfactual FID.

Example::

    python -m dat.fid_ref --data results/data/fmnist/train.npz --n-ref 1000 --seed 0 --extractor auto \
        --out results/data/fmnist/fid_ref.npz --meta-out results/data/fmnist/fid_ref.json --threads 2
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from dat.cli import add_machine_arguments, command_parser, start
from dat.data import balanced_subset, open_images, take
from dat.inception import load_feature_extractor
from dat.io import provenance, save_npz, write_json
from dat.metrics import feature_statistics

log = logging.getLogger("dat.fid_ref")


def parse_args(argv=None):
    p = command_parser("dat.fid_ref", __doc__)
    p.add_argument("--data", type=Path, required=True, help="train.npz (x uint8 NHWC, y int64)")
    p.add_argument("--n-ref", type=int, default=0, help="reference images, class-balanced (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extractor", default="auto", choices=["auto", "shipped", "cleanfid"])
    p.add_argument("--out", type=Path, required=True, help="fid_ref.npz to write")
    p.add_argument("--meta-out", type=Path, required=True, help="fid_ref.json to write")
    add_machine_arguments(p)
    p.add_argument("--batch-size", type=int, default=None, help="Inception batch (default: 10 on CPU, 200 on GPU)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = start(args)
    t0 = time.time()
    x, y = open_images(args.data)
    idx = balanced_subset(y, args.n_ref, args.seed)
    extractor = load_feature_extractor(args.extractor, str(device))
    log.info("computing features of %d training images with %s", len(idx), extractor.name)
    features = extractor(take(x, idx), batch_size=args.batch_size)["features"]
    mu, sigma = feature_statistics(features)
    save_npz(args.out, features=features, labels=y[idx].astype(np.int64), mu=mu, sigma=sigma)
    write_json({"extractor": extractor.name, "n_ref": int(len(idx)), "seed": args.seed, "data": str(args.data),
                "per_class": np.bincount(y[idx]).tolist(), "time_s": round(time.time() - t0, 2), **provenance()},
               args.meta_out)
    log.info("wrote %s (%d images) in %.1f s", args.out, len(idx), time.time() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
