"""80M Tiny Images as the paper's CIFAR chain starts (issue 21 item 1): the reader, the CIFAR exclusion lists in the
authors' numbering, and the ``if_present`` blocks that switch the paper targets to it while the user's file is there
(training starts, RATIO's out-batches, the FID seed pool), keeping every resolved file as it was otherwise."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml

from dat.data import load_ood, read_image_file, tiny_images, tiny_images_exclusions
from dat.registry import TINY_IMAGES_EXCLUSIONS, TINY_IMAGES_FILE, missing_message
from dat.rehearsal import foolbox_images, tiny_images_bytes, write_tiny_images
from dat.resolve import ConfigError, load
from tests.conftest import REPO

TINY = "resources/tiny_images"


def _numbered_file(root, n: int) -> None:
    """A Tiny Images file whose image k holds k in its first three pixels' red, green and blue bytes (row 0)."""
    x = np.zeros((n, 32, 32, 3), dtype=np.uint8)
    k = np.arange(n)
    x[:, 0, 0, 0], x[:, 0, 0, 1], x[:, 0, 0, 2] = k % 256, (k // 256) % 256, k // 65536
    root.mkdir(parents=True, exist_ok=True)
    (root / TINY_IMAGES_FILE).write_bytes(tiny_images_bytes(x))


def _numbers(x: np.ndarray) -> np.ndarray:
    x = x[:, 0, 0].astype(np.int64)
    return x[:, 0] + 256 * x[:, 1] + 65536 * x[:, 2]


def _lists(root, excluded: dict[str, list[int]]) -> None:
    for name in TINY_IMAGES_EXCLUSIONS:
        (root / name).write_text("".join(f"{i}\n" for i in excluded.get(name, [])))


def test_the_file_layout_round_trips():
    """The fixture writer is the reader's inverse: 80M Tiny Images' column-major 3072-byte records."""
    x = np.random.default_rng(0).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    raw = np.frombuffer(tiny_images_bytes(x), dtype=np.uint8)
    assert raw[1] == x[0, 1, 0, 0] and raw[32] == x[0, 0, 1, 0] and raw[1024] == x[0, 0, 0, 1]  # i + 32 j + 1024 c


def test_exclusion_lists_count_as_the_authors_loader_does(tmp_path):
    """Hendrycks et al.'s 80mn_cifar_idxs.txt numbers the first image 1, the authors' own lists 0
    (InNOutRobustness/utils/datasets/tinyImages.py): index 1 there and index 0 elsewhere are the same image."""
    _numbered_file(tmp_path, 50)
    _lists(tmp_path, {"80mn_cifar_idxs.txt": [1, 10], "80mn_cifar10_test_idxs.txt": [0, 3],
                      "80mn_cifar101_idxs.txt": [49]})
    assert tiny_images_exclusions(tmp_path, 50).tolist() == [0, 3, 9, 49]
    drawn = _numbers(tiny_images(tmp_path, 1000, seed=0))
    assert sorted(drawn.tolist()) == [k for k in range(50) if k not in (0, 3, 9, 49)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_drawn_images_are_a_uniform_sample_of_the_kept_ones(tmp_path, seed):
    """The rank-to-index map (no mask of the whole file) draws exactly the kept images: distinct, never an excluded
    one, every kept one when n covers them, and a different sample for another seed."""
    rng = np.random.default_rng(seed)
    n_images = 3000
    _numbered_file(tmp_path, n_images)
    excluded = np.sort(rng.choice(n_images, size=700, replace=False))
    _lists(tmp_path, {"80mn_cifar10_train_idxs.txt": excluded[:400].tolist(),
                      "80mn_cifar100_train_idxs.txt": excluded[300:].tolist()})  # overlapping lists
    kept = np.setdiff1d(np.arange(n_images), excluded)
    some = _numbers(tiny_images(tmp_path, 500, seed=seed))
    assert len(set(some.tolist())) == 500 and np.isin(some, kept).all()
    assert not np.array_equal(np.sort(some), np.sort(_numbers(tiny_images(tmp_path, 500, seed=seed + 10))))
    everything = _numbers(tiny_images(tmp_path, 10 ** 6, seed=seed))
    assert np.array_equal(np.sort(everything), kept)
    assert not np.array_equal(everything, kept)  # a random order, not the file's (Tiny Images is sorted by keyword)


def test_no_cifar_image_reaches_the_chain_starts(tmp_path):
    """The rehearsal fixture: the wheel's 40 real CIFAR images sit in the file and in the exclusion lists; the
    starts drawn for a CIFAR run hold every other image and none of them."""
    write_tiny_images(tmp_path)
    stored = read_image_file(str(tmp_path / TINY_IMAGES_FILE))
    cifar = np.concatenate([foolbox_images("cifar10")[0], foolbox_images("cifar100")[0]])
    flat = stored.reshape(len(stored), -1)
    assert sum(bool((flat == c.reshape(-1)).all(1).any()) for c in cifar) == len(cifar)
    starts = load_ood("tiny_images", 10 ** 5, channels=3, image_size=32, seed=0, root=str(tmp_path))
    assert len(starts) == len(stored) - len(cifar)
    assert not any((starts.reshape(len(starts), -1) == c.reshape(-1)).all(1).any() for c in cifar)
    gray = load_ood("tiny_images", 4, channels=1, image_size=28, seed=0, root=str(tmp_path))
    assert gray.shape == (4, 28, 28, 1) and gray.dtype == np.uint8


def test_a_missing_or_foreign_list_is_an_error_naming_the_file(tmp_path):
    _numbered_file(tmp_path, 20)
    _lists(tmp_path, {})
    (tmp_path / "80mn_cifar101_idxs.txt").unlink()
    message = missing_message("tiny_images", str(tmp_path), download=True)  # never downloaded: withdrawn
    assert message and "80mn_cifar101_idxs.txt" in message and "withdrawn" in message
    with pytest.raises(FileNotFoundError, match="80mn_cifar101_idxs.txt"):
        load_ood("tiny_images", 5, channels=3, image_size=32, seed=0, root=str(tmp_path))
    _lists(tmp_path, {"80mn_cifar_idxs.txt": [0]})  # counts from 1: 0 is no image
    with pytest.raises(ValueError, match=r"80mn_cifar_idxs.txt: index 0 is outside the 20 images .*counts from 1"):
        tiny_images(tmp_path, 5, seed=0)
    _lists(tmp_path, {"80mn_cifar10_test_idxs.txt": [20]})  # a list of the full 79M-image file
    with pytest.raises(ValueError, match="80mn_cifar10_test_idxs.txt: index 20 is outside the 20 images"):
        tiny_images(tmp_path, 5, seed=0)


def _paper() -> dict:
    return json.loads(json.dumps(yaml.safe_load((REPO / "config.yaml").read_text())))


def _without_if_present(config: dict) -> dict:
    """The paper config with every if_present key deleted: what it resolved to before the switch existed."""
    out = copy.deepcopy(config)
    for method in out["methods"].values():
        for key in ("bce", "ratio"):
            (method.get(key) or {}).pop("if_present", None)
    for ds in out["datasets"].values():
        (ds.get("sampling") or {}).pop("if_present", None)
        if ds.get("sampling") == {}:
            del ds["sampling"]
    for run in out["runs"].values():
        ((run.get("train_overrides") or {}).get("bce") or {}).pop("if_present", None)
    return out


def test_without_the_file_every_resolved_run_is_what_it_was(tmp_path, monkeypatch):
    """No tiny_images.bin: each run's run.json and train.json (and so its hash and outputs) equal those of the config
    without the if_present blocks, and the dry run names the file that would switch each block."""
    monkeypatch.chdir(tmp_path)
    switched, plain = load(_paper()), load(_without_if_present(_paper()))
    for run in plain.runs:
        assert switched.train_cfg(run) == plain.train_cfg(run), run
        assert switched.run_cfg(run) == plain.run_cfg(run), run
    lines = [line for line in switched.left_out if line.startswith("if_present:")]
    assert {line.split(" runs ")[0] for line in lines} == {"if_present: the cifar10", "if_present: the cifar100"}
    assert all(f"until {TINY}/{TINY_IMAGES_FILE} exists (then init ood, ood_set tiny_images" in line
               for line in lines)
    assert {line.split(" keep ")[1].split(" as written")[0] for line in lines} == {"train.bce", "train.ratio",
                                                                                     "sampling"}


def test_with_the_file_the_paper_targets_start_from_tiny_images(tmp_path, monkeypatch):
    """tiny_images.bin present: the CIFAR stage-2 runs' contrastive starts, RATIO's out-batches and every CIFAR
    run's FID chains (the seed pool) come from 80M Tiny Images, and nothing else of a run changes; the
    RestrictedImageNet and ImageNet runs and the ablation pinned to CIFAR-100 starts keep theirs."""
    monkeypatch.chdir(tmp_path)
    write_tiny_images(tmp_path / TINY)
    plain, r = load(_without_if_present(_paper())), load(_paper())
    for run in r.runs:
        dataset, method = r.dataset_of(run), r.runs[run]["method"]
        ours, before = r.train_cfg(run), plain.train_cfg(run)
        aux = {"dat": "bce", "dat_cifar100": "bce", "ratio": "ratio"}.get(method)
        if dataset in ("cifar10", "cifar100") and aux and run != "cifar10_dat_ood_starts":
            assert ours["train"][aux] == {**before["train"][aux], "init": "ood", "ood_set": "tiny_images",
                                          "ood_images": 1000000}, run
            ours["train"][aux] = before["train"][aux]
        assert ours == before, run
        if dataset in ("cifar10", "cifar100"):
            assert r.chain_source(run) == "tiny_images", run
            assert r.run_sampling(run) == {**plain.run_sampling(run), "init": "ood", "ood_set": "tiny_images",
                                           "ood_images": 50000}
        else:
            assert r.run_sampling(run) == plain.run_sampling(run), run
    assert r.aux_block("cifar10_dat_ood_starts")["ood_set"] == "cifar100"  # if_present: null pins it
    labels = [row["label"] for row in r.table_spec("ablation_starts")["rows"]]
    assert labels == ["DAT (training starts: tiny_images)", "auxiliary OOD images (training starts: cifar100)"]
    assert [row["label"] for row in r.table_spec("table1")["rows"]][1] == "RATIO"  # the paper's set: no mark
    on = [line for line in r.left_out if line.startswith("if_present:")]
    assert len(on) == 6 and all(line.endswith(f"{TINY}/{TINY_IMAGES_FILE} is present") for line in on)


def test_without_the_file_labels_say_what_each_run_trained_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = load(_paper())
    labels = [row["label"] for row in r.table_spec("ablation_starts")["rows"]]
    assert labels == ["DAT (training starts: noise)", "auxiliary OOD images (training starts: cifar100)"]
    assert [row["label"] for row in r.table_spec("table1")["rows"]][1] == "RATIO (noise OOD)"


def test_if_present_applies_only_where_the_dataset_has_a_folder_for_its_set(tmp_path, monkeypatch):
    """A dataset without ood_roots.tiny_images (RestrictedImageNet here) keeps its blocks and prints nothing; an
    if_present block naming a set that is not read from a folder fails the schema, naming the key."""
    monkeypatch.chdir(tmp_path)
    config = _paper()
    config["methods"]["dat_rimagenet"]["bce"]["if_present"] = {"ood_set": "tiny_images", "ood_images": 5}
    r = load(copy.deepcopy(config))
    assert r.aux_block("rimagenet_dat")["ood_images"] == 100000
    assert not [line for line in r.left_out if "rimagenet" in line]
    config["methods"]["dat"]["bce"]["if_present"] = {"init": "ood", "ood_set": "noise"}
    with pytest.raises(ConfigError, match="methods.dat.bce.if_present.ood_set"):
        load(config)
