"""The names a config may use, declared once, and where each data source keeps its files.

Every ``enum`` of ``dat/schemas/config.schema.yaml`` is one of the tuples below (tests/test_config.py checks
that they are equal, so a name added in one place and not the other fails a test); the library modules take their
name lists from here (``dat.data`` its sources, OOD sets and augmentations, ``dat.checkpoint`` its checkpoint
formats, ``dat.config`` the choices it checks again on a hand-written JSON; ``dat.models.MODELS`` is keyed by
``ARCHITECTURES``). The module imports nothing but the standard library, so that the workflow builds its DAG (and
checks at parse time which data are missing, :func:`missing_message`) without importing torch.
"""

from __future__ import annotations

from pathlib import Path

# -- datasets --------------------------------------------------------------------------------------------------
IDX_SOURCES = ("fashion_mnist", "mnist")  # IDX files (torchvision's downloaders, or the Debian package)
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
IMAGENET_SOURCES = ("imagenet", "restricted_imagenet")  # an ImageNet folder, downloaded by hand
SOURCES = IDX_SOURCES + tuple(CIFAR_FOLDERS) + ("svhn",) + IMAGENET_SOURCES  # datasets.<name>.source
CHANNELS = (1, 3)
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
IMAGENET_ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz")

# -- OOD sets (evaluation sets, and the auxiliary images of DAT's chain starts and RATIO's out-batches) -----------
OOD_SETS = ("mnist5k", "digits", "photos", "noise")  # installed without internet
DATASET_OOD_SETS = ("cifar10", "cifar100", "svhn")  # the test split of another dataset, from its own root
# sets read from a user's folder (datasets.<name>.ood_roots.<set>): ImageNet validation images of the classes outside
# RestrictedImageNet (root: the ImageNet folder), any folder of images (Open Images for 256 px), and 80M Tiny Images
# (Torralba et al. 2008; root: a folder holding tiny_images.bin and the CIFAR exclusion lists below)
FOLDER_OOD_SETS = ("imagenet_minus_rimagenet", "openimages", "tiny_images")
ALL_OOD_SETS = OOD_SETS + DATASET_OOD_SETS + FOLDER_OOD_SETS  # datasets.<name>.ood_sets, bce/ratio.ood_set
ROOTED_OOD_SETS = DATASET_OOD_SETS + FOLDER_OOD_SETS  # the keys of datasets.<name>.ood_roots
FILE_OOD_PREFIXES = ("npz", "file")  # bce/ratio.ood_set <prefix>:<path>, a user's image file

# 80M Tiny Images: the file (79,302,017 images of 3072 bytes, 243 GB) and the index lists of its images that are CIFAR
# images, with the number the first image has in each list. The paper's CIFAR runs exclude all of them, as the
# authors' loader does (their InNOutRobustness/utils/datasets/tinyImages.py with exclude_cifar and exclude_cifar10_1:
# Hendrycks et al.'s 80mn_cifar_idxs.txt counts from 1, the other lists of InNOutRobustness/TinyImagesExclusionIdcs/
# from 0)
TINY_IMAGES_FILE = "tiny_images.bin"
TINY_IMAGES_EXCLUSIONS = {"80mn_cifar_idxs.txt": 1, "80mn_cifar10_test_idxs.txt": 0, "80mn_cifar100_test_idxs.txt": 0,
                          "80mn_cifar10_train_idxs.txt": 0, "80mn_cifar100_train_idxs.txt": 0,
                          "80mn_cifar101_idxs.txt": 0}

MANUAL_DOWNLOADS = {
    "imagenet": "ImageNet (ILSVRC2012) is downloaded by hand from https://image-net.org/download-images: put "
                "ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz in {root} (they are "
                "unpacked there on first use) or the unpacked train/<wnid>/ and val/<wnid>/ folders",
    "openimages": "Open Images is downloaded by hand (https://storage.googleapis.com/openimages/web/download.html): put "
                  "any number of its images (jpg/png, sub-folders allowed) in {root}",
    "tiny_images": "80M Tiny Images is withdrawn by its authors and has no download: put your copy of "
                   f"{TINY_IMAGES_FILE} in {{root}}, with the CIFAR exclusion lists {', '.join(TINY_IMAGES_EXCLUSIONS)} "
                   "(github xuwangyin/DAT, InNOutRobustness/TinyImagesExclusionIdcs/)",
}
MANUAL_DOWNLOADS["restricted_imagenet"] = MANUAL_DOWNLOADS["imagenet"]
MANUAL_DOWNLOADS["imagenet_minus_rimagenet"] = MANUAL_DOWNLOADS["imagenet"]

# -- training --------------------------------------------------------------------------------------------------
AUGMENTATIONS = ("crop", "flip", "autoaugment", "cutout", "random_resized_crop", "resize_center_crop", "color_jitter",
                 "lighting", "none")  # train.augment.at / .bce, built by dat.data.build_transform
# train.augment.fill: what crop padding, AutoAugment's geometric ops and Cutout fill with: zero (black), or the
# dataset's mean colour (RATIO's CIFAR augmentation, the authors' InNOutRobustness cifar_augmentation.py)
FILLS = ("zero", "mean")
INTERPOLATIONS = ("bilinear", "bicubic")  # dataset.test_interpolation: the resize of image-file test views
NORMS = ("L2", "Linf")  # train.attack.norm, train.ebjdat.attack_norm, datasets.<name>.threat_model.norm
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant", "multistep")
CHAIN_STARTS = ("noise", "ood")  # train.bce.init, train.ratio.init
PRECISIONS = ("fp32", "bf16")
DIVERGENCE_ACTIONS = ("fail", "keep_last")  # train.on_divergence
ARCHITECTURES = ("resnet_small", "wide_resnet", "torchvision_resnet", "timm_convnext")  # models.<name>.arch
WIDE_RESNET_NORMS = ("batch", "none")  # models.<name>.kwargs.norm of arch wide_resnet (none: JEM's WRN-28-10)
INIT_FORMATS = ("dat", "robustness", "state_dict", "robustbench", "revisiting_at")  # runs.<name>.init_from.format

# -- evaluation and report -------------------------------------------------------------------------------------
SAMPLING_STARTS = ("noise", "train", "ood")  # sampling.init
WEIGHTS = ("ema", "raw")  # evaluate.weights
CHECKPOINTS = ("final", "best_fid")  # evaluate.checkpoint (dat.select_checkpoint)
AUTOATTACK_VERSIONS = ("standard", "plus", "rand")
FID_EXTRACTORS = ("auto", "shipped", "cleanfid")
TABLE_KINDS = ("main", "reproductions", "sampling", "conditional", "ood", "calibration", "counterfactual")

# -- jobs ------------------------------------------------------------------------------------------------------
# cpu_kernels -> the shell prefix of every job: native (the fastest kernels the CPU has), or ATen, oneDNN and MKL
# pinned to their AVX2 code paths (the same numbers on every x86-64 machine with AVX2)
CPU_KERNEL_ENV = {
    "native": "",
    "avx2": "export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2; ",
}


# -- data presence (stat only: checked while the workflow builds its DAG) ---------------------------------------
def idx_paths(root: str, split: str) -> list[Path]:
    """The IDX files of ``split`` directly in ``root``."""
    return [Path(root) / name for name in IDX_FILES[split]]


def find_idx(root: str, split: str, source: str) -> list[Path]:
    """The IDX files in ``root`` or in torchvision's ``root/<Class>/raw`` layout."""
    direct = idx_paths(root, split)
    if all(p.exists() for p in direct):
        return direct
    folder = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}[source]
    return [Path(root) / folder / "raw" / p.name for p in direct]


def missing_files(source: str, root: str, download: bool) -> list[str]:
    """Files that ``source`` needs under ``root`` and that are absent; empty when ``download`` (cheap, no I/O beyond stat).

    Raises:
        ValueError: an unknown source.
    """
    if download:
        return []
    if source in IDX_SOURCES:
        out = []
        for split in IDX_FILES:
            found = find_idx(root, split, source)
            out += [str(p) for p, q in zip(idx_paths(root, split), found) if not p.exists() and not q.exists()]
        return out
    if source in CIFAR_FOLDERS:
        folder = Path(root) / CIFAR_FOLDERS[source]
        return [] if folder.is_dir() else [str(folder)]
    if source == "svhn":
        return [str(Path(root) / f) for f in ("train_32x32.mat", "test_32x32.mat") if not (Path(root) / f).exists()]
    if source in IMAGENET_SOURCES or source == "imagenet_minus_rimagenet":
        folders = [Path(root) / "train", Path(root) / "val"]
        if all(f.is_dir() for f in folders) or all((Path(root) / a).exists() for a in IMAGENET_ARCHIVES):
            return []
        return [str(f) for f in folders if not f.is_dir()]
    if source == "tiny_images":
        return [str(Path(root) / name) for name in (TINY_IMAGES_FILE, *TINY_IMAGES_EXCLUSIONS)
                if not (Path(root) / name).is_file()]
    if source == "openimages":
        return [] if Path(root).is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in Path(root).rglob("*")) \
            else [f"{root}/*.jpg"]
    raise ValueError(f"unknown dataset source {source!r}: {', '.join(SOURCES)}")


def switch_file(source: str, root: str) -> Path:
    """The file or folder whose presence turns an ``if_present`` block on (:meth:`dat.resolve.Resolved.present`):
    ``tiny_images.bin`` for 80M Tiny Images, the folder itself for any other set read from a folder."""
    return Path(root) / TINY_IMAGES_FILE if source == "tiny_images" else Path(root)


def missing_message(source: str, root: str, download: bool) -> str | None:
    """What to download and where, when ``source``'s files are missing from ``root``; None when they are in place.
    Sources without a downloader (ImageNet, Open Images) are missing whatever ``download`` says."""
    manual = source in MANUAL_DOWNLOADS
    gone = missing_files(source, root, download and not manual)
    if not gone:
        return None
    if manual:
        return f"{source}: {', '.join(gone)} not found. " + MANUAL_DOWNLOADS[source].format(root=root)
    hint = " (apt-get install dataset-fashion-mnist)" if source == "fashion_mnist" else ""
    return f"{source}: missing {', '.join(gone)}{hint}; put the files in {root} or set download: true"
