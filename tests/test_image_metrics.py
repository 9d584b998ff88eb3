"""FID and KID against their formulas and statistical theory; the reference features cache."""

import numpy as np
import pytest
from scipy import linalg

from mad_core.images.torchvision_compat import import_cleanfid
from mad_core.metrics.image_metrics import FeatureStatistics, fid, fid_from_statistics, kid, reference_features


def test_fid_is_the_w2_squared_of_the_gaussian_fits():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 3)) @ np.array([[1.0, 0.3, 0.0], [0.0, 2.0, 0.5], [0.0, 0.0, 0.7]])
    b = rng.standard_normal((400, 3)) + np.array([1.0, -2.0, 0.5])
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)  # unbiased, n - 1
    root_b = linalg.sqrtm(cov_b).real
    expected = (np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b)
                - 2 * np.trace(linalg.sqrtm(root_b @ cov_a @ root_b).real))
    assert fid(a, b) == pytest.approx(expected, rel=1e-9)
    assert fid_from_statistics(FeatureStatistics.of(a), FeatureStatistics.of(b)) == fid(a, b)


def test_fid_of_two_samples_of_one_distribution_matches_its_sampling_bias():
    # For two independent n-samples of N(0, I_d), to second order in 1/sqrt(n):
    # E|m1 - m2|^2 = 2d/n and E tr(S1 + S2 - 2 (S1 S2)^1/2) = |S1 - S2|_F^2 / 4 = (d^2 + d) / (2n).
    rng = np.random.default_rng(1)
    n, d = 4000, 4
    values = np.array([fid(rng.standard_normal((n, d)), rng.standard_normal((n, d))) for _ in range(10)])
    expected = 2 * d / n + (d * d + d) / (2 * n)
    assert abs(values.mean() - expected) <= 5 * values.std(ddof=1) / np.sqrt(len(values))


def test_fid_grows_monotonically_with_added_noise():
    # FID(N(0, I), N(0, (1 + s^2) I)) = d (sqrt(1 + s^2) - 1)^2: increments far above the
    # ~0.005 sampling noise at n = 4000; the same noise draw is scaled for every s.
    rng = np.random.default_rng(2)
    n, d = 4000, 4
    reference, other, noise = (rng.standard_normal((n, d)) for _ in range(3))
    levels = [0.0, 0.5, 1.0, 2.0]
    values = [fid(reference, other + level * noise) for level in levels]
    assert values[0] < 0.05
    assert all(low < high for low, high in zip(values, values[1:]))
    for level, value in zip(levels[1:], values[1:]):
        assert value == pytest.approx(d * (np.sqrt(1 + level**2) - 1) ** 2, rel=0.25)


def _kid_by_definition(x, y):
    """Unbiased MMD^2 under k(a, b) = (a . b / d + 1)^3, with explicit sums over pairs."""
    m, d = x.shape

    def kernel(a, b):
        return (a @ b / d + 1) ** 3

    within_x = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    within_y = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    across = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m))
    return (within_x + within_y) / (m * (m - 1)) - 2 * across / (m * m)


def test_kid_matches_its_formula_and_clean_fid_on_small_inputs():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((15, 4)), rng.standard_normal((15, 4)) + 0.5
    assert kid(x, y) == pytest.approx(_kid_by_definition(x, y), rel=1e-12)
    # With whole sets as subsets clean-fid's random subset choice is only a reordering.
    assert kid(x, y) == pytest.approx(import_cleanfid().kernel_distance(x, y, num_subsets=1), rel=1e-12)


def test_kid_with_subsets_is_seeded_and_unbiased():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((300, 5)), rng.standard_normal((200, 5))
    assert kid(x, y, seed=7, max_subset_size=50) == kid(x, y, seed=7, max_subset_size=50)
    assert kid(x, y, seed=7, max_subset_size=50) != kid(x, y, seed=8, max_subset_size=50)
    # Two samples of one distribution: E[KID] = 0.
    values = np.array([kid(rng.standard_normal((300, 5)), rng.standard_normal((200, 5)), seed=rng,
                           num_subsets=10, max_subset_size=100) for _ in range(20)])
    assert abs(values.mean()) <= 5 * values.std(ddof=1) / np.sqrt(len(values))
    assert kid(x, y + 1.0, seed=0) > 10 * values.std(ddof=1)


def test_reference_features_are_computed_once_then_loaded(tmp_path):
    rng = np.random.default_rng(5)
    features = rng.standard_normal((300, 6)).astype(np.float32)
    calls = []

    def compute():
        calls.append(1)
        return features

    first = reference_features(tmp_path / "cache", "digits-lenet5-abc", compute)
    second = reference_features(tmp_path / "cache", "digits-lenet5-abc", compute)
    assert len(calls) == 1 and (tmp_path / "cache" / "digits-lenet5-abc.npz").is_file()
    assert np.array_equal(second.features, features) and second.statistics.count == 300
    assert np.array_equal(second.statistics.covariance, first.statistics.covariance)
    assert fid_from_statistics(second.statistics, FeatureStatistics.of(features)) == pytest.approx(0, abs=1e-6)
