"""Fixture data and published-checkpoint files for the rehearsal of the paper configuration (profiles/rehearsal) and
for the tests: real images that ship inside registry packages, written in the on-disk formats the paper's datasets
and checkpoints come in, so that the real parsing, label-mapping, import and evaluation code runs on them.

- CIFAR-10 / CIFAR-100 (torchvision's ``cifar-10-batches-py`` / ``cifar-100-python`` pickles) and SVHN
  (``{train,test}_32x32.mat``) from the 20 real CIFAR-10 and 20 real CIFAR-100 test images in the foolbox 3.3.4
  wheel (setup.sh keeps it in ``.whl/``); training splits hold each image and its mirror image.
- 80M Tiny Images (``tiny_images.bin`` and the authors' CIFAR exclusion lists): the real CIFAR images above and
  32 px photo crops, the CIFAR images listed for exclusion, so that a CIFAR image in a chain start is caught.
- ImageNet (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``, 1000 class folders) and an Open Images-like folder from
  random crops of the scikit-learn / scikit-image sample photographs, saved as JPEG, in a few classes inside and
  outside RestrictedImageNet.
- Checkpoints in the published layouts that ``init_from`` reads (:func:`dat.checkpoint.published_weights`): the
  Robustness library (Salman et al. 2020 ImageNet models), RobustBench/TRADES WideResNets (RATIO's official
  checkpoint) and plain state dicts (ConvNeXt + ConvStem of Singh et al. 2023), holding randomly initialised weights
  of the configured architecture.

Nothing here is a model of the data: labels of the CIFAR images are their real labels (so CIFAR-100 has the 20 or so
classes those images belong to), ImageNet labels are the class folders the crops are written to.

CLI: ``python -m dat.rehearsal --spec spec.json`` builds what a spec lists (see :func:`build`).
"""

from __future__ import annotations

import io
import pickle
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from dat import cli
from dat.data import _photos
from dat.fixture_markers import checkpoint_complete, checkpoint_marker, data_complete, data_marker
from dat.io import read_json, write_json
from dat.registry import TINY_IMAGES_EXCLUSIONS, TINY_IMAGES_FILE

FOOLBOX_WHEEL = Path(__file__).resolve().parents[1] / ".whl/foolbox-3.3.4-py3-none-any.whl"
# ImageNet class index -> images per split: RestrictedImageNet super-classes dog (151, 152), cat (281), frog (30),
# turtle (33), bird (80), primate (365), fish (389), crab (118) and insect (319); 0, 500 and 999 lie outside it
IMAGENET_CLASSES = {151: 3, 152: 2, 281: 2, 30: 2, 33: 1, 80: 1, 365: 1, 389: 1, 118: 1, 319: 2, 0: 2, 500: 3, 999: 2}


def foolbox_images(prefix: str, wheel: str | Path = FOOLBOX_WHEEL) -> tuple[np.ndarray, np.ndarray]:
    """The wheel's ``foolbox/data/{prefix}_{index}_{label}.png`` files.

    Args:
        prefix: ``cifar10`` or ``cifar100``.
        wheel: the foolbox 3.3.4 wheel (a zip; never installed).

    Returns:
        uint8 (20, 32, 32, 3) images in file-index order and their int64 (20,) labels.

    Raises:
        FileNotFoundError: the wheel is missing (run ./setup.sh).
    """
    if not Path(wheel).exists():
        raise FileNotFoundError(f"{wheel} not found: ./setup.sh downloads it (pip download --no-deps foolbox==3.3.4)")
    pattern = re.compile(rf"foolbox/data/{prefix}_(\d+)_(\d+)\.png$")
    with zipfile.ZipFile(wheel) as zf:
        found = sorted((int(m[1]), int(m[2]), name) for name in zf.namelist() if (m := pattern.match(name)))
        x = np.stack([np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("RGB")) for _, _, name in found])
    return x, np.array([label for _, label, _ in found], dtype=np.int64)


def pickle_file(path: Path, entry: dict) -> None:
    """Pickle ``entry`` to ``path`` (protocol of the running Python), creating its folder: CIFAR's file format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(entry, fh)


def cifar_rows(x: np.ndarray) -> np.ndarray:
    """uint8 (N, 32, 32, 3) -> (N, 3072): CIFAR's pickled row layout (channel-major)."""
    return x.transpose(0, 3, 1, 2).reshape(len(x), -1)


def _with_mirrors(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([x, x[:, :, ::-1]]), np.concatenate([y, y])


def write_cifar(root: str | Path, source: str, wheel: str | Path = FOOLBOX_WHEEL) -> None:
    """torchvision's CIFAR-10 (five training batches, test batch, meta) or CIFAR-100 (train, test, meta) files."""
    x, y = foolbox_images(source, wheel)
    x_train, y_train = _with_mirrors(x, y)
    if source == "cifar10":
        folder = Path(root) / "cifar-10-batches-py"
        for i, part in enumerate(np.array_split(np.arange(len(x_train)), 5)):
            pickle_file(folder / f"data_batch_{i + 1}", {"data": cifar_rows(x_train[part]), "labels": y_train[part].tolist()})
        pickle_file(folder / "test_batch", {"data": cifar_rows(x), "labels": y.tolist()})
        pickle_file(folder / "batches.meta", {"label_names": [str(k) for k in range(10)]})
    elif source == "cifar100":
        folder = Path(root) / "cifar-100-python"
        for split, (xs, ys) in (("train", (x_train, y_train)), ("test", (x, y))):
            pickle_file(folder / split, {"data": cifar_rows(xs), "fine_labels": ys.tolist(), "coarse_labels": (ys // 5).tolist()})
        pickle_file(folder / "meta", {"fine_label_names": [str(k) for k in range(100)]})
    else:
        raise ValueError(f"write_cifar: source {source!r} is not cifar10 or cifar100")


def write_svhn(root: str | Path, wheel: str | Path = FOOLBOX_WHEEL) -> None:
    """SVHN's ``{train,test}_32x32.mat`` (X (32, 32, 3, N), y (N, 1) with the digit 0 stored as 10), holding the
    real CIFAR-10 images under their labels: the loader's format, not SVHN's content."""
    from scipy.io import savemat

    x, y = foolbox_images("cifar10", wheel)
    Path(root).mkdir(parents=True, exist_ok=True)
    for split, (xs, ys) in (("train", _with_mirrors(x, y)), ("test", (x, y))):
        stored = np.where(ys == 0, 10, ys).reshape(-1, 1).astype(np.uint8)
        savemat(Path(root) / f"{split}_32x32.mat", {"X": xs.transpose(1, 2, 3, 0), "y": stored})


def photo_crops(n: int, seed: int) -> list[np.ndarray]:
    """``n`` real RGB uint8 crops (60-139 px per side, assorted aspect ratios, like ImageNet JPEGs) of the sample
    photographs of scikit-learn and scikit-image."""
    photos = [p for p in _photos() if p.ndim == 3 and p.shape[2] == 3]
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(n):
        img = photos[rng.integers(len(photos))]
        h, w = int(rng.integers(60, 140)), int(rng.integers(60, 140))
        top, left = int(rng.integers(0, img.shape[0] - h)), int(rng.integers(0, img.shape[1] - w))
        crops.append(np.ascontiguousarray(img[top:top + h, left:left + w]))
    return crops


def write_imagenet(root: str | Path, classes: dict[int, int] | None = None) -> None:
    """torchvision's ImageNet folder layout: ``train/`` and ``val/`` with 1000 ``n%08d`` class folders, ``classes``
    (class index -> JPEGs per split; default :data:`IMAGENET_CLASSES`) holding photo crops."""
    classes = IMAGENET_CLASSES if classes is None else classes
    wnids = [f"n{i:08d}" for i in range(1000)]
    for split, seed in (("train", 0), ("val", 1)):
        for wnid in wnids:
            (Path(root) / split / wnid).mkdir(parents=True, exist_ok=True)
        for k, (cls, count) in enumerate(sorted(classes.items())):
            for j, img in enumerate(photo_crops(count, seed * 1000 + k)):
                Image.fromarray(img).save(Path(root) / split / wnids[cls] / f"{wnids[cls]}_{j}.JPEG", quality=90)


def write_image_folder(root: str | Path, n: int = 12, seed: int = 7) -> None:
    """A flat folder of ``n`` JPEG photo crops (the layout of the Open Images chain starts)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    for j, img in enumerate(photo_crops(n, seed)):
        Image.fromarray(img).save(Path(root) / f"{j:06d}.jpg", quality=90)


def tiny_images_bytes(x: np.ndarray) -> bytes:
    """uint8 (N, 32, 32, 3) -> 80M Tiny Images' file layout: 3072 bytes per image, byte (i + 32 j + 1024 c) pixel
    (row i, column j, channel c) (the inverse of :func:`dat.data.read_image_file`)."""
    return np.ascontiguousarray(x.transpose(0, 3, 2, 1)).tobytes()


def write_tiny_images(root: str | Path, wheel: str | Path = FOOLBOX_WHEEL, n_photos: int = 88, seed: int = 5) -> None:
    """``tiny_images.bin`` holding the 40 real CIFAR-10/100 images of the wheel and ``n_photos`` 32 px photo crops in a
    random order, and the exclusion lists of :data:`dat.registry.TINY_IMAGES_EXCLUSIONS` naming every CIFAR image
    (spread over the lists, a few in two of them, each in its list's numbering: 80mn_cifar_idxs.txt from 1)."""
    cifar = np.concatenate([foolbox_images("cifar10", wheel)[0], foolbox_images("cifar100", wheel)[0]])
    photos = np.stack([np.asarray(Image.fromarray(p).resize((32, 32), Image.BICUBIC)) for p in photo_crops(n_photos, seed)])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(cifar) + n_photos)
    images = np.concatenate([cifar, photos])[order]
    cifar_at = np.sort(np.flatnonzero(order < len(cifar)))  # file positions of the CIFAR images
    Path(root).mkdir(parents=True, exist_ok=True)
    (Path(root) / TINY_IMAGES_FILE).write_bytes(tiny_images_bytes(images))
    lists = np.array_split(cifar_at, len(TINY_IMAGES_EXCLUSIONS))
    for k, (name, first) in enumerate(TINY_IMAGES_EXCLUSIONS.items()):
        listed = np.concatenate([lists[k], cifar_at[k:k + 1]])  # the k-th CIFAR image a second time
        (Path(root) / name).write_text("".join(f"{int(i) + first}\n" for i in listed))


def robustness_checkpoint(backbone_state: dict) -> dict:
    """A Robustness-library checkpoint (Engstrom et al. 2019): the network under ``module.model.``, its attacker's
    copy under ``module.attacker.model.``, the input normalizer, and training metadata."""
    model = {f"module.model.{k}": v for k, v in backbone_state.items()}
    model |= {f"module.attacker.model.{k}": v for k, v in backbone_state.items()}
    model |= {"module.normalizer.new_mean": torch.zeros(3, 1, 1), "module.normalizer.new_std": torch.ones(3, 1, 1)}
    return {"model": model, "epoch": 90}


def robustbench_wideresnet_checkpoint(wrn_state: dict) -> dict:
    """A RobustBench/TRADES WideResNet state dict (``conv1``, ``block{1,2,3}.layer.{i}.*`` with ``convShortcut``,
    ``bn1``, ``fc``, and the unused ``sub_block1``) from :class:`dat.models.WideResNet` keys: the inverse of the
    mapping in :func:`dat.checkpoint.published_weights`."""
    n_blocks = len({k.split(".")[1] for k in wrn_state if k.startswith("blocks.")})
    per_group = n_blocks // 3
    top = {"stem": "conv1", "bn": "bn1", "fc": "fc"}
    out = {}
    for key, value in wrn_state.items():
        head, _, rest = key.partition(".")
        if head == "blocks":
            index, _, leaf = rest.partition(".")
            group, i = divmod(int(index), per_group)
            out[f"block{group + 1}.layer.{i}.{leaf.replace('shortcut', 'convShortcut')}"] = value
            if group == 0:
                out[f"sub_block1.layer.{i}.{leaf.replace('shortcut', 'convShortcut')}"] = value.clone()
        elif head in top:
            out[f"{top[head]}.{rest}"] = value
    return out


def published_checkpoint(model: nn.Module, fmt: str) -> dict:
    """``model`` (built by :func:`dat.models.build_model`) saved in a published layout ``fmt``: ``robustness``,
    ``robustbench``, ``state_dict`` (the backbone's own keys under ``state_dict``, as timm/torch hub files are) or
    ``revisiting_at`` (a ConvNeXt + ConvStem as Singh et al.'s training script saves it, normalisation layer included).

    Raises:
        ValueError: an unknown format, or a model that the format cannot hold.
    """
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if fmt == "robustness" and backbone:
        return robustness_checkpoint(backbone)
    if fmt == "state_dict" and backbone:
        return {"state_dict": backbone}
    if fmt == "robustbench" and "stem.weight" in state:
        return robustbench_wideresnet_checkpoint(state)
    if fmt == "revisiting_at" and "backbone.stem.stem.0.weight" in state:  # Singh et al. 2023, with its normaliser
        return {"module.base_model.normalize.mean": state["normalize.mean"],
                "module.base_model.normalize.std": state["normalize.std"],
                **{f"module.base_model.model.{k}": v for k, v in backbone.items()}}
    raise ValueError(f"published_checkpoint: format {fmt!r} cannot hold a {type(model).__name__}")


WRITERS = {
    "cifar10": lambda root, wheel: write_cifar(root, "cifar10", wheel),
    "cifar100": lambda root, wheel: write_cifar(root, "cifar100", wheel),
    "svhn": lambda root, wheel: write_svhn(root, wheel),
    "imagenet": lambda root, wheel: write_imagenet(root),
    "openimages": lambda root, wheel: write_image_folder(root),
    "tiny_images": lambda root, wheel: write_tiny_images(root, wheel),
}


def build(spec: dict) -> dict:
    """Write every fixture a spec lists, skipping those whose marker says they are complete.

    Args:
        spec: ``{"wheel": path, "data": {root: kind}, "checkpoints": [{"path", "format", "arch", "kwargs",
            "num_classes", "channels", "mean", "std", "seed"}]}`` with kind one of :data:`WRITERS`.

    Returns:
        {path: "written" | "present"} for every data root and checkpoint.

    Raises:
        FileExistsError: a data root holds files, or a checkpoint path a file, without a fixture marker (a real
            dataset or checkpoint is never written over).
    """
    from dat.models import build_model

    done = {}
    for root, kind in spec.get("data", {}).items():
        marker = data_marker(root)
        if data_complete(root, kind):
            done[root] = "present"
            continue
        if Path(root).is_dir() and any(Path(root).iterdir()):
            raise FileExistsError(f"{root} holds files that are not a rehearsal fixture (no {marker.name}); "
                                  f"fixtures are written only into new or empty folders")
        WRITERS[kind](root, spec.get("wheel", FOOLBOX_WHEEL))
        write_json({"kind": kind}, marker)
        done[root] = "written"
    for entry in spec.get("checkpoints", []):
        path = Path(entry["path"])
        marker = checkpoint_marker(path)  # what the file holds: rebuilt when that changes
        if checkpoint_complete(entry):
            done[str(path)] = "present"
            continue
        if path.exists() and not marker.exists():
            raise FileExistsError(f"{path} exists and is not a rehearsal fixture (no {marker.name}); not overwritten")
        torch.manual_seed(entry.get("seed", 0))
        model = build_model(entry["arch"], num_classes=entry["num_classes"], in_channels=entry["channels"],
                            mean=entry["mean"], std=entry["std"], **entry.get("kwargs", {}))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(published_checkpoint(model, entry["format"]), path.with_suffix(".part"))
        path.with_suffix(".part").replace(path)
        write_json(entry, marker)
        done[str(path)] = "written"
    return done


def main(argv: list[str] | None = None) -> int:
    parser = cli.command_parser("dat.rehearsal", __doc__)
    parser.add_argument("--spec", type=Path, required=True, help="JSON spec of the fixtures (see dat.rehearsal.build)")
    args = parser.parse_args(argv)
    cli.start(args, threads=False, device=False)
    for path, state in build(read_json(args.spec)).items():
        print(f"{state:8s} {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
