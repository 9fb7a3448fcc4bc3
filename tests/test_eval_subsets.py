"""Issue 21, items 2 and 4: the examples of the robust evaluations on class-sorted test splits (ImageNet's validation
folders), and the FID reference statistics streamed batch by batch."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dat.data import eval_subset, is_class_sorted, save_images
from dat.metrics import FeatureMoments, feature_statistics


def _sorted_labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


# -- the class-balanced subset -----------------------------------------------------------------------------------
def test_imagenet_like_split_gets_five_per_class_like_robustbench():
    y = _sorted_labels([50] * 1000)  # ImageNet's validation set: 1000 classes of 50, class by class
    index, record = eval_subset(y, [5000, 5000])
    assert record == {"rule": "class_balanced", "n_classes": 1000, "classes_covered": [1000, 1000]}
    assert np.bincount(y[index], minlength=1000).tolist() == [5] * 1000  # RobustBench's list: 5 per class
    assert len(np.unique(index)) == 5000 and index.dtype == np.int64
    for k in (0, 999):  # the first 5 images of each class, in file order
        assert sorted(index[y[index] == k].tolist()) == list(range(50 * k, 50 * k + 5))


def test_balanced_subset_covers_every_class_and_is_deterministic():
    y = _sorted_labels([7, 3, 12, 5, 9])
    first, record = eval_subset(y, [15, 10])
    again, _ = eval_subset(y.copy(), [15, 10])
    np.testing.assert_array_equal(first, again)
    assert np.bincount(y[first]).tolist() == [3, 3, 3, 3, 3]
    assert np.bincount(y[first[:10]]).tolist() == [2, 2, 2, 2, 2]  # each size is a balanced prefix
    assert record["classes_covered"] == [5, 5]


def test_remainder_goes_one_each_to_the_lowest_labels():
    y = _sorted_labels([4, 4, 4, 4])
    index, _ = eval_subset(y, [6])
    assert np.bincount(y[index], minlength=4).tolist() == [2, 2, 1, 1]


def test_unsorted_split_keeps_the_first_examples():
    y = np.array([3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6])  # the rehearsal's CIFAR-10 test labels
    assert not is_class_sorted(y)
    index, record = eval_subset(y, [12, 4])
    np.testing.assert_array_equal(index, np.arange(12))
    assert record["rule"] == "first_n" and record["classes_covered"] == [6, 3]


def test_whole_split_and_single_class_are_not_resampled():
    y = _sorted_labels([2, 30])  # unequal classes: all examples need no balance
    index, record = eval_subset(y, [32])
    assert sorted(index.tolist()) == list(range(32)) and record["classes_covered"] == [2]
    assert not is_class_sorted(np.zeros(10, np.int64))
    np.testing.assert_array_equal(eval_subset(np.zeros(10, np.int64), [4])[0], np.arange(4))


def test_too_few_examples_or_images_raise():
    y = _sorted_labels([5] * 13)
    with pytest.raises(ValueError, match="cannot cover the split's 13 classes"):
        eval_subset(y, [4])
    with pytest.raises(ValueError, match="class 1 has 2"):
        eval_subset(_sorted_labels([6, 2, 6]), [9])
    with pytest.raises(ValueError, match="must lie in"):
        eval_subset(y, [0])
    with pytest.raises(ValueError, match="must lie in"):
        eval_subset(y, [66])


def _fake_run(n_pgd, n_aa):
    ev = SimpleNamespace(batch_size=8, n_clean=None, weights="ema", intervals=SimpleNamespace(level=0.95),
                         pgd=SimpleNamespace(steps=1, step_size_factor=2.5, n_examples=n_pgd),
                         autoattack=SimpleNamespace(n_examples=n_aa, version="standard", batch_size=8))
    ds = SimpleNamespace(name="toy", threat_model=SimpleNamespace(norm="L2", eps=0.5, eps_str="0.5"))
    return SimpleNamespace(run="toy_at", seed=0, evaluate=ev, dataset=ds)


@pytest.mark.parametrize("sorted_split", [True, False])
def test_eval_robust_attacks_the_subset(tmp_path, monkeypatch, sorted_split):
    from dat import eval_robust

    rng = np.random.default_rng(0)
    y = _sorted_labels([6] * 5) if sorted_split else rng.permutation(_sorted_labels([6] * 5))
    x = rng.integers(0, 256, size=(len(y), 4, 4, 1), dtype=np.uint8)
    save_images(tmp_path / "test.npz", x, y)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5)).eval()
    seen = {}

    def fake_autoattack(model, x_aa, y_aa, **kw):
        seen["x"], seen["y"] = x_aa, y_aa
        return {"acc_robust": 0.0, "n_correct_robust": 0, "n_correct_clean": len(y_aa)}

    monkeypatch.setattr(eval_robust, "load_run_model", lambda args, device: (_fake_run(10, 5), model, {}))
    monkeypatch.setattr(eval_robust, "autoattack_accuracy", fake_autoattack)
    monkeypatch.setattr(eval_robust, "checkpoint_record", lambda *a: {})
    out = tmp_path / "robust.json"
    eval_robust.main(["--config", "run.json", "--model", "model.pt", "--data", str(tmp_path / "test.npz"),
                      "--out", str(out), "--device", "cpu"])
    result = json.loads(out.read_text())
    if sorted_split:  # today's prefix would be 5 images of class 0
        assert sorted(seen["y"].tolist()) == [0, 1, 2, 3, 4]
        assert result["subset"] == {"rule": "class_balanced", "n_classes": 5,
                                    "classes_covered": {"pgd": 5, "autoattack": 5}}
    else:  # unchanged: the first examples, the same tensors as before
        assert seen["y"].tolist() == y[:5].tolist()
        torch.testing.assert_close(seen["x"], torch.from_numpy(x[:5]).permute(0, 3, 1, 2).float() / 255, rtol=0, atol=0)
        assert result["subset"]["rule"] == "first_n"


# -- streamed FID reference statistics ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 7, 128, 999])
def test_streamed_moments_equal_the_direct_ones(batch):
    rng = np.random.default_rng(1)
    # Inception-like: non-negative, mean well above the spread (the case where naive sums cancel)
    features = rng.gamma(2.0, 0.2, size=(1000, 48)) + 3.0
    moments = FeatureMoments()
    for start in range(0, len(features), batch):
        moments.update(features[start:start + batch].astype(np.float32 if batch == 7 else np.float64))
    mu, sigma = moments.statistics()
    direct = features.astype(np.float32).astype(np.float64) if batch == 7 else features
    mu_ref, sigma_ref = feature_statistics(direct)
    assert moments.n == 1000 and mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, np.mean(direct, axis=0), rtol=1e-13, atol=0)
    np.testing.assert_allclose(sigma, np.cov(direct, rowvar=False), rtol=0, atol=1e-12 * np.abs(sigma_ref).max())
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-13, atol=0)
    np.testing.assert_array_equal(sigma, sigma.T)


def test_moments_errors_and_empty_batches():
    moments = FeatureMoments()
    moments.update(np.zeros((0, 4)))
    moments.update(np.ones((1, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        moments.statistics()
    with pytest.raises(ValueError, match="expected features"):
        moments.update(np.ones((3, 5)))


class _FakeExtractor:
    """Features from pixels (float32 values, as the network's), in batches only: no whole-split call."""

    name = "fake"

    def __init__(self):
        self.batch_sizes = []

    @staticmethod
    def features(images):
        flat = np.asarray(images, np.float32).reshape(len(images), -1) / 255  # (B, 16)
        return (np.tile(flat, (1, 128)) * np.linspace(1, 2, 2048)).astype(np.float32).astype(np.float64)  # (B, 2048)

    def batches(self, images, batch_size=None):
        for start in range(0, len(images), batch_size):
            self.batch_sizes.append(len(images[start:start + batch_size]))
            yield self.features(images[start:start + batch_size])


@pytest.mark.parametrize("keep_max", [1000, 10])
def test_fid_ref_streams_the_features(tmp_path, monkeypatch, keep_max):
    from dat import fid_ref

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(40, 4, 4, 1), dtype=np.uint8)
    y = np.repeat(np.arange(4), 10)
    save_images(tmp_path / "train.npz", x, y)
    fake = _FakeExtractor()
    monkeypatch.setattr(fid_ref, "load_feature_extractor", lambda kind, device: fake)
    out = tmp_path / "fid_ref.npz"
    fid_ref.main(["--data", str(tmp_path / "train.npz"), "--out", str(out), "--meta-out", str(tmp_path / "ref.json"),
                  "--batch-size", "16", "--keep-features-max", str(keep_max), "--device", "cpu"])
    assert fake.batch_sizes == [16, 16, 8]  # larger than one batch, streamed
    direct = _FakeExtractor.features(x)
    with np.load(out) as ref:
        np.testing.assert_allclose(ref["mu"], direct.mean(0), rtol=1e-13, atol=0)
        np.testing.assert_allclose(ref["sigma"], np.cov(direct, rowvar=False), rtol=0,
                                   atol=1e-12 * np.abs(ref["sigma"]).max())
        np.testing.assert_array_equal(ref["labels"], y)
        if keep_max >= len(x):  # exact float32 copies of the features: the counterfactual reads them per class
            assert ref["features"].dtype == np.float32
            np.testing.assert_array_equal(ref["features"].astype(np.float64), direct)
        else:
            assert "features" not in ref
    assert json.loads((tmp_path / "ref.json").read_text())["features_stored"] == (keep_max >= len(x))


def test_feature_extractor_batches_match_the_whole_call():
    from dat.inception import FeatureExtractor

    def network(x):  # (B, 3, 299, 299) -> (B, 2048) float32
        return x.mean(dim=(2, 3)).repeat(1, 683)[:, :2048]

    extractor = FeatureExtractor(network, "toy", "shipped")
    images = np.random.default_rng(3).integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
    parts = list(extractor.batches(images, batch_size=2))
    assert [len(p) for p in parts] == [2, 2, 1] and parts[0].dtype == np.float64
    np.testing.assert_array_equal(np.concatenate(parts), extractor(images, batch_size=5)["features"])
