"""Closed-form distances between a fitted Gaussian and the Gaussian reference P_r."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mad_core.linalg import log_det


@dataclass(frozen=True)
class GaussianReference:
    """The reference N(mean, cov); ``cov_sqrt`` is its symmetric square root."""

    mean: np.ndarray  # (d,)
    cov: np.ndarray  # (d, d)

    @property
    def cov_sqrt(self) -> np.ndarray:
        eigenvalues, eigenvectors = np.linalg.eigh(self.cov)
        return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def bures_w2_sq(means: np.ndarray, covs: np.ndarray, reference: GaussianReference) -> np.ndarray:
    """Squared 2-Wasserstein distance (Frechet distance) to the reference, batched.

    W2^2 = |mu - m|^2 + tr(S + R - 2 (R^1/2 S R^1/2)^1/2).

    Args:
        means: (C, d); covs: (C, d, d).
    Returns:
        (C,), clipped at 0 against round-off.
    """
    root = reference.cov_sqrt
    inner = np.linalg.eigvalsh(root @ covs @ root)
    cross = np.sqrt(np.clip(inner, 0.0, None)).sum(axis=-1)
    mean_part = ((means - reference.mean) ** 2).sum(axis=-1)
    trace_part = np.trace(covs, axis1=-2, axis2=-1) + np.trace(reference.cov) - 2.0 * cross
    return np.clip(mean_part + trace_part, 0.0, None)


def gaussian_metrics(means: np.ndarray, covs: np.ndarray,
                     reference: GaussianReference) -> dict[str, np.ndarray]:
    """Per-chain metrics of fitted Gaussians (C chains).

    Returns arrays (C,): w2_sq and w2 (to the reference), mean_err_sq = |mu_t - mu|^2,
    trace = tr Sigma_t, logdet = log det Sigma_t (-inf when singular).
    """
    w2_sq = bures_w2_sq(means, covs, reference)
    return {
        "w2": np.sqrt(w2_sq),
        "w2_sq": w2_sq,
        "mean_err_sq": ((means - reference.mean) ** 2).sum(axis=-1),
        "trace": np.trace(covs, axis1=-2, axis2=-1),
        "logdet": log_det(covs),
    }
