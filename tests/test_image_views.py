"""Issue 21 item 3: the views of image-file datasets (ImageNet, Open Images), checked on fixture images whose
geometry makes each view recognisable.

The fixture picture is wider than tall with pure red strips at its left and right edges and a grey middle: the
centre square never contains red, so red in a training crop proves that the stream read the whole picture.
Expected pixels come from torchvision / PIL calls written out here, not from the code under test.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from dat import data, prepare, train
from dat.config import AugmentConfig
from dat.io import write_json

HEIGHT, WIDTH, STRIP = 96, 160, 20


def _strip_picture(seed: int) -> np.ndarray:
    """uint8 (96, 160, 3): red edge strips, a grey middle with a little texture (so that crops differ)."""
    rng = np.random.default_rng(seed)
    img = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    img[:, STRIP:WIDTH - STRIP] += rng.integers(0, 40, (HEIGHT, WIDTH - 2 * STRIP, 1), dtype=np.uint8)
    img[:, :STRIP] = img[:, WIDTH - STRIP:] = (255, 0, 0)
    return img


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for i in range(6):
        path = folder / f"p{i}.png"  # lossless: the red strips stay pure red
        Image.fromarray(_strip_picture(i)).save(path)
        paths.append(str(path))
    return paths


def _red(x: np.ndarray | torch.Tensor) -> bool:
    """Whether an image (H, W, 3) uint8 or (3, H, W) float in [0, 1] has a clearly red pixel."""
    x = np.asarray(x.permute(1, 2, 0) * 255 if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    return bool(((x[..., 0] > 200) & (x[..., 1] < 60)).any())


def test_the_centre_views_follow_the_authors_resize(pictures):
    with Image.open(pictures[0]) as img:
        img = img.convert("RGB")
        # test view at 0.875: floor(48 / 0.875) = 54 (round would give 55), bicubic as the authors' test transform
        want = np.asarray(transforms.Compose([transforms.Resize(54, transforms.InterpolationMode.BICUBIC),
                                              transforms.CenterCrop(48)])(img))
        square = np.asarray(transforms.Compose([transforms.Resize(48), transforms.CenterCrop(48)])(img))
    test_view = data.ImageFiles(pictures[:1], size=48, crop_fraction=0.875, interpolation="bicubic")
    np.testing.assert_array_equal(test_view[0], want)
    # the training (sample) view: Resize(size) + CenterCrop(size), bilinear, whatever the test interpolation
    train_view = data.ImageFiles(pictures[:1], size=48, crop_fraction=1.0, interpolation="bicubic")
    np.testing.assert_array_equal(train_view[0], square)
    assert not _red(square)  # the red strips lie outside the centre square
    with pytest.raises(ValueError, match="interpolation must be one of"):
        data.ImageFiles(pictures, size=48, interpolation="nearest")
    with pytest.raises(ValueError, match="image view must be one of"):
        data.ImageFiles(pictures, size=48, view="corner")


def test_resize_center_crop_is_the_generation_view():
    """Resize(size) + CenterCrop(size): nothing changes on the stored square (no zoom), and on a wider image the
    shorter side goes to size and the middle is kept (independent computation: torch interpolate, antialiased)."""
    torch.manual_seed(0)
    square = torch.rand(3, 64, 64)
    transform = data.build_transform(["resize_center_crop"], 64)
    assert torch.equal(transform(square), square)
    wide = torch.rand(3, 32, 50)
    resized = torch.nn.functional.interpolate(wide[None], size=(64, 100), mode="bilinear", antialias=True,
                                              align_corners=False)[0]
    torch.testing.assert_close(transform(wide), resized[:, :, 18:82], atol=1e-5, rtol=0)


def _prepared(tmp_path: Path, pictures: list[str], size: int = 32) -> Path:
    """A data folder whose train.npz indexes the pictures in the stored training view (centre square)."""
    files = data.ImageFiles(pictures, size=size, crop_fraction=1.0)
    data.save_images(tmp_path / "data/train.npz", files, np.arange(len(pictures)) % 2)
    return tmp_path / "data"


def _stage2_run(size: int, augment: dict) -> dict:
    return {"run": "views", "method": "dat", "seed": 0, "init_from": None,
            "dataset": {"name": "pics", "num_classes": 2, "channels": 3, "image_size": size,
                        "mean": [0.5] * 3, "std": [0.25] * 3},
            "model": {"arch": "resnet_small", "kwargs": {"widths": [8], "first_stride": 1}},
            "train": {"batch_size": 4, "steps": 1, "freeze_batchnorm": True, "augment": augment,
                      "attack": {"eps": 0.5, "step_size": 0.25, "steps": 1}, "optimizer": {"lr": 0.01},
                      "bce": {"batch_size": 4, "step_size": 0.5, "initial_steps": 1, "increment": 1, "max_steps": 2,
                              "auc_threshold": 0.5, "window_images": 4, "init": "ood", "ood_set": "openimages",
                              "ood_images": 6}}}


def test_training_streams_read_the_views_the_authors_train_on(tmp_path, pictures):
    """AT-CE and the Open Images starts: RandomResizedCrop over the whole picture (red edges appear in some
    crops); BCE: the stored square, which is the FID reference's view, unzoomed (equal pixels)."""
    data_dir = _prepared(tmp_path, pictures)
    write_json({"name": "pics", "source": "imagenet", "root": str(tmp_path), "num_classes": 2, "channels": 3,
                "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "n_ood": 6}, tmp_path / "dataset.json")
    aux = tmp_path / "aux_ood.npz"
    assert prepare.main(["ood", "--config", str(tmp_path / "dataset.json"), "--name", "openimages", "--root",
                         str(Path(pictures[0]).parent), "--out", str(aux)]) == 0
    augment = {"at": ["random_resized_crop", "flip"], "bce": ["resize_center_crop"],
               "ood": ["random_resized_crop", "flip"]}
    trainer = train.Trainer(_stage2_run(32, augment), data_dir, None, aux_ood=aux)
    stored, _ = data.open_images(data_dir / "train.npz")
    torch.manual_seed(0)
    at_items = [trainer.at_stream[i % 6][0] for i in range(60)]
    ood_items = [trainer.ood_stream[i % 6][0] for i in range(60)]
    assert all(x.shape == (3, 32, 32) for x in at_items + ood_items)
    assert any(_red(x) for x in at_items) and any(_red(x) for x in ood_items)
    for i in range(6):  # BCE positives = the FID reference images (fid_ref reads train.npz as stored)
        assert torch.equal(trainer.bce_stream[i][0], data.to_tensor(stored[i:i + 1])[0])
        assert not _red(stored[i])
    # without augment.ood the starts take the BCE list (and then the stored view)
    assert AugmentConfig(at=("crop",), bce=("flip",)).ood_images == ("flip",)
    plain = train.Trainer(_stage2_run(32, {"at": ["flip"], "bce": ["resize_center_crop"]}), data_dir, None,
                          aux_ood=aux)
    assert plain.ood_stream.x.view == "random_resized_crop" and plain.at_stream.x.view == "centre"


def test_open_images_starts_are_fixed_random_resized_crops(tmp_path, pictures):
    """The FID seed pool: one random-resized crop + flip per image (the authors' fid_eval folder), the same on every
    read, kept by subsets and files, each equal to PIL's crop + bilinear resize of the image's own box."""
    folder = str(Path(pictures[0]).parent)
    x = data.load_ood("openimages", 5, channels=3, image_size=24, seed=3, root=folder)
    assert x.view == "random_resized_crop" and x.shape == (5, 24, 24, 3)
    first = x[:]
    np.testing.assert_array_equal(first, x[:])
    np.testing.assert_array_equal(x.take(np.array([4, 1]))[:], first[[4, 1]])
    data.save_images(tmp_path / "starts.npz", x)
    np.testing.assert_array_equal(data.open_images(tmp_path / "starts.npz", labels=False)[0][:], first)
    np.testing.assert_array_equal(data.load_ood("openimages", 5, 3, 24, seed=3, root=folder)[:], first)
    flips = 0
    for i in range(5):
        rng = np.random.default_rng(int(x.crop_seeds[i]))
        top, left, h, w = data.random_resized_box(rng, HEIGHT, WIDTH)
        with Image.open(x.paths[i]) as img:
            want = img.convert("RGB").crop((left, top, left + w, top + h)).resize((24, 24), Image.BILINEAR)
        if rng.random() < 0.5:
            want, flips = want.transpose(Image.FLIP_LEFT_RIGHT), flips + 1
        np.testing.assert_array_equal(first[i], np.asarray(want))
    centre = data.ImageFiles(x.paths, size=24, crop_fraction=1.0)[:]
    assert not np.array_equal(first, centre)


def test_random_resized_boxes_stay_in_torchvisions_ranges():
    rng = np.random.default_rng(0)
    boxes = [data.random_resized_box(rng, HEIGHT, WIDTH) for _ in range(500)]
    for top, left, h, w in boxes:
        assert 0 <= top and top + h <= HEIGHT and 0 <= left and left + w <= WIDTH
    area = np.array([h * w for _, _, h, w in boxes]) / (HEIGHT * WIDTH)
    aspect = np.array([w / h for _, _, h, w in boxes])
    assert area.min() >= 0.07 and area.max() <= 1.0 and area.max() > 0.5
    assert aspect.min() >= 0.7 and aspect.max() <= 1.4
    # no draw fits a 10 x 1000 strip: the centred fallback at the widest allowed ratio (4/3 -> 13 x 10)
    assert data.random_resized_box(rng, 10, 1000) == (0, 493, 10, 13)


def test_whole_view_gives_single_images_only(pictures):
    whole = data.ImageFiles(pictures, size=32, view="whole")
    assert whole[0].shape == (HEIGHT, WIDTH, 3) and whole.shape == (6, None, None, 3)
    with pytest.raises(ValueError, match="one image at a time"):
        whole[:2]
    with pytest.raises(ValueError, match="one crop seed per image"):
        data.ImageFiles(pictures, size=32, view="random_resized_crop", crop_seeds=[1, 2])
