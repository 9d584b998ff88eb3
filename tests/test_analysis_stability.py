"""The stability verdict on series with known behaviour: stationary AR(1) noise around a
level (no trend: the test's false-alarm rate is ALPHA), a linear drift, a level shift
from the reference, and series too short or too correlated to judge."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.stability import Level, assess_stability, kept_level
from mad_core.convergence import ALPHA


def ar1(length: int, phi: float, level: float, rng: np.random.Generator, noise: float = 1.0):
    values = np.empty(length)
    state = 0.0
    for t in range(length):
        state = phi * state + noise * rng.standard_normal()
        values[t] = level + state
    return values


# Lengths of about 50 autocorrelation times (tau = (1 + phi) / (1 - phi)).
@pytest.mark.parametrize("phi, length", [(0.0, 100), (0.5, 200), (0.9, 1000)])
def test_stationary_series_settle_at_about_the_nominal_false_alarm_rate(phi, length):
    rng = np.random.default_rng(0)
    runs = 400
    verdicts = [assess_stability(ar1(length, phi, 10.0, rng)).verdict for _ in range(runs)]
    drifts = verdicts.count("drifts") / runs
    # The false-alarm rate is ALPHA = 1 %; allow 4 binomial standard errors.
    assert drifts <= ALPHA + 4 * np.sqrt(ALPHA * (1 - ALPHA) / runs), drifts
    assert verdicts.count("settles") / runs > 0.9


def test_a_linear_drift_is_found_with_its_slope():
    rng = np.random.default_rng(1)
    series = 5.0 + 0.05 * np.arange(200) + ar1(200, 0.5, 0.0, rng, noise=0.3)
    result = assess_stability(series)
    assert result.verdict == "drifts" and result.slope_p < 1e-6
    assert abs(result.slope - 0.05) < 0.01


def test_level_is_compared_with_the_real_data_only_reference():
    rng = np.random.default_rng(2)
    reference = Level.pooled([kept_level(ar1(200, 0.5, 10.0, rng)) for _ in range(3)])
    near = assess_stability(ar1(200, 0.5, 10.0, rng), reference)
    away = assess_stability(ar1(200, 0.5, 13.0, rng), reference)
    assert near.verdict == "settles" and near.level_p > ALPHA
    assert away.verdict == "settles away" and away.level_p < 1e-6
    assert abs(away.level / reference.mean - 1.3) < 0.05 and "from real data alone" in away.reason


def test_short_or_strongly_correlated_series_are_undetermined():
    rng = np.random.default_rng(3)
    short = assess_stability(ar1(15, 0.5, 1.0, rng))
    assert short.verdict == "undetermined" and "needs 20" in short.reason
    correlated = assess_stability(ar1(60, 0.995, 1.0, rng))
    assert correlated.verdict == "undetermined" and "autocorrelation time" in correlated.reason
