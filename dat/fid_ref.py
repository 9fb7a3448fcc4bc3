"""CLI: FID reference statistics of the training set (Karras et al. protocol: samples vs training images).

The images are the training split as stored: for ImageNet-scale sets the square view Resize(size) +
CenterCrop(size) of :class:`dat.data.ImageFiles`, the view of the BCE positives (``resize_center_crop``) and of the
authors' reference (their pytorch-fid fid_score2.py: CenterCrop(shorter side) + Resize(256)).

Picks a class-balanced random subset of ``--n-ref`` training images (0 = all), computes their Inception features
(``dat.inception``) batch by batch into running float64 sums (``dat.metrics.FeatureMoments``), and writes ``labels``
(int64 (N,)), ``mu`` and ``sigma`` to an NPZ, and the extractor's name with the counts to a JSON. The per-image
``features`` (float32 (N, 2048): the network's own float32 outputs, exactly; the counterfactual FID reads them per
class) are kept only for N <= ``--keep-features-max`` (default 524,288 images, 4 GiB: CIFAR's 50,000 and
RestrictedImageNet's ~257,000 training images, not ImageNet-1k's 1.28 million, whose reference is mu and sigma only).

Memory: the sums are two (2048, 2048) float64 arrays (64 MiB), a batch of images (200 at 299 px as float32: 215 MB),
the kept features (at most 4 GiB) and the PyTorch runtime; the training images themselves are read lazily for
ImageNet (a file index) and held as uint8 for the small datasets (CIFAR: 150 MB). Whole-split float64 features
(21 GB for ImageNet-1k) and np.cov's centred copy are never formed.

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
from dat.metrics import FeatureMoments

log = logging.getLogger("dat.fid_ref")
KEEP_FEATURES_MAX = 524_288  # 4 GiB of float32 (N, 2048) features


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
    p.add_argument("--keep-features-max", type=int, default=KEEP_FEATURES_MAX,
                   help=f"store per-image features (float32) only up to this many images (default {KEEP_FEATURES_MAX})")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = start(args)
    t0 = time.time()
    x, y = open_images(args.data)
    idx = balanced_subset(y, args.n_ref, args.seed)
    extractor = load_feature_extractor(args.extractor, str(device))
    log.info("computing features of %d training images with %s", len(idx), extractor.name)
    moments = FeatureMoments()
    kept = np.empty((len(idx), 2048), np.float32) if len(idx) <= args.keep_features_max else None
    filled = 0
    for batch in extractor.batches(take(x, idx), batch_size=args.batch_size):  # float64 (B, 2048)
        moments.update(batch)
        if kept is not None:
            kept[filled:filled + len(batch)] = batch
            if not np.array_equal(kept[filled:filled + len(batch)], batch):  # the network's outputs are float32
                raise RuntimeError(f"{extractor.name}: features not exact in float32; store them as float64")
        filled += len(batch)
    mu, sigma = moments.statistics()
    if kept is None:
        log.info("per-image features not stored: %d images > --keep-features-max %d", len(idx), args.keep_features_max)
    save_npz(args.out, labels=y[idx].astype(np.int64), mu=mu, sigma=sigma,
             **({} if kept is None else {"features": kept}))
    write_json({"extractor": extractor.name, "n_ref": int(len(idx)), "seed": args.seed, "data": str(args.data),
                "features_stored": kept is not None,
                "per_class": np.bincount(y[idx]).tolist(), "time_s": round(time.time() - t0, 2), **provenance()},
               args.meta_out)
    log.info("wrote %s (%d images) in %.1f s", args.out, len(idx), time.time() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
