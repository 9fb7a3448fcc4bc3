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


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over ``splits`` splits.

    Args:
        logits: (N, K) classifier logits (the Inception network's for the standard IS).
        splits: number of equal splits.

    Raises:
        ValueError: when N < splits.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if len(logits) < splits:
        raise ValueError(f"inception_score needs at least {splits} samples, got {len(logits)}")
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    scores = []
    for part in np.array_split(logp, splits):
        p = np.exp(part)
        log_marginal = np.log(p.mean(0) + 1e-12)
        scores.append(np.exp(np.mean(np.sum(p * (part - log_marginal), axis=1))))
    return float(np.mean(scores)), float(np.std(scores))
