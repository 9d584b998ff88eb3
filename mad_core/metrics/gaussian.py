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


def bures_w2_sq(means: np.ndarray, covs: np.ndarray, reference: GaussianReference,
                cov_eigenvalues: np.ndarray | None = None) -> np.ndarray:
    """Squared 2-Wasserstein distance (Frechet distance) to the reference, batched.

    W2^2 = |mu - m|^2 + tr(S + R - 2 (R^1/2 S R^1/2)^1/2).

    Args:
        means: (C, d); covs: (C, d, d).
        cov_eigenvalues: (C, d) eigenvalues of covs, if already known (used when the
            reference is isotropic, R = v I: then (R^1/2 S R^1/2)^1/2 has trace
            sqrt(v) sum_i sqrt(eig_i(S))).
    Returns:
        (C,), clipped at 0 against round-off.
    """
    if reference.isotropic_variance is not None:
        if cov_eigenvalues is None:
            cov_eigenvalues = np.linalg.eigvalsh(covs)
        inner = reference.isotropic_variance * cov_eigenvalues
    else:
        root = reference.cov_sqrt
        inner = np.linalg.eigvalsh(root @ covs @ root)
    cross = np.sqrt(np.clip(inner, 0.0, None)).sum(axis=-1)
    mean_part = ((means - reference.mean) ** 2).sum(axis=-1)
    trace_part = np.trace(covs, axis1=-2, axis2=-1) + np.trace(reference.cov) - 2.0 * cross
    return np.clip(mean_part + trace_part, 0.0, None)


def gaussian_metrics(means: np.ndarray, covs: np.ndarray,
                     reference: GaussianReference) -> dict[str, np.ndarray]:
    """Per-chain metrics of fitted Gaussians (C chains).

    Args:
        means: (C, d); covs: (C, d, d).
    Returns:
        arrays (C,): w2_sq and w2 (to the reference), mean_err_sq = |mu_t - mu|^2,
        trace = tr Sigma_t, logdet = log det Sigma_t (-inf when singular).
    """
    if reference.isotropic_variance is not None:
        eigenvalues = np.linalg.eigvalsh(covs)
        with np.errstate(divide="ignore", invalid="ignore"):
            logdet = np.where(eigenvalues.min(axis=-1) > 0,
                              np.log(eigenvalues).sum(axis=-1), -np.inf)
    else:
        eigenvalues, logdet = None, log_det(covs)
    w2_sq = bures_w2_sq(means, covs, reference, eigenvalues)
    return {
        "w2": np.sqrt(w2_sq),
        "w2_sq": w2_sq,
        "mean_err_sq": ((means - reference.mean) ** 2).sum(axis=-1),
        "trace": np.trace(covs, axis1=-2, axis2=-1),
        "logdet": logdet,
    }
