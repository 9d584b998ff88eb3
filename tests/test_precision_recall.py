"""k-NN precision/recall and density/coverage: exactness, chunk independence, statistical behaviour."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from mad_core.metrics.precision_recall import PrecisionRecall, precision_recall
from mad_core.sources import GaussianGridMixture


def _direct_reference(real, fake, k):
    """The definitions, written out on full float64 distance matrices from the direct formula."""
    def sq_distances(a, b):
        return np.square(a[:, None, :] - b[None, :, :]).sum(axis=-1)

    def kth_radii(points):
        distances = sq_distances(points, points)
        np.fill_diagonal(distances, np.inf)
        return np.sort(distances, axis=1)[:, k - 1]

    real_radii, fake_radii, cross = kth_radii(real), kth_radii(fake), sq_distances(real, fake)
    in_real_ball = cross <= real_radii[:, None]
    return PrecisionRecall(precision=float(in_real_ball.any(axis=0).mean()),
                           recall=float((cross <= fake_radii[None, :]).any(axis=1).mean()),
                           density=float(in_real_ball.sum()) / (k * len(fake)),
                           coverage=float(in_real_ball.any(axis=1).mean()))


def _cases():
    rng = np.random.default_rng(7)
    lattice = rng.integers(0, 6, (300, 2)).astype(float)  # many equal distances and duplicates
    clusters = np.repeat(rng.standard_normal((25, 3)), 12, axis=0)  # radii of exactly 0
    return {
        "gaussian_84d": (rng.standard_normal((260, 84)), 1.2 * rng.standard_normal((240, 84))),
        "far_from_origin": (rng.standard_normal((200, 8)) + 1e3, rng.standard_normal((220, 8)) + 1e3 + 0.1),
        "lattice_ties": (lattice, rng.integers(0, 7, (150, 2)).astype(float)),
        "duplicates": (clusters, np.concatenate([clusters[:60], rng.standard_normal((90, 3))])),
        # Every pair of basis vectors is exactly sqrt(2) apart: more ties than the first top-L holds.
        "equidistant": (np.eye(40), np.concatenate([np.eye(40)[:15], rng.random((25, 40))])),
    }


@pytest.mark.parametrize("case", sorted(_cases()))
@pytest.mark.parametrize("k", [3, 5])
def test_chunked_equals_unchunked_and_the_direct_definition_exactly(case, k):
    real, fake = _cases()[case]
    expected = _direct_reference(real, fake, k)
    for chunk_size in (13, 100, 4096):
        assert precision_recall(real, fake, k=k, chunk_size=chunk_size, density_coverage=True) == expected


def test_small_inputs_without_density_coverage():
    rng = np.random.default_rng(0)
    result = precision_recall(rng.standard_normal((50, 2)), rng.standard_normal((40, 2)))
    assert result.density is None and result.coverage is None
    assert 0 <= result.precision <= 1 and 0 <= result.recall <= 1


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="more than k samples"):
        precision_recall(np.zeros((3, 2)), np.ones((10, 2)), k=3)
    with pytest.raises(ValueError, match=r"\(N, d\) and \(M, d\)"):
        precision_recall(np.zeros((10, 2)), np.ones((10, 3)))
    with pytest.raises(ValueError, match="NaN"):
        precision_recall(np.full((10, 2), np.nan), np.ones((10, 2)))


# 25 well separated modes (spacing 2, std 0.05): a ball around a point of one mode
# never reaches another mode.
GRID = GaussianGridMixture()
N_REAL, N_FAKE, REPLICATES = 2500, 1000, 6


def _welch_bound(a, b):
    """Five standard errors of mean(a) - mean(b) over independent replicates."""
    return 5 * np.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))


def _identical_precision(rng):
    """Precision of a perfect generator (fake drawn from the real distribution)."""
    return precision_recall(GRID.draw(N_REAL, rng), GRID.draw(N_FAKE, rng)).precision


def test_one_mode_keeps_precision_and_loses_recall():
    rng = np.random.default_rng(11)
    collapsed_precision, perfect_precision = [], []
    for _ in range(REPLICATES):
        real = GRID.draw(N_REAL, rng)
        fake = GRID.modes[0] + GRID.std * rng.standard_normal((N_FAKE, 2))
        result = precision_recall(real, fake)
        # Fake balls sit inside mode 0, so only real points of mode 0 can be recalled.
        real_in_mode_0 = np.mean(np.linalg.norm(real - GRID.modes[0], axis=1) < 1.0)
        assert result.recall <= real_in_mode_0
        collapsed_precision.append(result.precision)
        perfect_precision.append(_identical_precision(rng))
    # Each collapsed sample sees one real mode exactly as a perfect generator's sample
    # sees its own mode, so the expected precisions are equal.
    assert np.mean(collapsed_precision) >= np.mean(perfect_precision) - _welch_bound(collapsed_precision,
                                                                                    perfect_precision)
    assert np.mean(perfect_precision) > 0.9


def test_spread_out_data_keeps_recall_and_loses_precision():
    rng = np.random.default_rng(12)
    spread_std = 0.3  # six times the real modes' std, still far from the other modes
    spread_recall, perfect_precision = [], []
    for _ in range(REPLICATES):
        real = GRID.draw(N_REAL, rng)
        fake = GRID.modes[rng.integers(25, size=4 * N_FAKE)] + spread_std * rng.standard_normal((4 * N_FAKE, 2))
        result = precision_recall(real, fake)
        # E[precision | real] <= sum_i P_fake(ball_i) <= sum_i pi r_i^2 * max fake density,
        # with max density 1 / (25 * 2 pi spread_std^2) (other modes add < e^-20).
        radii = cKDTree(real).query(real, k=4)[0][:, 3]  # column 0 is the point itself
        union_bound = np.square(radii).sum() / (50 * spread_std**2)
        assert result.precision <= union_bound + 5 * np.sqrt(union_bound / len(fake))
        spread_recall.append(result.recall)
        perfect_precision.append(_identical_precision(rng))
    # A real point sees the spread fake set as locally uniform, as a perfect generator's
    # sample sees the real set (no tails here), so recall is at least that precision.
    assert np.mean(spread_recall) >= np.mean(perfect_precision) - _welch_bound(spread_recall, perfect_precision)


def test_density_and_coverage_match_their_expectations_for_identical_distributions():
    # Naeem et al. 2020: E[density] = 1 and E[coverage] = 1 - prod_{i=1..k} (N - i) / (N + M - i).
    rng = np.random.default_rng(13)
    n_real, n_fake, k = 1500, 1000, 5
    results = [precision_recall(rng.standard_normal((n_real, 2)), rng.standard_normal((n_fake, 2)),
                                k=k, density_coverage=True) for _ in range(8)]
    density = np.array([r.density for r in results])
    coverage = np.array([r.coverage for r in results])
    expected_coverage = 1 - np.prod([(n_real - i) / (n_real + n_fake - i) for i in range(1, k + 1)])
    assert abs(density.mean() - 1) <= 5 * density.std(ddof=1) / np.sqrt(len(density))
    assert abs(coverage.mean() - expected_coverage) <= 5 * coverage.std(ddof=1) / np.sqrt(len(coverage))
