"""Batched linear algebra on covariance matrices, shared by models, simulators and metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.linalg import blas, lapack


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


def tridiagonalize(vectors: np.ndarray, matrices: np.ndarray | None = None,
                   roots: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Householder tridiagonalization S = Q T Q^T of a batch of symmetric matrices
    S = matrices + sum_i roots_i roots_i^T.

    Each chain's S is summed (BLAS syrk) and reduced while it is in cache: forming the
    products and sums as (C, d, d) arrays first costs as much again in passes over
    memory. The reduction is the first step of LAPACK's symmetric eigensolvers, so T
    costs about as much as the eigenvalues.

    Args:
        vectors: (C, d), one per matrix.
        matrices: (C, d, d) symmetric, or None for none.
        roots: each (C, d, k_i).
    Returns:
        diagonal (C, d) and off-diagonal (C, d - 1) of the tridiagonal T, and Q^T v
        (C, d): each vector in the basis where its matrix is T.
    """
    chains, dim = vectors.shape
    diagonal, off_diagonal = np.empty((chains, dim)), np.empty((chains, dim - 1))
    rotated = vectors.copy()
    workspace = max(int(lapack.dsytrd_lwork(dim)[0]), dim)
    for chain in range(chains):
        # Fortran order throughout, as LAPACK reads: a root's transpose is its
        # Fortran-ordered view, and only the lower triangle of S is formed and read.
        total = (np.zeros((dim, dim), order="F") if matrices is None
                 else np.array(matrices[chain], order="F"))
        for root in roots:
            total = blas.dsyrk(1.0, root[chain].T, beta=1.0, c=total, trans=1, lower=1,
                               overwrite_c=1)
        reflectors, diagonal[chain], off_diagonal[chain], tau, _ = lapack.dsytrd(
            total, lower=1, lwork=workspace, overwrite_a=1)
        if dim > 1:  # else Q = 1
            # With lower=1, Q = diag(1, Q') where Q' is the QR-style product of the
            # reflectors stored below the subdiagonal (what LAPACK's dormtr applies).
            rotated[chain, 1:] = lapack.dormqr("L", "T", reflectors[1:, :-1], tau,
                                               rotated[chain, 1:, None], workspace)[0][:, 0]
    return diagonal, off_diagonal, rotated


def tridiagonal_eigenvalues(diagonal: np.ndarray, off_diagonal: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues (C, d) of symmetric tridiagonal matrices given by their
    diagonal (C, d) and off-diagonal (C, d - 1)."""
    if diagonal.shape[1] == 1:  # scipy's dsterf refuses an empty off-diagonal
        return diagonal.copy()
    return np.stack([lapack.dsterf(main, off)[0] for main, off in zip(diagonal, off_diagonal)])


def tridiagonal_matrices(diagonal: np.ndarray, off_diagonal: np.ndarray) -> np.ndarray:
    """The dense (C, d, d) symmetric tridiagonal matrices of diagonal (C, d) and
    off-diagonal (C, d - 1)."""
    chains, dim = diagonal.shape
    matrices = np.zeros((chains, dim, dim))
    index = np.arange(dim)
    matrices[:, index, index] = diagonal
    matrices[:, index[1:], index[:-1]] = off_diagonal
    matrices[:, index[:-1], index[1:]] = off_diagonal
    return matrices


def tridiagonal_cholesky(diagonal: np.ndarray, off_diagonal: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower-bidiagonal Cholesky factors B (B B^T = T) of symmetric tridiagonal T.

    Args:
        diagonal: (C, d); off_diagonal: (C, d - 1).
    Returns:
        diagonal (C, d) and subdiagonal (C, d - 1) of B, and (C,) whether T is
        positive definite (B is meaningless where it is not).
    """
    pivots = np.empty_like(diagonal)  # of T = L D L^T; B = L D^1/2
    pivots[:, 0] = diagonal[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(1, diagonal.shape[1]):
            pivots[:, i] = diagonal[:, i] - off_diagonal[:, i - 1] ** 2 / pivots[:, i - 1]
        positive = (pivots > 0).all(axis=1)
        root = np.sqrt(pivots)
        return root, off_diagonal / root[:, :-1], positive
