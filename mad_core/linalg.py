"""Batched linear algebra on covariance matrices, shared by models, simulators and metrics."""

from __future__ import annotations

import numpy as np


def psd_factor(cov: np.ndarray) -> np.ndarray:
    """A factor F with F @ F.T == cov for a batch of PSD matrices.

    Args:
        cov: (..., d, d) symmetric positive semi-definite.
    Returns:
        (..., d, d). Cholesky where it succeeds (fast); a symmetric square root from
        the eigendecomposition for singular matrices, which a self-consuming loop
        produces (a fit on n <= d points, or a collapsed covariance).
    """
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        pass
    flat = cov.reshape(-1, *cov.shape[-2:])
    factors = np.empty_like(flat)
    for i, matrix in enumerate(flat):
        try:
            factors[i] = np.linalg.cholesky(matrix)
        except np.linalg.LinAlgError:
            eigenvalues, eigenvectors = np.linalg.eigh(matrix)
            factors[i] = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
    return factors.reshape(cov.shape)


def log_det(cov: np.ndarray) -> np.ndarray:
    """log det of a batch (..., d, d) of PSD matrices; -inf where singular."""
    sign, logabsdet = np.linalg.slogdet(cov)
    return np.where(sign > 0, logabsdet, -np.inf)
