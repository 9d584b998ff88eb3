"""Closed-form distances between a fitted Gaussian and the Gaussian reference P_r."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from mad_core.linalg import log_det


class GaussianReference:
    """The reference N(mean, cov).

    Args:
        mean: (d,); cov: (d, d) symmetric positive definite.
    """

    def __init__(self, mean: np.ndarray, cov: np.ndarray):
        self.mean, self.cov = mean, cov
        scale = cov[0, 0]
        # An isotropic reference (MAD's N(0, I)) lets every metric come from the
        # eigenvalues of Sigma_t alone: one eigvalsh per chain, no other O(d^3) work.
        self.isotropic_variance = scale if np.array_equal(cov, scale * np.eye(len(cov))) else None

    @cached_property
    def cov_sqrt(self) -> np.ndarray:
        """Symmetric square root (d, d)."""
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
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ covs @ root), 0.0, None)).sum(axis=-1)
    mean_part = ((means - reference.mean) ** 2).sum(axis=-1)
    trace_part = np.trace(covs, axis1=-2, axis2=-1) + np.trace(reference.cov) - 2.0 * cross
    return np.clip(mean_part + trace_part, 0.0, None)


def isotropic_metrics(mean_err_sq: np.ndarray, trace: np.ndarray, cov_eigenvalues: np.ndarray,
                      reference: GaussianReference) -> dict[str, np.ndarray]:
    """``gaussian_metrics`` against an isotropic reference R = v I, from the fitted
    Gaussians' mean errors and spectra alone: (R^1/2 S R^1/2)^1/2 then has trace
    sqrt(v) sum_i sqrt(eig_i(S)).

    Args:
        mean_err_sq: (C,) |mu_t - mu|^2; trace: (C,) tr Sigma_t;
        cov_eigenvalues: (C, d) eigenvalues of Sigma_t.
    """
    inner = reference.isotropic_variance * cov_eigenvalues
    cross = np.sqrt(np.clip(inner, 0.0, None)).sum(axis=-1)
    trace_part = trace + np.trace(reference.cov) - 2.0 * cross
    w2_sq = np.clip(mean_err_sq + trace_part, 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        logdet = np.where(cov_eigenvalues.min(axis=-1) > 0,
                          np.log(cov_eigenvalues).sum(axis=-1), -np.inf)
    return {"w2": np.sqrt(w2_sq), "w2_sq": w2_sq, "mean_err_sq": mean_err_sq,
            "trace": trace, "logdet": logdet}


def gaussian_metrics(means: np.ndarray, covs: np.ndarray,
                     reference: GaussianReference) -> dict[str, np.ndarray]:
    """Per-chain metrics of fitted Gaussians (C chains).

    Args:
        means: (C, d); covs: (C, d, d).
    Returns:
        arrays (C,): w2_sq and w2 (to the reference), mean_err_sq = |mu_t - mu|^2,
        trace = tr Sigma_t, logdet = log det Sigma_t (-inf when singular).
    """
    mean_err_sq = ((means - reference.mean) ** 2).sum(axis=-1)
    trace = np.trace(covs, axis1=-2, axis2=-1)
    if reference.isotropic_variance is not None:
        return isotropic_metrics(mean_err_sq, trace, np.linalg.eigvalsh(covs), reference)
    w2_sq = bures_w2_sq(means, covs, reference)
    return {"w2": np.sqrt(w2_sq), "w2_sq": w2_sq, "mean_err_sq": mean_err_sq,
            "trace": trace, "logdet": log_det(covs)}
