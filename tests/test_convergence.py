"""The asymptote estimator on series with known limits and known non-convergence, and
the stop rule's schedule.

Coverage tolerances are binomial: over R replicate series a 95 % interval covers the
limit in 0.95 R +- 3 sqrt(0.95 * 0.05 R) of them (false failure < 0.3 %). Known
autocorrelation comes from AR(1) noise, whose integrated autocorrelation time is
(1 + phi) / (1 - phi).
"""

import numpy as np
import pytest

from analysis.gaussian_theory import expected_trace_and_mean_error
from mad_core.convergence import (MIN_RETAINED, N_BATCHES, StopRule, burn_in_generations,
                                  estimate_asymptote, integrated_autocorrelation_time)
from mad_core.loop import SelfConsumingLoop
from mad_core.spec import resolve_spec

LIMIT = 3.0


def ar1_noise(rng, replicates: int, length: int, phi: float, sd: float = 1.0) -> np.ndarray:
    """(replicates, length) stationary AR(1) noise with marginal standard deviation sd."""
    innovations = rng.standard_normal((replicates, length)) * sd * np.sqrt(1 - phi ** 2)
    noise = np.empty((replicates, length))
    noise[:, 0] = rng.standard_normal(replicates) * sd
    for t in range(1, length):
        noise[:, t] = phi * noise[:, t - 1] + innovations[:, t]
    return noise


def transient(length: int, amplitude: float = 5.0, time_constant: float = 10.0) -> np.ndarray:
    generations = np.arange(1, length + 1)
    return LIMIT + amplitude * np.exp(-generations / time_constant)


def coverage_band(replicates: int, level: float = 0.95) -> tuple[float, float]:
    spread = 3 * np.sqrt(level * (1 - level) / replicates)
    return level - spread, level + spread


@pytest.mark.parametrize("phi, length, seeds", [(0.0, 300, 1), (0.5, 400, 1), (0.5, 400, 3),
                                                (0.9, 2000, 1)])
def test_interval_covers_the_limit_at_its_nominal_rate(phi, length, seeds):
    """Batches >= 10 autocorrelation times long: batch means are close to independent."""
    rng = np.random.default_rng(11)
    replicates = 400
    results = [estimate_asymptote(transient(length) + ar1_noise(rng, seeds, length, phi))
               for _ in range(replicates)]
    converged = [r for r in results if r.converged]
    # Stationary after the transient: the drift test (level 1 %) flags about 1 %.
    assert len(converged) >= replicates * 0.95
    low, high = coverage_band(len(converged))
    covered = np.mean([r.low <= LIMIT <= r.high for r in converged])
    assert low <= covered <= high, covered


def test_seeds_pool_into_a_narrower_interval():
    rng = np.random.default_rng(3)
    one = estimate_asymptote(transient(400) + ar1_noise(rng, 1, 400, 0.5))
    four = estimate_asymptote(transient(400) + ar1_noise(rng, 4, 400, 0.5))
    assert four.seeds == 4 and four.standard_error < one.standard_error


def test_burn_in_drops_generation_one_and_finds_a_level_shift():
    rng = np.random.default_rng(5)
    flat = LIMIT + 0.1 * rng.standard_normal(200)
    assert burn_in_generations(flat) <= 1 + 5 * 2  # G1, plus at most a couple of batches
    shifted = flat.copy()
    shifted[:61] += 10.0  # generations 1..61 sit far above the limit
    cut = burn_in_generations(shifted)
    assert 61 <= cut <= 61 + 5  # MSER-5 cuts at the batch holding the shift
    estimate = estimate_asymptote(shifted)
    assert estimate.converged and estimate.low <= LIMIT <= estimate.high


def test_autocorrelation_time_of_ar1():
    rng = np.random.default_rng(8)
    phi = 0.8
    tau = integrated_autocorrelation_time(ar1_noise(rng, 20, 4000, phi))
    # Sokal's window truncates the tail sum at M >= 5 tau: bias below exp(-5 * 2 / tau') ~ few %.
    assert tau == pytest.approx((1 + phi) / (1 - phi), rel=0.1)
    assert integrated_autocorrelation_time(rng.standard_normal((20, 4000))) == \
        pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("name, mean_path", [
    ("linear trend", lambda t: LIMIT + 0.02 * t),
    ("slow approach", lambda t: LIMIT + 20 * np.exp(-t / 400)),
    ("power-law approach", lambda t: LIMIT + 200 / np.sqrt(t)),
])
def test_drifting_series_are_flagged_not_estimated(name, mean_path):
    """The drift over the kept generations is many noise standard errors: each is flagged."""
    rng = np.random.default_rng(13)
    generations = np.arange(1, 401)
    for noise in ar1_noise(rng, 50, 400, 0.5):
        result = estimate_asymptote(mean_path(generations) + noise)
        assert not result.converged, name
        assert np.isnan(result.value) and result.reason


def test_a_run_short_against_its_correlation_time_is_flagged():
    rng = np.random.default_rng(17)
    for phi, length in ((0.99, 400), (0.98, 400), (0.95, 200)):  # runs of 2 to 5 tau
        flagged = [not estimate_asymptote(LIMIT + ar1_noise(rng, 1, length, phi)).converged
                   for _ in range(50)]
        assert all(flagged), (phi, length, sum(flagged))


def test_too_few_generations_incomplete_and_non_finite_are_flagged():
    short = estimate_asymptote(np.full(MIN_RETAINED, LIMIT))
    assert not short.converged and "run more generations" in short.reason
    incomplete = estimate_asymptote(np.full(100, LIMIT), expected_generations=200)
    assert not incomplete.converged and incomplete.reason == "incomplete: 100 of 200 generations logged"
    series = np.full(100, LIMIT)
    series[40] = -np.inf
    assert "non-finite" in estimate_asymptote(series).reason


def test_seeds_of_different_lengths_pool_over_their_common_prefix():
    rng = np.random.default_rng(19)
    seeds = [transient(length) + ar1_noise(rng, 1, length, 0.5)[0] for length in (400, 300, 350)]
    pooled = estimate_asymptote(seeds)
    prefix = estimate_asymptote(np.stack([seed[:300] for seed in seeds]))
    assert pooled == prefix  # bit for bit: the shortest seed's 300 generations of each
    assert pooled.converged and pooled.seeds == 3 and pooled.burn_in + pooled.retained == 300


def test_each_seed_is_held_to_its_own_expected_length():
    """A stopped seed is complete at its own length; a seed short of its own is not."""
    seeds = [np.full(120, LIMIT), np.full(80, LIMIT)]
    assert estimate_asymptote(seeds, expected_generations=[120, 80]).converged
    short = estimate_asymptote(seeds, expected_generations=[120, 100])
    assert short.reason == "incomplete: 80 of 100 generations logged (seed 2 of 2)"


def test_stop_checks_every_five_percent_but_at_most_every_ten_generations():
    rule = StopRule("w2_sq_mean", 0.005, min_generations=50)
    checks, generation = [], 1
    while (generation := rule.next_check(generation)) <= 3000:
        checks.append(generation)
        generation += 1
    assert checks[:18] == [*range(50, 220, 10), 221]
    gaps = np.diff(checks)
    assert (gaps == np.maximum(10, np.ceil(np.array(checks[:-1]) / 20))).all()
    assert 50 < len(checks) < 80  # about log(3000 / 200) / log(1.05) checks past G200
    assert rule.next_check(51) == 60 and rule.next_check(1) == 50


def test_constant_series_has_a_zero_width_interval():
    result = estimate_asymptote(np.full(100, LIMIT))
    assert result.converged and result.value == LIMIT and result.low == result.high == LIMIT
    assert result.retained % N_BATCHES == 0


def test_fresh_data_trace_limit_matches_the_closed_form():
    """A real mad_core fresh data loop: the limit of E tr Sigma_t is known exactly."""
    spec = resolve_spec({"model": "gaussian", "loop": "fresh_data", "n_init": 200,
                         "n_real": 20, "n_syn": 40, "lam": 0.8, "generations": 400,
                         "chains": 50, "seed": 2, "data": {"dim": 4}})
    series = np.array([record["trace_mean"] for record in SelfConsumingLoop(spec)])
    trace, _ = expected_trace_and_mean_error(loop="fresh_data", lam=0.8, n_init=200,
                                             n_real=20, n_syn=40, generations=400,
                                             trace_real=4.0)
    result = estimate_asymptote(series)
    assert result.converged
    # 3.3 standard errors: a 99.9 % two-sided band for this one fixed-seed check.
    assert abs(result.value - trace[-1]) < 3.3 * result.standard_error
