"""CLI: prepare a dataset's training/test arrays and its OOD evaluation sets as NPZ files.

``splits`` reads (or, with ``download: true``, downloads) the dataset, keeps a class-balanced subset of
``n_train`` training images when set, checks shapes and labels against the config, and writes ``train.npz`` and
``test.npz`` (``x`` uint8 (N, H, W, C), ``y`` int64; for ImageNet and RestrictedImageNet a file index decoded on
access, see :func:`dat.data.open_images`). ``ood`` writes one OOD set (an evaluation set, or the
auxiliary chain starts of stage 2 with ``--n``/``--seed``), converted to the dataset's size and channels.

Examples::

    python -m dat.prepare splits --config results/data/fmnist/dataset.json --out-dir results/data/fmnist
    python -m dat.prepare ood --config results/data/fmnist/dataset.json --name mnist5k --out results/data/fmnist/ood_mnist5k.npz
    python -m dat.prepare download --source cifar10 --root resources/cifar10 --done results/downloads/cifar10.json
    python -m dat.prepare weights --url https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth \
        --sha256 6726825d --out resources/inception/weights-inception-2015-12-05-6726825d.pth \
        --done results/downloads/inception/weights-inception-2015-12-05-6726825d.pth.json

``weights`` fetches a weights file (the Inception Score network's) unless it is already at ``--out``, and checks its
sha256 either way (a full digest or the published prefix); a wrong file fails, naming both digests, and is never
used.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from dat.cli import command_parser, start
from dat.config import DatasetConfig
from dat.data import ImageFiles, balanced_subset, load_ood, load_split, save_images, take
from dat.io import provenance, write_json

log = logging.getLogger("dat.prepare")


def check_split(x, y: np.ndarray, ds: DatasetConfig, where: str) -> None:
    """Raise ValueError naming ``where`` when images or labels do not match the dataset config (for a file index,
    its first and last image are decoded, so an unreadable or mis-sized file fails here, not in training)."""
    want = (ds.image_size, ds.image_size, ds.channels)
    if len(y) == 0:
        raise ValueError(f"{where}: no images")
    if isinstance(x, ImageFiles):
        for i in (0, len(x) - 1):
            if x[i].shape != want:
                raise ValueError(f"{where}: {x.paths[i]} decodes to {x[i].shape}, expected {want}")
    elif x.dtype != np.uint8 or x.shape[1:] != want:
        raise ValueError(f"{where}: images are {x.dtype} {x.shape[1:]}, config datasets.{ds.name} expects uint8 {want}")
    if len(y) != len(x) or y.min() < 0 or y.max() >= ds.num_classes:
        raise ValueError(f"{where}: labels outside [0, {ds.num_classes}) or count mismatch ({len(y)} vs {len(x)})")


def parse_args(argv=None):
    p = command_parser("dat.prepare", __doc__)
    sub = p.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("splits", help="train.npz and test.npz")
    a.add_argument("--config", type=Path, required=True, help="dataset.json")
    a.add_argument("--out-dir", type=Path, required=True)
    b = sub.add_parser("ood", help="one OOD evaluation set")
    b.add_argument("--config", type=Path, required=True, help="dataset.json")
    b.add_argument("--name", required=True, help="OOD set name (see dat.data.load_ood: mnist5k, digits, photos, noise, "
                   "cifar10, cifar100, svhn, imagenet_minus_rimagenet, openimages, file:<path>)")
    b.add_argument("--n", type=int, default=None, help="images to keep (default: the dataset's n_ood)")
    b.add_argument("--seed", type=int, default=None, help="selection/crop seed (default: the dataset's subset_seed)")
    b.add_argument("--split", choices=("train", "test"), default="test",
                   help="split of a dataset OOD set: test (evaluation) or train (auxiliary chain starts)")
    b.add_argument("--root", default=None, help="folder of a dataset or folder OOD set (default: the config's "
                   "ood_roots.<name>; the workflow passes datasets.<name>.ood_roots.<set>)")
    b.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("download", help="fetch a dataset's files with torchvision's downloaders (checksums verified)")
    c.add_argument("--source", required=True, help="fashion_mnist, mnist, cifar10, cifar100 or svhn (ImageNet and Open "
                   "Images are downloaded by hand)")
    c.add_argument("--root", required=True, help="folder that receives the files")
    c.add_argument("--done", type=Path, required=True, help="marker file written when both splits load")
    d = sub.add_parser("weights", help="fetch a network's weights file (checksum verified)")
    d.add_argument("--url", default=None, help="where to download it from when --out is missing")
    d.add_argument("--sha256", required=True, help="expected sha256: a full digest or a prefix of >= 8 hex digits")
    d.add_argument("--out", type=Path, required=True, help="the weights file")
    d.add_argument("--done", type=Path, required=True, help="marker file written once the file checks out")
    return p.parse_args(argv)


def fetch_weights(url: str | None, sha256: str, out: Path) -> str:
    """Download ``url`` to ``out`` (through a temporary file, renamed only once its sha256 matches) unless ``out``
    exists; check the sha256 of ``out`` either way. Returns the full digest.

    Raises:
        FileNotFoundError: ``out`` is missing and no ``url`` is given.
        ValueError: the sha256 does not match (the downloaded file is deleted; a file in place is left for the user).
    """
    from dat.inception import verify_sha256

    if not out.exists():
        if not url:
            raise FileNotFoundError(f"{out} not found and no URL to download it from "
                                    "(evaluate.fid.inception_score.url)")
        from torch.hub import download_url_to_file

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.part")
        log.info("downloading %s -> %s", url, out)
        download_url_to_file(url, str(tmp), progress=False)
        try:
            verify_sha256(tmp, sha256)
        except ValueError:
            tmp.unlink()
            raise
        tmp.replace(out)
    return verify_sha256(out, sha256)


def main(argv=None) -> int:
    args = parse_args(argv)
    start(args, threads=False, device=False)
    t0 = time.time()
    if args.mode == "weights":
        digest = fetch_weights(args.url, args.sha256, args.out)
        write_json({"path": str(args.out), "url": args.url, "sha256": digest, "time_s": round(time.time() - t0, 2),
                    **provenance()}, args.done)
        log.info("%s: sha256 %s", args.out, digest)
        return 0
    if args.mode == "download":
        counts = {split: int(len(load_split(args.source, args.root, split, download=True)[1])) for split in ("train", "test")}
        write_json({"source": args.source, "root": args.root, "images": counts, "time_s": round(time.time() - t0, 2),
                    **provenance()}, args.done)
        log.info("%s in %s: %s", args.source, args.root, counts)
        return 0
    ds = DatasetConfig.read(args.config)
    if args.mode == "ood":
        n = args.n if args.n is not None else ds.n_ood
        seed = args.seed if args.seed is not None else ds.subset_seed
        root = args.root or ds.ood_roots.get(args.name)
        x = load_ood(args.name, n, ds.channels, ds.image_size, seed=seed, root=root, download=ds.download,
                     split=args.split)
        save_images(args.out, x)
        log.info("OOD set %s: %d images %s -> %s", args.name, len(x), x.shape[1:], args.out)
        return 0
    counts = {}
    for split in ("train", "test"):
        x, y = load_split(ds.source, ds.root, split, ds.download, image_size=ds.image_size,
                          crop_fraction=ds.crop_fraction, interpolation=ds.test_interpolation)
        check_split(x, y, ds, f"{ds.source} {split} split in {ds.root}")
        if split == "train" and ds.n_train:
            idx = balanced_subset(y, ds.n_train, ds.subset_seed)
            x, y = take(x, idx), y[idx]
        save_images(args.out_dir / f"{split}.npz", x, y)
        counts[split] = {"n": int(len(y)), "per_class": np.bincount(y, minlength=ds.num_classes).tolist()}
        log.info("%s: %d images, per class %s", split, len(y), counts[split]["per_class"])
    write_json({"dataset": ds.name, "source": ds.source, "root": ds.root, "splits": counts,
                "time_s": round(time.time() - t0, 2), **provenance()}, args.out_dir / "prepare.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
