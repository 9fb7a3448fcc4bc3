"""Evaluation metrics as pure functions of arrays: accuracy, ECE, AUROC, FID statistics, Inception Score.

FID's Frechet distance is clean-fid's (Parmar et al. 2022) implementation; AUROC is scikit-learn's; ECE follows
Guo et al. 2017; IS follows Salimans et al. 2016.
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
    confidence = probs.max(1)
    correct = (probs.argmax(1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)  # (lower, upper]
    count = np.bincount(which, minlength=n_bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(which, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf_mean, acc_mean = conf_sum / count, acc_sum / count
    ece = float(np.sum(np.abs(acc_sum - conf_sum)) / len(y))
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
