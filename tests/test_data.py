"""Data: the Fashion-MNIST parser on the Debian package's real files, OOD sets, augmentation, batch order, prepare CLI."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from dat import prepare
from dat.data import ArrayDataset, build_transform, infinite_batches, load_ood, load_split, missing_files
from dat.io import write_json

FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not (FMNIST / "train-images-idx3-ubyte.gz").exists(),
                                  reason="Debian package dataset-fashion-mnist not installed (run ./setup.sh)")


@needs_fmnist
def test_fashion_mnist_parser_reads_the_real_files():
    x, y = load_split("fashion_mnist", str(FMNIST), "test")
    assert x.dtype == np.uint8 and x.shape == (10_000, 28, 28, 1)
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [1000] * 10  # the test set is balanced
    # independent parse of the first label byte and image row
    with gzip.open(FMNIST / "t10k-labels-idx1-ubyte.gz") as fh:
        assert fh.read()[8] == y[0]
    with gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz") as fh:
        raw = fh.read()
    assert np.array_equal(np.frombuffer(raw, np.uint8, count=28 * 28, offset=16).reshape(28, 28), x[0, :, :, 0])


@needs_fmnist
def test_fashion_mnist_in_torchvision_layout(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
                 "train-labels-idx1-ubyte.gz"):
        (raw / name).symlink_to(FMNIST / name)
    assert missing_files("fashion_mnist", str(tmp_path), download=False) == []
    assert load_split("fashion_mnist", str(tmp_path), "test")[0].shape == (10_000, 28, 28, 1)


def test_missing_files_are_named(tmp_path):
    missing = missing_files("fashion_mnist", str(tmp_path), download=False)
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in missing and len(missing) == 4
    assert missing_files("fashion_mnist", str(tmp_path), download=True) == []
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        load_split("fashion_mnist", str(tmp_path), "train")
    with pytest.raises(ValueError, match="unknown dataset source"):
        missing_files("imagenet21k", str(tmp_path), download=False)


@pytest.mark.parametrize("name", ["mnist5k", "digits", "photos", "noise"])
def test_ood_sets_come_in_the_in_distribution_format(name):
    x = load_ood(name, 16, channels=1, image_size=28, seed=0)
    assert x.dtype == np.uint8 and x.shape == (16, 28, 28, 1)
    assert x.std() > 5  # real content (or noise), not a constant image
    assert np.array_equal(x, load_ood(name, 16, channels=1, image_size=28, seed=0))  # deterministic
    rgb = load_ood(name, 4, channels=3, image_size=32, seed=1)
    assert rgb.shape == (4, 32, 32, 3)


def test_ood_unknown_name_and_user_file(tmp_path):
    with pytest.raises(ValueError, match="unknown OOD set 'svhnn'"):
        load_ood("svhnn", 4, 1, 28, 0)
    user = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "mine.npz", x=user)
    out = load_ood(f"npz:{tmp_path / 'mine.npz'}", 10, channels=3, image_size=32, seed=0)
    assert out.shape == (5, 32, 32, 3)  # all it has, no repeats


@pytest.mark.parametrize("names", [["crop", "flip"], ["crop", "flip", "autoaugment", "cutout"], []])
def test_augmentations_keep_shape_and_range(names):
    transform = build_transform(names, 28, crop_padding=4, cutout_size=8)
    img = torch.rand(1, 28, 28)
    out = transform(img)
    assert out.shape == (1, 28, 28) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


def test_mild_imagenet_bce_augmentation_only_flips():
    torch.manual_seed(0)
    image = torch.rand(3, 64, 64)
    centre = build_transform(["resize_center_crop"], 64)(image)
    transform = build_transform(["resize_center_crop", "flip"], 64)
    outs = [transform(image) for _ in range(40)]
    flipped = [torch.equal(o, centre.flip(-1)) for o in outs]
    assert all(f or torch.equal(o, centre) for f, o in zip(flipped, outs))  # the centre view or its mirror, nothing else
    assert 0 < sum(flipped) < len(outs)


def test_imagenet_scale_stage2_runs_use_the_mild_bce_augmentation():
    """Issue 12: the BCE branch of RestrictedImageNet and ImageNet 256 stage 2 (paper Table 6, the authors' code) is
    resize + centre crop + flip, not RandomResizedCrop(0.08-1)."""
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    stage2 = {run["method"] for run in config["runs"].values()
              if config["datasets"][run["dataset"]]["source"] in ("imagenet", "restricted_imagenet")
              and "bce" in config["methods"][run["method"]]}
    assert stage2 == {"dat_rimagenet", "dat_imagenet", "dat_imagenet_wrn", "dat_imagenet_convnext"}
    for method in stage2:
        assert config["methods"][method]["augment"]["bce"] == ["resize_center_crop", "flip"], method


def test_batches_resume_at_the_same_position():
    x = np.random.default_rng(0).integers(0, 256, (50, 4, 4, 1), dtype=np.uint8)
    ds = ArrayDataset(x, np.arange(50) % 10)
    full = infinite_batches(ds, 8, seed=3)
    seen = [next(full)[1] for _ in range(14)]  # 6 batches per epoch: crosses two epoch boundaries
    resumed = infinite_batches(ds, 8, seed=3, start_batch=9)
    for expected in seen[9:]:
        assert torch.equal(next(resumed)[1], expected)
    epoch0 = torch.cat(seen[:6])
    assert len(set(epoch0.tolist())) == 10  # every class appears within an epoch of 48 of 50 images
    with pytest.raises(ValueError, match="exceeds"):
        next(infinite_batches(ds, 64, seed=0))


@needs_fmnist
def test_prepare_cli_writes_a_balanced_subset_and_ood_set(tmp_path):
    ds = {"name": "fmnist", "source": "fashion_mnist", "root": str(FMNIST), "download": False, "num_classes": 10,
          "channels": 1, "image_size": 28, "mean": [0.286], "std": [0.353], "n_train": 200, "subset_seed": 0,
          "n_ood": 12}
    write_json(ds, tmp_path / "dataset.json")
    assert prepare.main(["splits", "--config", str(tmp_path / "dataset.json"), "--out-dir", str(tmp_path)]) == 0
    with np.load(tmp_path / "train.npz") as f:
        assert f["x"].shape == (200, 28, 28, 1) and np.bincount(f["y"]).tolist() == [20] * 10
    with np.load(tmp_path / "test.npz") as f:
        assert len(f["y"]) == 10_000
    assert prepare.main(["ood", "--config", str(tmp_path / "dataset.json"), "--name", "digits",
                         "--out", str(tmp_path / "ood.npz")]) == 0
    with np.load(tmp_path / "ood.npz") as f:
        assert f["x"].shape == (12, 28, 28, 1)
    bad = {**ds, "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3}
    write_json(bad, tmp_path / "bad.json")
    with pytest.raises(ValueError, match="expects uint8"):
        prepare.main(["splits", "--config", str(tmp_path / "bad.json"), "--out-dir", str(tmp_path / "bad")])


def test_mean_colour_fills_of_crop_autoaugment_and_cutout():
    """RATIO's CIFAR augmentation (augment.fill: mean): crop padding and Cutout take the dataset's mean colour,
    AutoAugment's uncovered pixels int(255 * mean); the default fill stays zero."""
    mean = (0.4914, 0.4822, 0.4465)
    white = torch.ones(3, 32, 32)
    torch.manual_seed(3)
    for _ in range(5):
        out = build_transform(["crop"], 32, crop_padding=4, fill=mean)(white)
        border = out[:, (out != 1).any(0)]  # the padded pixels that came into view
        if border.numel():
            assert torch.allclose(border, torch.tensor(mean).view(3, 1).expand_as(border))
        zero = build_transform(["crop"], 32, crop_padding=4)(white)
        assert set(zero.unique().tolist()) <= {0.0, 1.0}
    cut = build_transform(["cutout"], 32, cutout_size=16, fill=mean)(white)
    hole = (cut != 1).any(0)
    assert hole.sum() >= 64 and torch.allclose(cut[:, hole], torch.tensor(mean).view(3, 1).expand(3, int(hole.sum())))
    from torchvision.transforms import v2

    mean_int = [int(255 * v) for v in mean]  # RATIO's mean_int: (125, 122, 113)
    auto = build_transform(["autoaugment"], 32, fill=mean).transforms[0]
    assert auto.op.fill == mean_int == [125, 122, 113]
    assert build_transform(["autoaugment"], 32).transforms[0].op.fill is None
    # what the fill does in AutoAugment's geometric ops: the corner a rotation uncovers takes that colour
    rotated = v2.functional.rotate(torch.full((3, 32, 32), 255, dtype=torch.uint8), 45.0, fill=auto.op.fill)
    assert rotated[:, 0, 0].tolist() == mean_int
