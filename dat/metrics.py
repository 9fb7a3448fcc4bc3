"""Evaluation metrics as pure functions of arrays: accuracy, ECE, AUROC, FID statistics, Inception Score, and
their 95% intervals.

FID's Frechet distance is clean-fid's (Parmar et al. 2022) implementation; AUROC is scikit-learn's; ECE follows
Guo et al. 2017; IS follows Salimans et al. 2016. Intervals come from scipy.stats: Wilson score intervals of
binomial proportions (``binomtest(...).proportion_ci``) and percentile bootstrap intervals (``bootstrap``);
FID's is a delete-a-group jackknife by astropy.stats (``jackknife_stats``).
"""

from __future__ import annotations

import numpy as np
import torch
from cleanfid.fid import frechet_distance as _cleanfid_frechet_distance
from sklearn.metrics import roc_auc_score


def accuracy(logits: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Fraction in [0, 1] of argmax predictions equal to ``y``. logits (N, K), y (N,) int."""
    logits, y = np.asarray(logits), np.asarray(y)
    return float((logits.argmax(1) == y).mean())


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict:
    """Expected calibration error over equal-width confidence bins (Guo et al. 2017).

    ECE = sum_b |acc_b - conf_b| * n_b / N, where bin b holds the examples whose confidence max_k probs[i, k]
    lies in (lower_b, upper_b] (the first bin also takes confidence 0).

    Args:
        probs: (N, K) float softmax probabilities (rows sum to 1).
        y: (N,) int true labels.
        n_bins: number of equal-width bins on [0, 1].

    Returns:
        ``ece`` (float in [0, 1]) and ``bins``: lists ``lower``, ``upper``, ``confidence`` (mean per bin, NaN when
        empty), ``accuracy`` (per bin, NaN when empty) and ``count``.

    Raises:
        ValueError: on mismatched shapes or n_bins < 1.
    """
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    if probs.ndim != 2 or len(probs) != len(y) or n_bins < 1:
        raise ValueError(f"probs must be (N, K) and y (N,), n_bins >= 1; got {probs.shape}, {y.shape}, {n_bins}")
    return _calibration_bins(*confidence_correct(probs, y), n_bins)


def confidence_correct(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-example inputs of the ECE: confidence max_k probs[i, k] (N,) float64 and correct (N,) float64 in
    {0, 1} (argmax prediction equal to ``y``), from probs (N, K) float and y (N,) int."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs.max(1), (probs.argmax(1) == np.asarray(y)).astype(np.float64)


def _calibration_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> dict:
    """:func:`expected_calibration_error` of per-example confidence (N,) and correct (N,) float64 arrays."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)  # (lower, upper]
    count = np.bincount(which, minlength=n_bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(which, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf_mean, acc_mean = conf_sum / count, acc_sum / count
    ece = float(np.sum(np.abs(acc_sum - conf_sum)) / len(correct))
    return {
        "ece": ece,
        "bins": {
            "lower": edges[:-1].tolist(), "upper": edges[1:].tolist(), "confidence": conf_mean.tolist(),
            "accuracy": acc_mean.tolist(), "count": count.astype(int).tolist(),
        },
    }


def auroc(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """Area under the ROC curve with in-distribution as the positive class (scikit-learn's roc_auc_score).

    Args:
        scores_in: (N_in,) scores of in-distribution inputs (higher = more in-distribution).
        scores_out: (N_out,) scores of OOD inputs.
    """
    scores_in, scores_out = np.asarray(scores_in, dtype=np.float64), np.asarray(scores_out, dtype=np.float64)
    labels = np.concatenate([np.ones(len(scores_in)), np.zeros(len(scores_out))])
    return float(roc_auc_score(labels, np.concatenate([scores_in, scores_out])))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D), float64, of features (N, D), as clean-fid computes them (N - 1 normalised)."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


class FeatureMoments:
    """Mean and covariance of features that arrive batch by batch, in O(D^2) memory (not O(N D)).

    Running float64 sums n, sum(x - c) and sum((x - c)(x - c)^T) about a shift c (the first batch's mean, so the
    cancellation in sum - n m m^T stays small); :meth:`statistics` gives what :func:`feature_statistics` gives on
    all rows at once (mean, N - 1 normalised covariance), equal to float64 rounding. Memory: two (D, D) float64
    arrays (32 MiB each for D = 2048) and the current batch.
    """

    def __init__(self):
        self.n, self.shift, self.sum, self.outer = 0, None, None, None

    def update(self, features: np.ndarray) -> None:
        """Add a batch of features (B, D), any float dtype (summed in float64); an empty batch changes nothing.

        Raises:
            ValueError: not 2-D, or a width D other than the first batch's.
        """
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or (self.shift is not None and features.shape[1] != len(self.shift)):
            raise ValueError(f"expected features (B, {'D' if self.shift is None else len(self.shift)}), "
                             f"got {features.shape}")
        if len(features) == 0:
            return
        if self.shift is None:
            d = features.shape[1]
            self.shift, self.sum, self.outer = features.mean(axis=0), np.zeros(d), np.zeros((d, d))
        centred = features - self.shift  # (B, D)
        self.n += len(features)
        self.sum += centred.sum(axis=0)
        self.outer += centred.T @ centred  # (D, D)

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (D,) and covariance (D, D), float64 (N - 1 normalised, as clean-fid's np.cov).

        Raises:
            ValueError: fewer than 2 features added (no covariance).
        """
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 features, got {self.n}")
        m = self.sum / self.n  # mean of x - c
        sigma = (self.outer - self.n * np.outer(m, m)) / (self.n - 1)
        return self.shift + m, (sigma + sigma.T) / 2  # symmetric to the last bit, as np.cov's


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017), by clean-fid.

    clean-fid's implementation adds a small diagonal offset when the product of covariances is singular (few
    samples), so it is finite for any sample count >= 2.
    """
    return float(_cleanfid_frechet_distance(mu1, sigma1, mu2, sigma2))


def fid_from_features(features: np.ndarray, mu_ref: np.ndarray, sigma_ref: np.ndarray) -> float:
    """FID (Heusel et al. 2017) of a feature set against reference statistics.

    FID = |mu - mu_ref|^2 + tr(sigma) + tr(sigma_ref) - 2 tr((sigma sigma_ref)^(1/2)). With N <= D samples (a few
    hundred samples against 2048-d Inception features, or the per-class sets of the counterfactual FID), sigma =
    A^T A / (N - 1) for the centred features A (N, D), and the non-zero eigenvalues of sigma sigma_ref are those of
    the symmetric PSD (N, N) matrix A sigma_ref A^T / (N - 1); the trace term is then the sum of their square roots,
    exact and O(N^2 D) instead of the O(D^3) matrix square root. With N > D it is clean-fid's ``frechet_distance``.

    Args:
        features: (N, D) float features, N >= 2.
        mu_ref: (D,) reference mean; sigma_ref: (D, D) reference covariance (PSD).

    Raises:
        ValueError: N < 2 (no covariance) or mismatched dimensions.
    """
    features = np.asarray(features, dtype=np.float64)
    n, d = features.shape
    if n < 2 or mu_ref.shape != (d,) or sigma_ref.shape != (d, d):
        raise ValueError(f"fid_from_features: need (N >= 2, D) features and (D,), (D, D) statistics; got {features.shape}, "
                         f"{mu_ref.shape}, {sigma_ref.shape}")
    mu, sigma = feature_statistics(features)
    if n > d:
        return frechet_distance(mu, sigma, mu_ref, sigma_ref)
    centred = features - mu
    small = centred @ sigma_ref @ centred.T / (n - 1)
    eigenvalues = np.linalg.eigvalsh((small + small.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    return float(np.sum((mu - mu_ref) ** 2) + np.trace(sigma) + np.trace(sigma_ref) - 2.0 * trace_sqrt)


def inception_score_from_probs(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016) of class probabilities, mean and std over ``splits`` splits.

    Split s holds rows [s N // splits, (s + 1) N // splits) (torch-fidelity's split boundaries; no shuffling here).
    For each split, IS_s = exp(mean_x KL(p(y|x) || p(y))) with p(y) the split's mean of p(y|x); the result is the
    mean and the population standard deviation (numpy's std, as torch-fidelity and Salimans et al.'s code) of the
    IS_s. Terms with p(y|x) = 0 contribute 0 (0 log 0 = 0). Uniform predictions give 1; one-hot predictions spread
    evenly over K classes within every split give K.

    Args:
        probs: (N, K) float probabilities, rows summing to 1.
        splits: number of splits, 1 <= splits <= N.

    Raises:
        ValueError: ``probs`` not (N, K), N < splits, or rows that are not probability distributions.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or splits < 1 or len(probs) < splits:
        raise ValueError(f"inception_score needs (N, K) probabilities with N >= splits >= 1 (at least {splits} "
                         f"samples), got {probs.shape}")
    if probs.min() < 0 or not np.allclose(probs.sum(1), 1.0, atol=1e-6):
        raise ValueError("inception_score_from_probs: rows must be probability distributions (non-negative, sum 1)")
    n, scores = len(probs), []
    for s in range(splits):
        part = probs[s * n // splits:(s + 1) * n // splits]
        marginal = part.mean(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(terms.sum(1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score(logits: np.ndarray, splits: int = 10, shuffle_seed: int | None = None) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016) of classifier logits: softmax, then :func:`inception_score_from_probs`.

    Args:
        logits: (N, K) logits; for the standard IS the TF Inception-v3 (2015-12-05) logits over its 1008 classes
            without the final bias (torch-fidelity's ``logits_unbiased``, the MatMul that Salimans et al.'s code reads).
        splits: number of splits (10 in the standard protocol).
        shuffle_seed: when not None, the rows are permuted by ``np.random.RandomState(shuffle_seed).permutation(N)``
            before splitting (torch-fidelity shuffles with seed 2020), so that samples ordered by class (conditional
            sampling writes y = arange(N) % K) do not bias the per-split marginals.

    Returns:
        (mean, std) over the splits.

    Raises:
        ValueError: when N < splits.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(logits) < splits:
        raise ValueError(f"inception_score needs at least {splits} samples of (N, K) logits, got {logits.shape}")
    if shuffle_seed is not None:
        logits = logits[np.random.RandomState(shuffle_seed).permutation(len(logits))]
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    return inception_score_from_probs(np.exp(logp), splits)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n (Wilson 1927), by scipy.stats.

    ``scipy.stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")``, without continuity
    correction: the interval of an accuracy measured on n test examples of which k are classified correctly.

    Args:
        k: successes, an integer count in [0, n] (count them; never round a fraction back to a count).
        n: trials, an integer >= 1.
        level: confidence level in (0, 1).

    Returns:
        (lo, hi), fractions with 0 <= lo <= k / n <= hi <= 1.

    Raises:
        ValueError: naming the value when n < 1, k is not an integer in [0, n], or level is not in (0, 1).
    """
    from scipy.stats import binomtest

    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise ValueError(f"wilson_interval: k and n must be integer counts, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n < 1:
        raise ValueError(f"wilson_interval: n must be >= 1, got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval: k must lie in [0, n={n}], got k={k}")
    _check_level(level)
    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def wilson_fields(prefix: str, k: int, n: int, level: float = 0.95) -> dict[str, float]:
    """``{prefix}_lo`` and ``{prefix}_hi``: :func:`wilson_interval` of the accuracy k / n, from the integer count k
    of correctly classified examples out of n (e.g. ``acc_clean_lo``, ``acc_clean_hi``)."""
    lo, hi = wilson_interval(k, n, level)
    return {f"{prefix}_lo": lo, f"{prefix}_hi": hi}


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must lie in (0, 1), got {level!r}")


def bootstrap_interval(data: tuple, statistic, *, paired: bool, rng: np.random.Generator, level: float = 0.95,
                       n_resamples: int = 1000) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` (Efron & Tibshirani 1993), by ``scipy.stats.bootstrap``.

    Each of ``n_resamples`` resamples draws every sample of ``data`` with replacement at its own size (``paired``:
    one index draw shared by all samples, which must then have one length); the interval is the
    ((1 - level) / 2, (1 + level) / 2) quantiles of the statistic over the resamples. The draws come from ``rng``
    alone (no global random state is read or advanced), so one seed gives one interval.

    Args:
        data: tuple of 1-D arrays, each (N_i,), of at least 2 elements.
        statistic: callable of the resampled arrays (in the order of ``data``) returning a float.
        paired: resample the arrays together (True) or independently (False).
        rng: the numpy Generator the resample indices are drawn from (it is advanced).
        level: confidence level in (0, 1).
        n_resamples: number of resamples, >= 1.

    Returns:
        (lo, hi) floats, lo <= hi.

    Raises:
        ValueError: level outside (0, 1), n_resamples < 1, or a sample of fewer than 2 elements.
    """
    from scipy.stats import bootstrap

    _check_level(level)
    if n_resamples < 1:
        raise ValueError(f"bootstrap_interval: n_resamples must be >= 1, got {n_resamples}")
    data = tuple(np.asarray(d) for d in data)
    if any(d.ndim != 1 or len(d) < 2 for d in data):
        raise ValueError(f"bootstrap_interval: samples must be 1-D of >= 2 elements, got {[d.shape for d in data]}")
    # batches of 100 resamples bound the memory of the index draws (n_resamples x N each)
    res = bootstrap(data, statistic, n_resamples=n_resamples, confidence_level=level, method="percentile",
                    paired=paired, vectorized=False, batch=100, rng=rng)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def auroc_interval(scores_in: np.ndarray, scores_out: np.ndarray, *, rng: np.random.Generator, level: float = 0.95,
                   n_resamples: int = 1000) -> tuple[float, float]:
    """Percentile bootstrap interval (:func:`bootstrap_interval`) of :func:`auroc`: the in-distribution and the OOD
    scores are resampled independently (two samples, each at its own size).

    Args:
        scores_in: (N_in,) float scores of in-distribution inputs (higher = more in-distribution), N_in >= 2.
        scores_out: (N_out,) float scores of OOD inputs, N_out >= 2.
        rng, level, n_resamples: as :func:`bootstrap_interval`.

    Returns:
        (lo, hi) in [0, 1].
    """
    return bootstrap_interval((np.asarray(scores_in, dtype=np.float64), np.asarray(scores_out, dtype=np.float64)),
                              auroc, paired=False, rng=rng, level=level, n_resamples=n_resamples)


def ece_interval(probs: np.ndarray, y: np.ndarray, n_bins: int = 15, *, rng: np.random.Generator,
                 level: float = 0.95, n_resamples: int = 1000) -> tuple[float, float]:
    """Percentile bootstrap interval (:func:`bootstrap_interval`) of the ECE of
    :func:`expected_calibration_error`: the pairs (confidence, correct) of the test examples are resampled
    together, the bins fixed.

    Args:
        probs: (N, K) float softmax probabilities, N >= 2; y: (N,) int labels; n_bins: equal-width bins.
        rng, level, n_resamples: as :func:`bootstrap_interval`.

    Returns:
        (lo, hi) in [0, 1].

    Raises:
        ValueError: as :func:`expected_calibration_error` and :func:`bootstrap_interval`.
    """
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    if probs.ndim != 2 or len(probs) != len(y) or n_bins < 1:
        raise ValueError(f"probs must be (N, K) and y (N,), n_bins >= 1; got {probs.shape}, {y.shape}, {n_bins}")
    return bootstrap_interval(confidence_correct(probs, y), lambda c, k: _calibration_bins(c, k, n_bins)["ece"],
                              paired=True, rng=rng, level=level, n_resamples=n_resamples)


class ResampledFID:
    """FID of row resamples of one feature set against fixed reference statistics, exact and fast.

    ``ResampledFID(features, mu_ref, sigma_ref)(idx)`` equals ``fid_from_features(features[idx], mu_ref,
    sigma_ref)`` (up to floating-point rounding) for any index array ``idx`` of length >= 2. The rows are first
    centred on their overall mean (the reference mean with them: FID is unchanged by a common shift). A resample
    with counts c_u of its U distinct rows x_u has mean m = sum_u c_u x_u / N and covariance
    sigma = A^T C A / (N - 1), A (U, D) the rows minus m, C = diag(c_u). With N <= D the non-zero eigenvalues of
    sigma sigma_ref are those of the symmetric (U, U) matrix C^(1/2) A sigma_ref A^T C^(1/2) / (N - 1), built from
    the precomputed (N, N) Gram matrix F sigma_ref F^T of the features F; with N > D those of the (D, D) matrix
    R sigma R, R = sigma_ref^(1/2) (from ``eigh`` once). Either way tr((sigma sigma_ref)^(1/2)) is the sum of the
    square roots of those eigenvalues (negative rounding clipped to 0): one ``eigvalsh`` of a U x U (U ~ 0.63 N)
    or D x D matrix per resample instead of a D x D matrix square root.

    Args:
        features: (N, D) float features, N >= 2.
        mu_ref: (D,) float reference mean; sigma_ref: (D, D) float reference covariance (symmetric PSD).

    Raises:
        ValueError: N < 2 or mismatched dimensions.
    """

    def __init__(self, features: np.ndarray, mu_ref: np.ndarray, sigma_ref: np.ndarray):
        features = np.asarray(features, dtype=np.float64)
        mu_ref, sigma_ref = np.asarray(mu_ref, dtype=np.float64), np.asarray(sigma_ref, dtype=np.float64)
        if features.ndim != 2 or len(features) < 2 or mu_ref.shape != features.shape[1:] \
                or sigma_ref.shape != (features.shape[1],) * 2:
            raise ValueError(f"ResampledFID: need (N >= 2, D) features and (D,), (D, D) statistics; got "
                             f"{features.shape}, {mu_ref.shape}, {sigma_ref.shape}")
        n, d = features.shape
        shift = features.mean(0)
        self.x = features - shift  # (N, D)
        self.mu_ref = mu_ref - shift  # (D,)
        self.trace_ref = float(np.trace(sigma_ref))
        self.sq_norms = np.einsum("nd,nd->n", self.x, self.x)  # (N,) |x_i|^2
        self.small = n <= d
        if self.small:
            self.gram_ref = self.x @ sigma_ref @ self.x.T  # (N, N) x_i^T sigma_ref x_j
        else:
            w, v = np.linalg.eigh((sigma_ref + sigma_ref.T) / 2)
            self.y = self.x @ (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T  # (N, D) rows x_i^T sigma_ref^(1/2)

    def __call__(self, idx: np.ndarray) -> float:
        """FID of the rows ``idx`` ((M,) int, M >= 2, repeats allowed) of the features."""
        idx = np.asarray(idx).astype(np.int64)
        m_total = len(idx)
        rows, counts = np.unique(idx, return_counts=True)  # (U,), (U,)
        c = counts.astype(np.float64)
        x = self.x[rows]  # (U, D)
        mean = c @ x / m_total  # (D,)
        trace = (c @ self.sq_norms[rows] - m_total * mean @ mean) / (m_total - 1)
        if self.small:
            g = self.gram_ref[np.ix_(rows, rows)]  # (U, U)
            a = g @ c / m_total  # (U,) x_u^T sigma_ref m
            s = c @ a / m_total  # m^T sigma_ref m
            root_c = np.sqrt(c)
            mat = (g - a[:, None] - a[None, :] + s) * root_c[:, None] * root_c[None, :] / (m_total - 1)  # (U, U)
        else:
            y = self.y[rows] - c @ self.y[rows] / m_total  # (U, D) centred rows times sigma_ref^(1/2)
            mat = (y * c[:, None]).T @ y / (m_total - 1)  # (D, D) sigma_ref^(1/2) sigma sigma_ref^(1/2)
        eigenvalues = np.linalg.eigvalsh((mat + mat.T) / 2)
        trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
        return float(np.sum((mean - self.mu_ref) ** 2) + trace + self.trace_ref - 2.0 * trace_sqrt)


FID_JACKKNIFE_METHOD = ("delete-a-group jackknife standard error (astropy.stats.jackknife_stats), normal interval "
                        "around the measured FID; reference statistics fixed")


def _jackknife(group_of_row: np.ndarray, n_groups: int, fid_of_rows, level: float) -> tuple[float, float]:
    """Delete-a-group jackknife (Efron & Tibshirani 1993, 11.5) of ``fid_of_rows(rows)``, by
    ``astropy.stats.jackknife_stats`` over the group ids: its replicate deleting group g is ``fid_of_rows`` of the
    rows whose group is not g. Returns (standard error, bias); NaN where a replicate is undefined."""
    from astropy.stats import jackknife_stats

    _check_level(level)

    def statistic(kept_groups: np.ndarray) -> float:  # astropy's replicates are float arrays of group ids
        return fid_of_rows(np.flatnonzero(np.isin(group_of_row, np.asarray(kept_groups).astype(np.int64))))

    _, bias, std_err, _ = jackknife_stats(np.arange(n_groups), statistic, confidence_level=level)
    return float(std_err), float(bias)


def _jackknife_fields(fid: float, std_err: float, bias: float, level: float, n_groups: int, seed: int) -> dict:
    from scipy.stats import norm

    z = float(norm.ppf((1.0 + level) / 2.0))
    lo, hi = (fid - z * std_err, fid + z * std_err) if np.isfinite(std_err) else (None, None)
    return {"fid": fid, "fid_lo": lo, "fid_hi": hi, "fid_jackknife_bias": float(bias) if np.isfinite(bias) else None,
            "fid_interval": {"method": FID_JACKKNIFE_METHOD, "level": level, "groups": int(n_groups), "seed": seed}}


def fid_jackknife(features: np.ndarray, mu_ref: np.ndarray, sigma_ref: np.ndarray, *, groups: int = 50,
                  level: float = 0.95, seed: int = 4000) -> dict:
    """FID of generated features against FIXED reference statistics with a delete-a-group jackknife interval.

    The N rows are split into G = min(N, groups) groups of near-equal size by a random permutation from
    ``numpy.random.default_rng(seed)`` (no global random state is read); each of the G replicates is the FID of the
    rows outside one group (:class:`ResampledFID`, weights 0/1 on the rows: exact, one small ``eigvalsh`` each), and
    ``astropy.stats.jackknife_stats`` gives their standard error se and bias. Unlike the bootstrap
    (:func:`bootstrap_interval` of :class:`ResampledFID`; tests/test_intervals.py pins its upward bias) a replicate
    holds distinct samples only, (G - 1) / G of them, so its small-sample bias is close to the measured FID's.

    The interval is fid +- z se, z = ``scipy.stats.norm.ppf((1 + level) / 2)``, centred on the measured FID and not
    on astropy's bias-corrected estimate (fid - bias): the tables print the measured FID, which is what every
    published FID is, so its interval must contain it; FID's small-sample bias (positive: FID falls with more
    samples) is reported separately as ``fid_jackknife_bias`` and by the FID floor. The reference statistics are
    held fixed, so the interval covers the sampling variation of the generated set only.

    Args:
        features: (N, D) float features of the generated samples, N >= 3.
        mu_ref: (D,) reference mean; sigma_ref: (D, D) reference covariance.
        groups: the number of groups asked for, >= 2 (G = min(N, groups)).
        level: confidence level in (0, 1); seed: seed of the group permutation.

    Returns:
        {"fid": :func:`fid_from_features`, "fid_lo", "fid_hi", "fid_jackknife_bias", "fid_interval": {"method",
        "level", "groups" (G), "seed"}}.

    Raises:
        ValueError: N < 3, groups < 2, level outside (0, 1), or mismatched dimensions.
    """
    features = np.asarray(features, dtype=np.float64)
    n = len(features)
    if n < 3 or groups < 2:
        raise ValueError(f"fid_jackknife: need N >= 3 samples and groups >= 2, got N={n}, groups={groups}")
    n_groups = min(n, int(groups))
    group_of_row = np.empty(n, dtype=np.int64)  # (N,)
    group_of_row[np.random.default_rng(seed).permutation(n)] = np.arange(n) % n_groups
    std_err, bias = _jackknife(group_of_row, n_groups, ResampledFID(features, mu_ref, sigma_ref), level)
    return _jackknife_fields(fid_from_features(features, mu_ref, sigma_ref), std_err, bias, level, n_groups, seed)


def class_mean_fid_jackknife(features: np.ndarray, labels: np.ndarray, ref_stats: dict, *, groups: int = 50,
                             level: float = 0.95, seed: int = 4000) -> dict:
    """Class-averaged FID (mean over classes of the FID of each class's rows against that class's reference
    statistics) with a delete-a-group jackknife interval whose groups are stratified by class.

    Classes with fewer than 2 rows have no FID and stay out of the mean (as in ``dat.eval_counterfactual``). Within
    each remaining class the rows get group ids 0, 1, ..., G - 1, 0, 1, ... in the order of a permutation from
    ``numpy.random.default_rng(seed)``, G = min(groups, the smallest class's row count), so every group holds rows of
    every class and each replicate deletes about 1/G of each class. A replicate leaving a class under 2 rows makes
    the standard error undefined: fid_lo, fid_hi are then None. Interval and fields as :func:`fid_jackknife`.

    Args:
        features: (N, D) float features; labels: (N,) int classes of the rows.
        ref_stats: class -> (mu (D,), sigma (D, D)) reference statistics, one entry per class of ``labels``.
        groups, level, seed: as :func:`fid_jackknife`.

    Returns:
        as :func:`fid_jackknife`, "fid" the class-averaged FID.

    Raises:
        ValueError: no class with 2 rows, groups < 2, or level outside (0, 1).
    """
    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    classes = [k for k in np.unique(labels) if (labels == k).sum() >= 2]
    if not classes or groups < 2:
        raise ValueError(f"class_mean_fid_jackknife: need a class of >= 2 rows and groups >= 2, got groups={groups}")
    rows_of = {k: np.flatnonzero(labels == k) for k in classes}
    fids = {k: ResampledFID(features[rows_of[k]], *ref_stats[k]) for k in classes}
    n_groups = min(int(groups), min(len(r) for r in rows_of.values()))
    rng = np.random.default_rng(seed)
    group_of_row = np.full(len(labels), -1, dtype=np.int64)  # (N,); -1: a row of a class left out
    for k in classes:
        group_of_row[rows_of[k][rng.permutation(len(rows_of[k]))]] = np.arange(len(rows_of[k])) % n_groups
    position = np.full(len(labels), -1, dtype=np.int64)  # (N,) row -> its index within its class
    for k in classes:
        position[rows_of[k]] = np.arange(len(rows_of[k]))

    def mean_fid(rows: np.ndarray) -> float:
        per_class = []
        for k in classes:
            mine = position[rows[labels[rows] == k]]
            per_class.append(fids[k](mine) if len(mine) >= 2 else float("nan"))
        return float(np.mean(per_class))

    if n_groups >= 2:
        std_err, bias = _jackknife(group_of_row, n_groups, mean_fid, level)
    else:
        std_err = bias = float("nan")
    fid = float(np.mean([fid_from_features(features[rows_of[k]], *ref_stats[k]) for k in classes]))
    return _jackknife_fields(fid, std_err, bias, level, n_groups, seed)
