"""CLI: FID reference statistics of the training set (Karras et al. protocol: samples vs training images).

Picks a class-balanced random subset of ``--n-ref`` training images (0 = all), computes their Inception features
(``dat.inception``) and writes ``features`` (float64 (N, 2048)), ``labels`` (int64 (N,)), ``mu`` and ``sigma`` to an
NPZ, and the extractor's name with the counts to a JSON. Per-class features serve the counterfactual FID.

Example::

    python -m dat.fid_ref --data results/data/fmnist/train.npz --n-ref 1000 --seed 0 --extractor auto \
        --out results/data/fmnist/fid_ref.npz --meta-out results/data/fmnist/fid_ref.json --threads 2
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from dat.data import open_images, take
from dat.inception import load_feature_extractor
from dat.io import add_device_argument, provenance, resolve_device, save_npz, set_threads, setup_logging, write_json
from dat.metrics import feature_statistics

log = logging.getLogger("dat.fid_ref")


def balanced_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced random subset of size ``n`` (all indices when n <= 0 or n >= len(y)).

    Each class gets n // K images, and the remainder goes to randomly chosen classes; a class with too few
    images gives all it has.
    """
    if n <= 0 or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    quota = np.full(len(classes), n // len(classes))
    quota[rng.permutation(len(classes))[: n % len(classes)]] += 1
    picked = [rng.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dat.fid_ref", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="train.npz (x uint8 NHWC, y int64)")
    p.add_argument("--n-ref", type=int, default=0, help="reference images, class-balanced (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extractor", default="auto", choices=["auto", "shipped", "cleanfid"])
    p.add_argument("--out", type=Path, required=True, help="fid_ref.npz to write")
    p.add_argument("--meta-out", type=Path, required=True, help="fid_ref.json to write")
    p.add_argument("--threads", type=int, default=None)
    add_device_argument(p)
    p.add_argument("--batch-size", type=int, default=None, help="Inception batch (default: 10 on CPU, 200 on GPU)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    t0 = time.time()
    x, y = open_images(args.data)
    idx = balanced_subset(y, args.n_ref, args.seed)
    extractor = load_feature_extractor(args.extractor, str(resolve_device(args.device)))
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
