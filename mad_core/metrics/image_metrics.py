"""FID and KID on features, and reference statistics of a real dataset cached on disk.

FID is clean-fid's ``frechet_distance`` on the mean and unbiased covariance of each
feature set. KID is clean-fid's estimator (the unbiased MMD^2 with the cubic
polynomial kernel k(x, y) = (x . y / d + 1)^3, averaged over random equal-size
subsets); it is written out here because clean-fid's ``kernel_distance`` draws its
subsets from numpy's global random state, and mad_core draws only from explicit
generators. With whole sets as subsets the two agree (tests/test_image_metrics.py).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mad_core.images.torchvision_compat import import_cleanfid


@dataclass(frozen=True)
class FeatureStatistics:
    """Mean (d,) and unbiased covariance (d, d), both float64, of ``count`` features."""

    mean: np.ndarray
    covariance: np.ndarray
    count: int

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureStatistics:
        """Statistics of (N, d) features, N >= 2."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) < 2:
            raise ValueError(f"expected (N, d) features with N >= 2, got shape {features.shape}")
        return cls(features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], -1),
                   len(features))


def fid_from_statistics(a: FeatureStatistics, b: FeatureStatistics) -> float:
    """Squared Frechet (W2^2) distance between the Gaussians of two statistics (clean-fid)."""
    return float(import_cleanfid().frechet_distance(a.mean, a.covariance, b.mean, b.covariance))


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between (N, d) and (M, d) features: the Frechet distance of their Gaussian fits."""
    return fid_from_statistics(FeatureStatistics.of(features_a), FeatureStatistics.of(features_b))


def _kid_of_subsets(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two (m, d) sets under (x . y / d + 1)^3, as clean-fid computes it."""
    m, dim = x.shape
    within = (x @ x.T / dim + 1) ** 3 + (y @ y.T / dim + 1) ** 3
    across = (x @ y.T / dim + 1) ** 3
    return float(((within.sum() - np.diag(within).sum()) / (m - 1) - across.sum() * 2 / m) / m)


def kid(features_a: np.ndarray, features_b: np.ndarray, *, seed: int | np.random.Generator = 0,
        num_subsets: int = 100, max_subset_size: int = 1000) -> float:
    """KID between (N, d) and (M, d) features, clean-fid's estimator and defaults.

    Each of ``num_subsets`` rounds draws m = min(N, M, max_subset_size) features of each
    set without replacement and averages the unbiased MMD^2 estimates. When both sets
    have exactly m features every round would use the whole sets, so one round is done.

    Args:
        seed: an int or a ``numpy.random.Generator`` that picks the subsets; a fixed
            int makes the metric a deterministic function of the features.
    """
    features_a = np.asarray(features_a, dtype=np.float64)
    features_b = np.asarray(features_b, dtype=np.float64)
    if features_a.ndim != 2 or features_a.shape[1:] != features_b.shape[1:]:
        raise ValueError(f"expected (N, d) and (M, d) features, got {features_a.shape} and {features_b.shape}")
    size = min(len(features_a), len(features_b), max_subset_size)
    if size < 2:
        raise ValueError(f"KID needs at least 2 features per subset, got {size}")
    if len(features_a) == len(features_b) == size:
        return _kid_of_subsets(features_a, features_b)
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        subset_a = features_a[rng.choice(len(features_a), size, replace=False)]
        subset_b = features_b[rng.choice(len(features_b), size, replace=False)]
        total += _kid_of_subsets(subset_a, subset_b)
    return total / num_subsets


@dataclass(frozen=True)
class ReferenceFeatures:
    """A real dataset's features (N, d) float32 and their statistics, for FID, KID and P/R."""

    features: np.ndarray
    statistics: FeatureStatistics


def reference_features(cache_dir: str | Path, key: str,
                       compute_features: Callable[[], np.ndarray]) -> ReferenceFeatures:
    """Load the reference features cached under ``key``, or compute and cache them.

    Args:
        cache_dir: folder of the cache; one ``<key>.npz`` per reference.
        key: names the dataset and the feature network, e.g. from
            ``mad_core.images.datasets.fingerprint`` and ``TrainedLeNet.cache_key``.
        compute_features: called on a cache miss; returns (N, d) features.
    """
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file():
        with np.load(path) as stored:
            statistics = FeatureStatistics(stored["mean"], stored["covariance"], int(stored["count"]))
            return ReferenceFeatures(stored["features"], statistics)
    features = np.asarray(compute_features(), dtype=np.float32)
    statistics = FeatureStatistics.of(features)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a crash or a concurrent trial never leaves a half-written cache.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as file:
        np.savez(file, features=features, mean=statistics.mean, covariance=statistics.covariance,
                 count=statistics.count)
    os.replace(file.name, path)
    return ReferenceFeatures(features, statistics)
