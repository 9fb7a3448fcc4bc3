"""ImageNet-scale data on CPU: the RestrictedImageNet / ImageNet-256 loaders, their OOD sets, Open Images and Tiny
Images files, training from a file index, published checkpoints and the dry runs of their tables.

The ImageNet fixture is torchvision's on-disk layout (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG, 1000 class folders)
holding real photographs (random crops of the scikit-learn / scikit-image sample images saved as JPEG) in a few
classes, so the real listing, label mapping and decoding code runs; nothing is mocked.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dat import data, prepare, train
from dat.io import read_json, write_json
from dat.rehearsal import photo_crops, robustness_checkpoint

REPO = Path(__file__).resolve().parents[1]
# ImageNet class index -> number of images per split; 151 (dog), 281 (cat), 30 (frog) and 319 (insect) are
# RestrictedImageNet classes 0, 1, 2 and 8; 500 and 999 are outside it
FIXTURE_CLASSES = {151: 3, 152: 2, 281: 2, 30: 2, 319: 2, 500: 3, 999: 2}


_photo_crops = photo_crops


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet")
    wnids = [f"n{i:08d}" for i in range(1000)]
    for split, seed in (("train", 0), ("val", 1)):
        for wnid in wnids:
            (root / split / wnid).mkdir(parents=True)
        for k, (cls, count) in enumerate(sorted(FIXTURE_CLASSES.items())):
            for j, img in enumerate(_photo_crops(count, seed * 1000 + k)):
                Image.fromarray(img).save(root / split / wnids[cls] / f"{wnids[cls]}_{j}.JPEG", quality=90)
    return root


def test_restricted_imagenet_maps_class_ranges_to_nine_superclasses(imagenet_root):
    x, y = data.imagenet_files(str(imagenet_root), "train", restricted=True, size=32)
    # 151 and 152 are dogs (0), 281 a cat (1), 30 a frog (2), 319 an insect (8); 500 and 999 are left out
    assert sorted(y.tolist()) == [0] * 5 + [1] * 2 + [2] * 2 + [8] * 2
    assert all("n00000500" not in p and "n00000999" not in p for p in x.paths)
    assert x.shape == (11, 32, 32, 3) and x[0].dtype == np.uint8
    full_x, full_y = data.imagenet_files(str(imagenet_root), "test", size=32)
    assert sorted(set(full_y.tolist())) == sorted(FIXTURE_CLASSES)  # ImageNet labels are the sorted-wnid indices
    assert len(full_x) == sum(FIXTURE_CLASSES.values())


def test_image_files_give_the_standard_resize_and_centre_crop_view(imagenet_root):
    from torchvision import transforms

    path = next((imagenet_root / "val" / "n00000151").glob("*.JPEG"))
    files = data.ImageFiles([str(path)], size=56, crop_fraction=0.875)  # resize 64, centre crop 56
    with Image.open(path) as img:
        want = np.asarray(transforms.Compose([transforms.Resize(64), transforms.CenterCrop(56)])(img.convert("RGB")))
    np.testing.assert_array_equal(files[0], want)
    np.testing.assert_array_equal(files[[0, 0]], np.stack([want, want]))
    whole = data.ImageFiles([str(path)], size=56, crop_fraction=1.0)[0]  # training view: the whole central square
    assert whole.shape == (56, 56, 3) and not np.array_equal(whole, want)
    sub = files.take(np.array([0, 0, 0]))
    assert isinstance(sub, data.ImageFiles) and len(sub) == 3
    with pytest.raises(OSError, match="cannot read image .*missing.JPEG"):
        data.ImageFiles([str(imagenet_root / "missing.JPEG")], size=8)[0]


def _dataset_json(tmp_path: Path, root: Path, source: str, num_classes: int, size: int = 32, **extra) -> Path:
    ds = {"name": source, "source": source, "root": str(root), "num_classes": num_classes, "channels": 3,
          "image_size": size, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "n_ood": 4, **extra}
    path = tmp_path / "dataset.json"
    write_json(ds, path)
    return path


def test_prepare_writes_a_file_index_that_training_reads(imagenet_root, tmp_path):
    cfg = _dataset_json(tmp_path, imagenet_root, "restricted_imagenet", 9, n_train=8,
                        ood_roots={"imagenet_minus_rimagenet": str(imagenet_root)})
    assert prepare.main(["splits", "--config", str(cfg), "--out-dir", str(tmp_path / "data")]) == 0
    x, y = data.open_images(tmp_path / "data/train.npz")
    assert isinstance(x, data.ImageFiles) and len(x) == 8 and x.crop_fraction == 1.0  # class-balanced subset
    x_test, y_test = data.open_images(tmp_path / "data/test.npz")
    assert len(x_test) == 11 and x_test.crop_fraction == 0.875 and x_test[:3].shape == (3, 32, 32, 3)
    assert read_json(tmp_path / "data/prepare.json")["splits"]["train"]["n"] == 8

    # OOD sets: ImageNet validation images of non-RImageNet classes (500, 999), decoded on access
    out = tmp_path / "data/ood_imagenet_minus_rimagenet.npz"
    assert prepare.main(["ood", "--config", str(cfg), "--name", "imagenet_minus_rimagenet", "--out", str(out)]) == 0
    ood = data.open_images(out, labels=False)[0]
    assert len(ood) == 4 and all(("n00000500" in p) or ("n00000999" in p) for p in ood.paths)
    assert all("/val/" in p for p in ood.paths)
    aux = tmp_path / "aux.npz"  # auxiliary chain starts come from the training split, never the evaluation images
    assert prepare.main(["ood", "--config", str(cfg), "--name", "imagenet_minus_rimagenet", "--split", "train",
                         "--n", "5", "--out", str(aux)]) == 0
    assert all("/train/" in p for p in data.open_images(aux, labels=False)[0].paths)

    # a short stage 1 on the file index, with the RestrictedImageNet augmentations and a decoding worker
    run = {
        "run": "rin", "method": "at", "seed": 0, "init_from": None, "dataset": read_json(cfg) | {"name": "rin"},
        "model": {"arch": "resnet_small", "kwargs": {"widths": [8, 16], "first_stride": 2}},
        "train": {"batch_size": 4, "steps": 2, "ema_decay": None, "log_every": 1, "ckpt_every_steps": 2,
                  "num_workers": 1, "attack": {"norm": "L2", "eps": 1.0, "step_size": 0.5, "steps": 1},
                  "optimizer": {"name": "sgd", "lr": 0.01, "schedule": "multistep", "milestones": [0.5]},
                  "augment": {"at": ["random_resized_crop", "flip", "color_jitter", "lighting"]}},
    }
    write_json(run, tmp_path / "run.json")
    rc = train.main(["--config", str(tmp_path / "run.json"), "--data-dir", str(tmp_path / "data"), "--model-out",
                     str(tmp_path / "rin/model.pt"), "--log-csv", str(tmp_path / "rin/log.csv"), "--ckpt-dir",
                     str(tmp_path / "rin/ckpt"), "--threads", "1"])
    assert rc == 0 and torch.load(tmp_path / "rin/model.pt", weights_only=True)["step"] == 2


def test_missing_imagenet_says_what_to_download_and_where(tmp_path):
    message = data.missing_message("restricted_imagenet", str(tmp_path / "imagenet"), download=True)
    assert "image-net.org" in message and "ILSVRC2012_img_val.tar" in message and str(tmp_path / "imagenet") in message
    with pytest.raises(FileNotFoundError, match="ILSVRC2012_devkit_t12.tar.gz"):
        data.load_split("imagenet", str(tmp_path / "imagenet"), "train")
    assert "Open Images" in data.missing_message("openimages", str(tmp_path / "none"), download=False)


def test_imagenet_od_for_cifar_is_downsampled_to_32_px(imagenet_root, tmp_path):
    """Paper Tables 10-11: ImageNetOD (validation images outside the RestrictedImageNet classes) as a CIFAR OOD set,
    through the workflow's command: dataset.json holds no ood_roots (an evaluation key), the rule passes --root."""
    from torchvision import transforms

    cfg = _dataset_json(tmp_path, tmp_path / "cifar10", "cifar10", 10, size=32, n_ood=5)
    out = tmp_path / "ood_imagenet_minus_rimagenet.npz"
    assert prepare.main(["ood", "--config", str(cfg), "--name", "imagenet_minus_rimagenet",
                         "--root", str(imagenet_root), "--out", str(out)]) == 0
    ood = data.open_images(out, labels=False)[0]
    assert len(ood) == 5 and all("/val/" in p and (("n00000500" in p) or ("n00000999" in p)) for p in ood.paths)
    x = ood[:]
    assert x.shape == (5, 32, 32, 3) and x.dtype == np.uint8 and x.std() > 10  # real photographs at 32 px
    with Image.open(ood.paths[0]) as img:  # shorter side floor(32 / 0.875) = 36 (bilinear, antialiased), centre 32 px
        want = np.asarray(transforms.Compose([transforms.Resize(36), transforms.CenterCrop(32)])(img.convert("RGB")))
    np.testing.assert_array_equal(x[0], want)
    with pytest.raises(ValueError, match="ood_roots.imagenet_minus_rimagenet"):  # neither --root nor ood_roots
        prepare.main(["ood", "--config", str(cfg), "--name", "imagenet_minus_rimagenet", "--out", str(out)])


def test_open_images_folder_and_tiny_images_bin(imagenet_root, tmp_path):
    folder = tmp_path / "openimages/sub"
    folder.mkdir(parents=True)
    for i, img in enumerate(_photo_crops(5, 7)):
        Image.fromarray(img).save(folder / f"{i}.jpg")
    (folder / "notes.txt").write_text("not an image")
    x = data.load_ood("openimages", 3, 3, 48, seed=0, root=str(tmp_path / "openimages"))
    assert isinstance(x, data.ImageFiles) and x[:].shape == (3, 48, 48, 3)

    # 80M Tiny Images .bin: 3072 bytes per image, each 32x32x3 in column-major order; written here independently
    imgs = np.stack([np.asarray(Image.fromarray(c).resize((32, 32))) for c in _photo_crops(6, 8)])
    (tmp_path / "tiny.bin").write_bytes(b"".join(img.tobytes(order="F") for img in imgs))
    read = data.read_image_file(str(tmp_path / "tiny.bin"))
    np.testing.assert_array_equal(read, imgs)
    starts = data.load_ood(f"file:{tmp_path / 'tiny.bin'}", 4, 3, 32, seed=0)
    assert starts.shape == (4, 32, 32, 3) and all(any(np.array_equal(s, i) for i in imgs) for s in starts)
    np.save(tmp_path / "imgs.npy", imgs.transpose(0, 3, 1, 2))  # NCHW .npy
    np.testing.assert_array_equal(data.read_image_file(str(tmp_path / "imgs.npy")), imgs)
    (tmp_path / "bad.bin").write_bytes(b"\0" * 3000)
    with pytest.raises(ValueError, match="bad.bin: 3000 bytes"):
        data.read_image_file(str(tmp_path / "bad.bin"))


def _robustness_checkpoint(path: Path, state: dict) -> None:
    torch.save(robustness_checkpoint(state), path)


def _import_as_is(tmp_path: Path, imagenet_root: Path, model_cfg: dict, init: Path, fmt: str, size: int = 32):
    """Import a published checkpoint through dat.train as a steps-0 (``pretrained``) run on the RestrictedImageNet
    fixture, as the pipeline does; returns (model, checkpoint dict) of its model.pt."""
    from dat.checkpoint import load_model

    cfg = _dataset_json(tmp_path, imagenet_root, "restricted_imagenet", 9, size=size)
    assert prepare.main(["splits", "--config", str(cfg), "--out-dir", str(tmp_path / "data")]) == 0
    run = {"run": "pub", "method": "pretrained", "seed": 0, "init_from": None, "dataset": read_json(cfg),
           "model": model_cfg,
           "train": {"batch_size": 4, "steps": 0, "ema_decay": None, "attack": {"eps": 3.0, "step_size": 0.6},
                     "optimizer": {"name": "sgd", "lr": 0.0}}}
    write_json(run, tmp_path / "run.json")
    rc = train.main(["--config", str(tmp_path / "run.json"), "--data-dir", str(tmp_path / "data"),
                     "--init", str(init), "--init-format", fmt, "--model-out", str(tmp_path / "pub/model.pt"),
                     "--log-csv", str(tmp_path / "pub/log.csv"), "--ckpt-dir", str(tmp_path / "pub/ckpt"),
                     "--threads", "1"])
    assert rc == 0
    return load_model(tmp_path / "pub/model.pt")


def test_published_robustness_checkpoint_is_imported_and_evaluated_as_is(imagenet_root, tmp_path):
    """A run with steps 0 imports a published checkpoint (Robustness-library layout) without training."""
    from dat.checkpoint import published_weights
    from dat.models import build_model

    kwargs = dict(num_classes=9, in_channels=3, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], depth=18)
    torch.manual_seed(3)
    published = build_model("torchvision_resnet", **kwargs)
    _robustness_checkpoint(tmp_path / "pub.ckpt", {k[len("backbone."):]: v for k, v in published.state_dict().items()
                                                    if k.startswith("backbone.")})
    model, ckpt = _import_as_is(tmp_path, imagenet_root, {"arch": "torchvision_resnet", "kwargs": {"depth": 18}},
                                tmp_path / "pub.ckpt", "robustness")
    assert ckpt["step"] == 0 and len(ckpt["init_sha256"]) == 64
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), published.eval()(x))
    other = build_model("torchvision_resnet", **{**kwargs, "depth": 34})
    with pytest.raises(ValueError, match="does not fit the configured model: missing"):
        published_weights(torch.load(tmp_path / "pub.ckpt", weights_only=True), "robustness", other)


def test_published_convnext_convstem_checkpoint_keeps_its_input_convention(imagenet_root, tmp_path):
    """ConvNeXt-L + ConvStem in Singh et al.'s layouts (format revisiting_at): the DAT authors' file (no normalisation
    layer, module. prefix) is imported by a steps-0 run and computes the published network on raw [0, 1] pixels (its
    stem equals the stem computed by hand); the layout with their normalisation layer (module.base_model.normalize.*,
    .model.*) applies its ImageNet mean/std exactly once. ConvNeXt-L widths and stem, one block per stage."""
    from dat.checkpoint import published_weights
    from dat.models import build_model
    from tests.test_models import _hand_convstem

    kwargs = dict(num_classes=9, in_channels=3, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                  variant="convnext_large", convstem=True, depths=[1, 1, 1, 1])
    torch.manual_seed(5)
    net = build_model("timm_convnext", **kwargs).backbone.eval()  # the published network (timm keys)
    for m in net.modules():  # non-trivial LayerNorm affine parameters
        if isinstance(m, torch.nn.LayerNorm):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    torch.save({f"module.{k}": v for k, v in weights.items()}, tmp_path / "convnext_large_cvst_robust.pt")
    model_cfg = {"arch": "timm_convnext", "kwargs": {k: kwargs[k] for k in ("variant", "convstem", "depths")}}
    model, ckpt = _import_as_is(tmp_path, imagenet_root, model_cfg, tmp_path / "convnext_large_cvst_robust.pt",
                                "revisiting_at", size=64)
    assert ckpt["step"] == 0 and len(ckpt["init_sha256"]) == 64
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone.stem(model.normalize(x)), _hand_convstem(x, weights),
                                   atol=1e-5, rtol=1e-5)  # no normalisation before the stem
        torch.testing.assert_close(model(x), net(x), atol=1e-4, rtol=1e-4)

        mean, std = torch.tensor(kwargs["mean"]).view(1, 3, 1, 1), torch.tensor(kwargs["std"]).view(1, 3, 1, 1)
        with_layer = {"module.base_model.normalize.mean": mean, "module.base_model.normalize.std": std,
                      **{f"module.base_model.model.{k}": v for k, v in weights.items()}}
        other = build_model("timm_convnext", **{**kwargs, "mean": [0.5] * 3, "std": [0.5] * 3}).eval()
        other.load_state_dict(published_weights(with_layer, "revisiting_at", other))
        torch.testing.assert_close(other.backbone.stem(other.normalize(x)), _hand_convstem((x - mean) / std, weights),
                                   atol=1e-5, rtol=1e-5)  # the checkpoint's mean/std, once
        torch.testing.assert_close(other(x), net((x - mean) / std), atol=1e-4, rtol=1e-4)


def test_torch_compile_option_trains_like_eager(tmp_path, imagenet_root):
    """compile: true (backend eager: Dynamo tracing without a C++ toolchain) gives the same step as no compile."""
    cfg = _dataset_json(tmp_path, imagenet_root, "restricted_imagenet", 9, size=16)
    assert prepare.main(["splits", "--config", str(cfg), "--out-dir", str(tmp_path / "data")]) == 0
    losses = {}
    for compiled in (False, True):
        run = {"run": "c", "method": "at", "seed": 0, "init_from": None, "dataset": read_json(cfg),
               "model": {"arch": "resnet_small", "kwargs": {"widths": [8], "first_stride": 1}},
               "train": {"batch_size": 4, "steps": 1, "compile": compiled, "compile_backend": "eager",
                         "attack": {"eps": 0.5, "step_size": 0.25, "steps": 2}, "optimizer": {"lr": 0.1},
                         "augment": {"at": ["flip"]}}}
        trainer = train.Trainer(run, tmp_path / "data", None)
        batch = next(data.infinite_batches(trainer.at_stream, 4, seed=0))
        torch.manual_seed(0)
        losses[compiled] = trainer.train_step(batch, None)["loss"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_imagenet256_runs_follow_the_authors_released_settings():
    """Issue 12: the ImageNet-256 methods carry the settings of the authors' code (github xuwangyin/DAT,
    experiments/imagenet/*_300K.yaml and model_configs/imagenet-dat-*-256x256*.yaml): AT-CE 3 steps of 2.0 at eps 3,
    contrastive step 2.0 (ConvNeXt-L 3.0), T up to 15/30 (ResNet-50), 30/65 (WRN-50-4) with AUC thresholds 0.4 / 0.2
    (below the schema's former minimum of 0.5), sampling step 8 and a grid holding their evaluated T (12-24)."""
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(config, str(REPO / "dat/schemas/config.schema.yaml"))
    methods, runs = config["methods"], config["runs"]

    def bce(run):
        return {**methods[runs[run]["method"]]["bce"], **(runs[run].get("train_overrides") or {}).get("bce", {})}

    expected = {"imagenet256_resnet50_dat_t15": (15, 0.4, 2.0), "imagenet256_resnet50_dat": (30, 0.4, 2.0),
                "imagenet256_wrn50_4_dat_t30": (30, 0.2, 2.0), "imagenet256_wrn50_4_dat": (65, 0.2, 2.0),
                "imagenet256_convnext_dat": (110, 0.2, 3.0)}
    for run, (t_max, auc, step) in expected.items():
        b = bce(run)
        assert (b["max_steps"], b["auc_threshold"], b["step_size"], b["ood_images"]) == (t_max, auc, step, 300000), run
        method = methods[runs[run]["method"]]
        attack = method["attack"]  # validate() filled in the schema's defaults (random_start false: zero start)
        assert (attack["norm"], attack["eps"], attack["step_size"], attack["steps"], attack["random_start"]) == (
            "L2", 3.0, 2.0, 3, False) and method["batch_size"] == 512
    assert methods["dat_imagenet_convnext"]["optimizer"]["name"] == "adamw"
    assert runs["imagenet256_convnext_at"]["init_from"]["format"] == "revisiting_at"
    ds = config["datasets"]["imagenet256"]
    assert ds["sampling_step_size"] == 8.0 and {12, 13, 14, 17, 19, 22, 24} <= set(ds["sampling"]["steps_grid"])


def _snakemake(*args, cwd):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_imagenet_tables_dry_run_with_the_data_and_fail_clearly_without(imagenet_root, tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    proc = _snakemake("-n", "--configfile", str(REPO / "config.yaml"), "--directory", str(tmp_path), "--cores", "1",
                      "results/tables/table2_rimagenet.tex", cwd=tmp_path)
    assert proc.returncode != 0 and not (tmp_path / "results").exists()  # nothing ran
    assert "datasets.rimagenet.root" in proc.stderr + proc.stdout and "image-net.org" in proc.stderr + proc.stdout

    for ds in ("rimagenet", "imagenet256"):
        config["datasets"][ds]["root"] = str(imagenet_root)
    for ds in config["datasets"].values():  # ImageNetOD: RestrictedImageNet's OOD set, and the CIFAR datasets'
        if "imagenet_minus_rimagenet" in (ds.get("ood_roots") or {}):
            ds["ood_roots"]["imagenet_minus_rimagenet"] = str(imagenet_root)
    openimages = tmp_path / "openimages"
    openimages.mkdir()
    Image.fromarray(_photo_crops(1, 0)[0]).save(openimages / "a.jpg")
    config["datasets"]["imagenet256"]["ood_roots"]["openimages"] = str(openimages)
    for run in config["runs"].values():
        if isinstance(run.get("init_from"), dict):  # the published checkpoints a user downloads
            ckpt = tmp_path / Path(run["init_from"]["path"]).name
            ckpt.write_bytes(b"checkpoint")
            run["init_from"]["path"] = str(ckpt)
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(config))
    for table, runs in (("table2_rimagenet", ["rimagenet_at", "rimagenet_ratio", "rimagenet_dat"]),
                        ("imagenet256", ["imagenet256_resnet50_at", "imagenet256_wrn50_4_at", "imagenet256_convnext_at",
                                         "imagenet256_resnet50_dat_t15", "imagenet256_resnet50_dat",
                                         "imagenet256_wrn50_4_dat_t30", "imagenet256_wrn50_4_dat",
                                         "imagenet256_convnext_dat"])):
        proc = _snakemake("-n", "-p", "--configfile", str(tmp_path / "paper.yaml"), "--directory", str(tmp_path),
                          "--cores", "1", f"results/tables/{table}.tex", cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        for run in runs:
            assert f"results/{run}/model.pt" in proc.stdout
        assert "grid_search_steps" in proc.stdout and "eval_robust" in proc.stdout and "compute_fid" in proc.stdout
        if table == "table2_rimagenet":  # RATIO's out-batches: the ImageNet classes outside RestrictedImageNet
            assert "results/rimagenet_ratio/aux_ood.npz" in proc.stdout
    assert "--init-format robustness" in proc.stdout and "--name openimages" in proc.stdout
    assert "--init-format revisiting_at" in proc.stdout  # the ConvNeXt-L + ConvStem of Singh et al. (2023)
    assert "download_data" not in proc.stdout  # ImageNet and Open Images have no downloader
    proc = _snakemake("-n", "--configfile", str(tmp_path / "paper.yaml"), "--directory", str(tmp_path), "--cores", "1",
                      "all", "ablations", cwd=tmp_path)  # every table of the paper config, CIFAR and ImageNet
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert all(f"results/tables/{t}.tex" in proc.stdout for t in config["tables"])
    # paper Table 12: CIFAR-10, CIFAR-100, SVHN, ImageNetOD and noise at 224 px; the CIFAR/SVHN folders are those the
    # CIFAR datasets download into, so their download jobs come first
    proc = _snakemake("-n", "-p", "--configfile", str(tmp_path / "paper.yaml"), "--directory", str(tmp_path),
                      "--cores", "1", "results/tables/table12.tex", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for ood in ("cifar10", "cifar100", "svhn"):
        assert f"--name {ood} --n 1024 --root resources/{ood} --out results/data/rimagenet/ood_{ood}.npz" in proc.stdout
        assert f"--source {ood} --root resources/{ood}" in proc.stdout
    assert "results/data/rimagenet/ood_imagenet_minus_rimagenet.npz" in proc.stdout
    assert "results/data/rimagenet/ood_noise.npz" in proc.stdout
    shutil.rmtree(tmp_path / ".snakemake", ignore_errors=True)
