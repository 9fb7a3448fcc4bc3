"""The paper's datasets read through the real parsing code, on fixtures in torchvision's on-disk formats built from the
20 real CIFAR-10 and 20 real CIFAR-100 test images that the foolbox 3.3.4 wheel ships (setup.sh keeps it in .whl/)."""

import os

import numpy as np
import pytest
from PIL import Image

from dat.data import load_split, missing_files
from dat.rehearsal import FOOLBOX_WHEEL, cifar_rows, foolbox_images, pickle_file

WHEEL = FOOLBOX_WHEEL
# skipped on a machine where ./setup.sh has not run; never in CI, where setup.sh must have fetched the wheel
pytestmark = pytest.mark.skipif(not WHEEL.exists() and not os.environ.get("CI"), reason=f"{WHEEL} missing (run ./setup.sh)")
_pickle, _rows = pickle_file, cifar_rows


@pytest.fixture(scope="module")
def cifar10_root(tmp_path_factory):
    """cifar-10-batches-py: five training batches (4 images each) and the test batch (all 20)."""
    x, y = foolbox_images("cifar10")
    root = tmp_path_factory.mktemp("cifar10")
    folder = root / "cifar-10-batches-py"
    for i in range(5):
        part = slice(4 * i, 4 * i + 4)
        _pickle(folder / f"data_batch_{i + 1}", {"data": _rows(x[part]), "labels": y[part].tolist()})
    _pickle(folder / "test_batch", {"data": _rows(x), "labels": y.tolist()})
    _pickle(folder / "batches.meta", {"label_names": [str(k) for k in range(10)]})
    return root, x, y


def test_cifar10_batches_parse_to_the_real_images(cifar10_root):
    root, x, y = cifar10_root
    assert missing_files("cifar10", str(root), download=False) == []
    x_test, y_test = load_split("cifar10", str(root), "test")
    assert x_test.dtype == np.uint8 and x_test.shape == (20, 32, 32, 3)
    assert np.array_equal(x_test, x) and np.array_equal(y_test, y)
    x_train, y_train = load_split("cifar10", str(root), "train")
    assert np.array_equal(x_train, x) and np.array_equal(y_train, y)  # batches 1..5 in order
    assert x.std() > 20 and len(set(y.tolist())) > 5  # real, varied photographs


def test_cifar100_fine_labels(tmp_path):
    x, y = foolbox_images("cifar100")
    folder = tmp_path / "cifar-100-python"
    for split in ("train", "test"):
        _pickle(folder / split, {"data": _rows(x), "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist()})
    _pickle(folder / "meta", {"fine_label_names": [str(k) for k in range(100)]})
    x_test, y_test = load_split("cifar100", str(tmp_path), "test")
    assert np.array_equal(x_test, x) and np.array_equal(y_test, y) and y.max() >= 10


def test_svhn_mat_files(tmp_path):
    from scipy.io import savemat

    x, y = foolbox_images("cifar10")
    stored = np.where(y == 0, 10, y).reshape(-1, 1)  # SVHN stores the digit 0 as label 10
    for split in ("train", "test"):
        savemat(tmp_path / f"{split}_32x32.mat", {"X": x.transpose(1, 2, 3, 0), "y": stored.astype(np.uint8)})
    x_test, y_test = load_split("svhn", str(tmp_path), "test")
    assert np.array_equal(x_test, x) and np.array_equal(y_test, y) and y_test.min() >= 0 and y_test.max() <= 9


def test_missing_cifar_is_named(tmp_path):
    assert missing_files("cifar10", str(tmp_path), download=False) == [str(tmp_path / "cifar-10-batches-py")]
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_split("cifar10", str(tmp_path), "test")
    with pytest.raises(FileNotFoundError, match="test_32x32.mat"):
        load_split("svhn", str(tmp_path), "test")


def test_download_command_on_files_in_place_writes_its_marker(cifar10_root, tmp_path):
    """With the files already in place the downloader fetches nothing and records what loads (no network needed)."""
    from dat import prepare
    from dat.io import read_json

    root, x, _ = cifar10_root
    done = tmp_path / "downloads/cifar10.json"
    assert prepare.main(["download", "--source", "cifar10", "--root", str(root), "--done", str(done)]) == 0
    assert read_json(done)["images"] == {"train": len(x), "test": len(x)}


def test_dataset_ood_set_reads_another_datasets_test_split(cifar10_root):
    from dat.data import load_ood

    root, x, _ = cifar10_root
    ood = load_ood("cifar10", 8, channels=3, image_size=32, seed=0, root=str(root))
    assert ood.shape == (8, 32, 32, 3) and all(any(np.array_equal(img, ref) for ref in x) for img in ood)
    gray = load_ood("cifar10", 4, channels=1, image_size=28, seed=0, root=str(root))
    assert gray.shape == (4, 28, 28, 1)
    with pytest.raises(ValueError, match="ood_roots.cifar10"):
        load_ood("cifar10", 4, channels=3, image_size=32, seed=0)


def test_cifar_and_svhn_ood_sets_of_restricted_imagenet_are_upsampled_to_224(cifar10_root, tmp_path):
    """Paper Table 12: CIFAR-10 (and CIFAR-100, SVHN: the same code) test images as RestrictedImageNet OOD sets, each
    32 px image upsampled to the in-distribution 224 px with PIL bicubic, written by the workflow's command (the folder
    comes as --root: ood_roots is an evaluation key, not in dataset.json)."""
    from dat import prepare
    from dat.data import open_images
    from dat.io import write_json

    root, x, _ = cifar10_root
    cfg = tmp_path / "dataset.json"
    write_json({"name": "rimagenet", "source": "restricted_imagenet", "root": str(tmp_path / "imagenet"),
                "num_classes": 9, "channels": 3, "image_size": 224, "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225], "subset_seed": 0}, cfg)
    out = tmp_path / "ood_cifar10.npz"
    assert prepare.main(["ood", "--config", str(cfg), "--name", "cifar10", "--n", "6", "--root", str(root),
                         "--out", str(out)]) == 0
    ood = open_images(out, labels=False)[0]
    assert ood.shape == (6, 224, 224, 3) and ood.dtype == np.uint8
    upsampled = [np.asarray(Image.fromarray(img).resize((224, 224), Image.BICUBIC)) for img in x]
    assert all(any(np.array_equal(img, ref) for ref in upsampled) for img in ood)  # real test images, bicubic
    assert 0 <= ood.min() and ood.max() <= 255 and ood.std() > 20
