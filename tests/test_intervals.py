"""Intervals of the single-run numbers (issue 22): Wilson intervals and percentile bootstrap intervals against
scipy.stats on known cases, and the exact resampled FID against dat.metrics.fid_from_features."""

import dataclasses

import numpy as np
import pytest
from scipy.stats import binomtest, bootstrap

from dat import config as cfg_lib
from dat.metrics import (ResampledFID, auroc, auroc_interval, bootstrap_interval, class_mean_fid_jackknife,
                         ece_interval, expected_calibration_error, fid_from_features, fid_jackknife,
                         wilson_fields, wilson_interval)


@pytest.mark.parametrize("k, n, want", [
    # Wilson (1927) score interval without continuity correction, z = 1.959964 (values computed by hand from the
    # closed form (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n))
    (45, 150, (0.232408, 0.377580)),
    (0, 10, (0.0, 0.277533)),
    (10, 10, (0.722467, 1.0)),
    (1, 1, (0.206549, 1.0)),
])
def test_wilson_interval_known_values(k, n, want):
    lo, hi = wilson_interval(k, n)
    assert (lo, hi) == pytest.approx(want, abs=1e-6)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert (lo, hi) == (ci.low, ci.high)
    assert lo <= k / n <= hi


def test_wilson_interval_level_and_fields():
    narrow, wide = wilson_interval(45, 150, 0.5), wilson_interval(45, 150, 0.99)
    assert wide[0] < narrow[0] < 0.3 < narrow[1] < wide[1]
    assert wilson_fields("acc_robust", 45, 150) == {"acc_robust_lo": wilson_interval(45, 150)[0],
                                                    "acc_robust_hi": wilson_interval(45, 150)[1]}


@pytest.mark.parametrize("k, n, message", [
    (1, 0, "n must be >= 1, got n=0"),
    (-1, 10, r"k must lie in \[0, n=10\], got k=-1"),
    (11, 10, r"k must lie in \[0, n=10\], got k=11"),
    (4.5, 10, "integer counts, got k=4.5"),
])
def test_wilson_interval_rejects_bad_counts(k, n, message):
    with pytest.raises(ValueError, match=message):
        wilson_interval(k, n)
    with pytest.raises(ValueError, match="confidence level"):
        wilson_interval(1, 2, level=1.0)


def test_bootstrap_interval_is_scipys_percentile_interval():
    x = np.random.default_rng(0).normal(size=40)
    lo, hi = bootstrap_interval((x,), np.mean, paired=False, rng=np.random.default_rng(7), n_resamples=500)
    ref = bootstrap((x,), np.mean, n_resamples=500, method="percentile", batch=100, rng=np.random.default_rng(7))
    assert (lo, hi) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-12)
    assert lo < x.mean() < hi
    other = bootstrap_interval((x,), np.mean, paired=False, rng=np.random.default_rng(8), n_resamples=500)
    assert other != (lo, hi)  # the seed matters


def test_bootstrap_leaves_the_global_random_state_alone():
    np.random.seed(3)
    before = np.random.get_state()[1].copy()
    bootstrap_interval((np.arange(10.0),), np.mean, paired=False, rng=np.random.default_rng(0), n_resamples=100)
    assert (np.random.get_state()[1] == before).all()


def test_auroc_interval_matches_scipy_with_sklearn_auroc():
    rng = np.random.default_rng(1)
    s_in, s_out = rng.normal(1.0, 1.0, 60), rng.normal(0.0, 1.0, 40)
    lo, hi = auroc_interval(s_in, s_out, rng=np.random.default_rng(5), n_resamples=300)
    ref = bootstrap((s_in, s_out), auroc, n_resamples=300, method="percentile", paired=False, vectorized=False, batch=100,
                    rng=np.random.default_rng(5))
    assert (lo, hi) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-12)
    assert 0 <= lo < auroc(s_in, s_out) < hi <= 1


def test_ece_interval_matches_scipy_with_the_ece_of_the_probabilities():
    rng = np.random.default_rng(2)
    probs, y = rng.dirichlet(np.ones(3), 80), rng.integers(0, 3, 80)
    lo, hi = ece_interval(probs, y, 5, rng=np.random.default_rng(9), n_resamples=200)
    naive = lambda idx: expected_calibration_error(probs[idx], y[idx], 5)["ece"]  # noqa: E731
    ref = bootstrap((np.arange(80),), naive, n_resamples=200, method="percentile", paired=True, vectorized=False, batch=100,
                    rng=np.random.default_rng(9))
    assert (lo, hi) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-12)
    assert lo < expected_calibration_error(probs, y, 5)["ece"] < hi
    with pytest.raises(ValueError, match="probs must be"):
        ece_interval(probs, y[:-1], 5, rng=np.random.default_rng(0))


def _features(n, d, seed):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    ref = np.abs(rng.standard_normal((4 * d, d)) @ mix + 0.5)
    gen = np.abs(rng.standard_normal((n, d)) @ mix + 0.6)
    return gen, ref.mean(0), np.cov(ref, rowvar=False)


@pytest.mark.parametrize("n, d", [(20, 64), (64, 64), (200, 16), (40, 8)])  # n <= d: (U, U) form; n > d: (D, D)
def test_resampled_fid_equals_fid_from_features(n, d):
    gen, mu, sigma = _features(n, d, seed=n + d)
    fid = ResampledFID(gen, mu, sigma)
    assert fid(np.arange(n)) == pytest.approx(fid_from_features(gen, mu, sigma), rel=1e-8)
    # resamples with repeated rows: the reference's (N, N) matrix then has N - U + 1 zero eigenvalues whose rounding
    # errors (~1e-16) enter the trace as square roots (~1e-8 each), hence the looser tolerance
    for seed in range(3):
        idx = np.random.default_rng(seed).integers(0, n, n)
        assert fid(idx) == pytest.approx(fid_from_features(gen[idx], mu, sigma), rel=1e-6)
    assert fid(np.arange(n // 2)) == pytest.approx(fid_from_features(gen[: n // 2], mu, sigma), rel=1e-8)


def test_resampled_fid_rejects_mismatched_statistics():
    gen, mu, sigma = _features(10, 8, seed=0)
    with pytest.raises(ValueError, match="ResampledFID"):
        ResampledFID(gen, mu[:-1], sigma)
    with pytest.raises(ValueError, match="ResampledFID"):
        ResampledFID(gen[:1], mu, sigma)


@pytest.mark.parametrize("n, d", [(30, 64), (120, 8)])
def test_resampled_fid_bootstrap_matches_scipy_with_the_naive_fid(n, d):
    gen, mu, sigma = _features(n, d, seed=1)
    lo, hi = bootstrap_interval((np.arange(n),), ResampledFID(gen, mu, sigma), paired=False,
                                rng=np.random.default_rng(4), n_resamples=100)
    naive = lambda idx: fid_from_features(gen[idx], mu, sigma)  # noqa: E731
    ref = bootstrap((np.arange(n),), naive, n_resamples=100, method="percentile", vectorized=False, batch=100,
                    rng=np.random.default_rng(4))
    assert (lo, hi) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-6)
    assert lo < hi


def test_fid_bootstrap_is_biased_upwards_with_fewer_samples_than_dimensions():
    """Why the FID's interval is a jackknife, not a bootstrap: a resample repeats rows (about 63% distinct), and
    FID's small-sample bias grows as the distinct samples shrink, so with N < D the percentile interval lies above
    the FID of the samples themselves (here by far more than its width)."""
    gen, mu, sigma = _features(60, 128, seed=2)
    lo, hi = bootstrap_interval((np.arange(60),), ResampledFID(gen, mu, sigma), paired=False,
                                rng=np.random.default_rng(0), n_resamples=100)
    point = fid_from_features(gen, mu, sigma)
    assert point < lo and lo - point > hi - lo
    jk = fid_jackknife(gen, mu, sigma, groups=20, seed=0)
    assert jk["fid_lo"] < point < jk["fid_hi"]


def test_fid_jackknife_equals_a_direct_delete_a_group_computation():
    from astropy.stats import jackknife_resampling
    from scipy.stats import norm

    n, d, groups, seed = 24, 16, 6, 3
    gen, mu, sigma = _features(n, d, seed=5)
    jk = fid_jackknife(gen, mu, sigma, groups=groups, seed=seed)
    group_of_row = np.empty(n, dtype=int)
    group_of_row[np.random.default_rng(seed).permutation(n)] = np.arange(n) % groups
    reps = np.array([fid_from_features(gen[np.isin(group_of_row, kept.astype(int))], mu, sigma)
                     for kept in jackknife_resampling(np.arange(groups))])  # (G,) leave-one-group-out FIDs
    point = fid_from_features(gen, mu, sigma)
    se = np.sqrt((groups - 1) * np.var(reps))
    z = norm.ppf(0.975)
    assert jk["fid"] == point
    assert (jk["fid_lo"], jk["fid_hi"]) == pytest.approx((point - z * se, point + z * se), rel=1e-8)
    assert jk["fid_jackknife_bias"] == pytest.approx((groups - 1) * (reps.mean() - point), rel=1e-6)
    assert jk["fid_interval"] == {"method": "delete-a-group jackknife standard error (astropy.stats.jackknife_stats), "
                                            "normal interval around the measured FID; reference statistics fixed",
                                  "level": 0.95, "groups": groups, "seed": seed}
    assert fid_jackknife(gen, mu, sigma, groups=100, seed=seed)["fid_interval"]["groups"] == n  # G = min(N, groups)
    with pytest.raises(ValueError, match="fid_jackknife"):
        fid_jackknife(gen, mu, sigma, groups=1)


def test_fid_jackknife_is_seeded_and_narrower_with_more_samples():
    gen, mu, sigma = _features(400, 32, seed=7)
    state = np.random.get_state()[1].copy()
    small = fid_jackknife(gen[:100], mu, sigma, groups=20, seed=1)
    assert small == fid_jackknife(gen[:100], mu, sigma, groups=20, seed=1)
    assert np.array_equal(np.random.get_state()[1], state)  # no global random state used
    assert small["fid_lo"] != fid_jackknife(gen[:100], mu, sigma, groups=20, seed=2)["fid_lo"]
    large = fid_jackknife(gen, mu, sigma, groups=20, seed=1)
    for r in (small, large):
        assert r["fid_lo"] < r["fid"] < r["fid_hi"] and r["fid_jackknife_bias"] > 0
    assert large["fid_hi"] - large["fid_lo"] < 0.75 * (small["fid_hi"] - small["fid_lo"])


def test_class_mean_fid_jackknife_groups_are_stratified_by_class(monkeypatch):
    rng = np.random.default_rng(0)
    gen, mu, sigma = _features(90, 16, seed=8)
    labels = rng.permutation(np.repeat([0, 1, 2, 3], [30, 25, 34, 1]))  # class 3: one row, no FID, left out
    ref = {k: (mu + k, sigma) for k in range(4)}
    seen = []
    import dat.metrics as metrics

    real = metrics._jackknife

    def spy(group_of_row, n_groups, fid_of_rows, level):
        seen.append((group_of_row.copy(), n_groups))
        return real(group_of_row, n_groups, fid_of_rows, level)

    monkeypatch.setattr(metrics, "_jackknife", spy)
    jk = class_mean_fid_jackknife(gen, labels, ref, groups=10, seed=4)
    (group_of_row, n_groups), = seen
    assert n_groups == 10 and np.all(group_of_row[labels == 3] == -1)
    for g in range(n_groups):  # every group holds rows of every class with a FID
        assert set(labels[group_of_row == g]) == {0, 1, 2}
    assert jk["fid"] == pytest.approx(np.mean([fid_from_features(gen[labels == k], *ref[k]) for k in range(3)]),
                                      rel=1e-12)
    assert jk["fid_lo"] < jk["fid"] < jk["fid_hi"]
    assert jk == class_mean_fid_jackknife(gen, labels, ref, groups=10, seed=4)
    # a class of 2 rows: a replicate leaves it 1 row, so the interval is undefined
    two = class_mean_fid_jackknife(gen[:12], np.array([0] * 10 + [1] * 2), ref, groups=10, seed=0)
    assert two["fid_lo"] is None and two["fid_hi"] is None and two["fid_interval"]["groups"] == 2


@pytest.mark.slow
def test_fid_jackknife_cost_at_the_paper_scale():
    """n=500 samples of 2048-d features, G=50 (the schema default): the cost quoted in the schema."""
    import time

    gen, mu, sigma = _features(500, 2048, seed=9)
    t0 = time.perf_counter()
    fid_jackknife(gen, mu, sigma, groups=50, seed=0)
    print(f"fid_jackknife n=500 d=2048 G=50: {time.perf_counter() - t0:.2f} s")


def test_interval_config_defaults_come_from_the_schema():
    props = cfg_lib.schema_properties("IntervalConfig")
    iv = cfg_lib.EvaluateConfig().intervals
    assert set(props) == {f.name for f in dataclasses.fields(iv)}
    assert dataclasses.asdict(iv) == {k: v["default"] for k, v in props.items()} == \
        {"level": 0.95, "n_resamples": 1000, "seed": 4000, "fid_groups": 50}
    assert cfg_lib.EvaluateConfig.from_dict({"intervals": {"n_resamples": 200}}).intervals.n_resamples == 200
    with pytest.raises(ValueError, match="evaluate.intervals.levels"):
        cfg_lib.EvaluateConfig.from_dict({"intervals": {"levels": 0.9}})


def test_validation_fills_the_interval_defaults():
    """The workflow's validation (the default-setting validator of dat.resolve.validate) writes the block into a
    config that leaves it out, so run.json records the interval settings."""
    from dat.resolve import _default_setting_validator

    schema = cfg_lib.load_schema()["properties"]["evaluate"]
    evaluate = {key: {} for key in schema["required"]}
    _default_setting_validator()(schema).validate(evaluate)
    assert evaluate["intervals"] == {"level": 0.95, "n_resamples": 1000, "seed": 4000, "fid_groups": 50}
    with pytest.raises(Exception, match="less than or equal|greater than"):
        _default_setting_validator()(schema).validate({**evaluate, "intervals": {"level": 1.5}})
