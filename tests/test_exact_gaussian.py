"""The pieces of the exact Gaussian simulator: the tridiagonal linear algebra, the
bidiagonal sampling factor, and fits in a changed basis against fits in the original one."""

import numpy as np
import pytest

from mad_core.exact_gaussian import Bidiagonal, ExactGaussianSimulator, draw_stats
from mad_core.linalg import (tridiagonal_cholesky, tridiagonal_eigenvalues, tridiagonal_matrices,
                             tridiagonalize)
from mad_core.metrics.gaussian import GaussianReference, bures_w2_sq, gaussian_metrics
from mad_core.spec import resolve_spec


def wishart_like(chains, dim, points, rng):
    """(chains, dim, dim) scatters of `points` standard normal points (singular if
    points < dim)."""
    x = rng.standard_normal((chains, dim, points))
    return x @ np.swapaxes(x, -1, -2)


def test_tridiagonalize_keeps_spectra_and_rotates_vectors_consistently():
    rng = np.random.default_rng(0)
    matrices = wishart_like(5, 7, 10, rng)
    v, w = rng.standard_normal((2, 5, 7))
    diagonal, off_diagonal, rotated_v = tridiagonalize(v, matrices)
    _, _, rotated_w = tridiagonalize(w, matrices)
    tridiagonal = tridiagonal_matrices(diagonal, off_diagonal)
    np.testing.assert_allclose(tridiagonal_eigenvalues(diagonal, off_diagonal),
                               np.linalg.eigvalsh(matrices), rtol=1e-12)
    # S = Q T Q^T: v^T S w = (Q^T v)^T T (Q^T w) for every pair of vectors.
    np.testing.assert_allclose(np.einsum("ci,cij,cj->c", rotated_v, tridiagonal, rotated_w),
                               np.einsum("ci,cij,cj->c", v, matrices, w), rtol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(rotated_v, axis=1), np.linalg.norm(v, axis=1))


def test_tridiagonalize_sums_roots_as_their_products():
    """S = matrices + sum_i R_i R_i^T, given whole or as roots: the same reduction."""
    rng = np.random.default_rng(5)
    matrix = wishart_like(4, 6, 8, rng)
    roots = [rng.standard_normal((4, 6, 6)), rng.standard_normal((4, 6, 1))]
    whole = matrix + sum(root @ np.swapaxes(root, -1, -2) for root in roots)
    v = rng.standard_normal((4, 6))
    for given, expected in zip(tridiagonalize(v, matrix, roots), tridiagonalize(v, whole)):
        np.testing.assert_allclose(given, expected, rtol=1e-10, atol=1e-12)
    for given, expected in zip(tridiagonalize(v, roots=roots),
                               tridiagonalize(v, whole - matrix)):
        np.testing.assert_allclose(given, expected, rtol=1e-10, atol=1e-12)


def test_tridiagonal_cholesky_factors_and_flags_singular_matrices():
    rng = np.random.default_rng(1)
    matrices = np.concatenate([wishart_like(3, 6, 9, rng), wishart_like(2, 6, 4, rng)])
    diagonal, off_diagonal, _ = tridiagonalize(np.zeros((5, 6)), matrices)
    root_diagonal, root_subdiagonal, positive = tridiagonal_cholesky(diagonal, off_diagonal)
    assert positive.tolist() == [True, True, True, False, False]
    root = Bidiagonal(root_diagonal[:3], root_subdiagonal[:3]).dense()
    np.testing.assert_allclose(root @ np.swapaxes(root, -1, -2),
                               tridiagonal_matrices(diagonal[:3], off_diagonal[:3]),
                               atol=1e-12 * np.abs(diagonal).max())


def test_bidiagonal_product_is_the_dense_product():
    rng = np.random.default_rng(2)
    factor = Bidiagonal(rng.standard_normal((4, 6)), rng.standard_normal((4, 5)))
    x = rng.standard_normal((4, 6, 3))
    np.testing.assert_allclose(factor @ x, factor.dense() @ x, rtol=0, atol=1e-14)


def test_isotropic_metrics_agree_with_the_general_bures_formula():
    rng = np.random.default_rng(3)
    reference = GaussianReference(np.full(5, 0.5), 2.0 * np.eye(5))
    means, covs = rng.standard_normal((6, 5)), wishart_like(6, 5, 8, rng) / 7
    np.testing.assert_allclose(gaussian_metrics(means, covs, reference)["w2_sq"],
                               bures_w2_sq(means, covs, reference), rtol=1e-10)


@pytest.mark.parametrize("points", [40, 4])  # more and fewer points than dimensions
def test_a_fit_in_the_tridiagonal_basis_is_the_same_fit(points):
    """Same training statistics: the same metrics, and models that differ only by a
    rotation (equal |mean| and equal spectra of lam * Sigma). With fewer points than
    dimensions, round-off eigenvalues (~1e-16 of the largest) of the singular
    covariance enter w2 through their square roots (~1e-8), and make logdet -inf or
    merely very negative, in either basis."""
    spec = resolve_spec({"model": "gaussian", "loop": "fresh_data", "n_init": 40, "n_real": 10,
                         "n_syn": 30, "lam": 0.8, "chains": 20, "data": {"dim": 6}})
    simulator = ExactGaussianSimulator(spec)
    assert simulator._changes_basis
    rng = np.random.default_rng(4)
    training = draw_stats(points, rng.standard_normal((20, 6)),
                          rng.standard_normal((20, 6, 6)), 20, rng)
    dense_model, dense_metrics = simulator._fit(training, points - 1)
    model, metrics = simulator._fit_changing_basis(training, points - 1)
    singular = points <= 6
    for key, values in dense_metrics.items():
        if key == "logdet" and singular:
            assert (metrics[key] < -30).all() and (values < -30).all()
        else:
            rtol = 1e-6 if singular and key.startswith("w2") else 1e-10
            np.testing.assert_allclose(metrics[key], values, rtol=rtol, err_msg=key)
    np.testing.assert_allclose(np.linalg.norm(model.mean, axis=1),
                               np.linalg.norm(dense_model.mean, axis=1), rtol=1e-12)
    factors = {}
    for name, factor in {"dense": dense_model.sampling_factor,
                         "tridiagonal": model.sampling_factor}.items():
        factor = factor.dense() if isinstance(factor, Bidiagonal) else factor
        factors[name] = np.linalg.eigvalsh(factor @ np.swapaxes(factor, -1, -2))
    scale = np.abs(factors["dense"]).max()
    np.testing.assert_allclose(factors["tridiagonal"], factors["dense"], atol=1e-12 * scale)
    assert isinstance(model.sampling_factor, Bidiagonal) != singular
