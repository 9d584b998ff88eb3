"""Reference curves and closed-form expectations against exact theory.

Tolerances: 4 standard errors (from the simulation's own chain spread), a false failure
below 1e-4 per check.
"""

import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln

from analysis.gaussian_theory import expected_trace_and_mean_error
from analysis.reference import (baseline_reference_curve, gaussian_reference_curve,
                                log_spaced_sizes)
from mad_core.loop import SelfConsumingLoop
from mad_core.spec import resolve_spec

Z = 4.0


def expected_sample_sd(n: int) -> float:
    """E s for the unbiased sample standard deviation of n N(0, 1) draws (c4(n))."""
    return float(np.sqrt(2 / (n - 1)) * np.exp(gammaln(n / 2) - gammaln((n - 1) / 2)))


@pytest.mark.parametrize("covariance", ["unbiased", "mle"])
def test_gaussian_curve_in_one_dimension_matches_its_closed_form(covariance):
    """d = 1: W2^2 = m^2 + (s - 1)^2, so f(n) = 1/n + 1 + E s^2 - 2 E s exactly, with
    s^2 the fitted variance (unbiased: E s^2 = 1, E s = c4; mle: scaled by (n-1)/n)."""
    sizes = np.array([2, 3, 5, 10, 30, 100, 1000])
    curve = gaussian_reference_curve({"data.source": "gaussian", "data.dim": 1,
                                      "model_options.covariance": covariance},
                                     "w2_sq", sizes, chains=20000)
    for n, value, error in zip(sizes, curve.value, curve.standard_error):
        shrink = 1.0 if covariance == "unbiased" else (n - 1) / n
        expected = 1 / n + 1 + shrink - 2 * np.sqrt(shrink) * expected_sample_sd(n)
        assert abs(value - expected) < Z * error, (n, value, expected)
    assert "exact Gaussian simulator" in curve.source


def test_curve_follows_the_source_variance():
    """P_r = N(0, 4 I): every distance scales by the variance (W2^2 is quadratic)."""
    sizes = np.array([5, 50])
    unit = gaussian_reference_curve({"data.source": "gaussian", "data.dim": 3}, "w2_sq", sizes)
    wide = gaussian_reference_curve({"data.source": "gaussian", "data.dim": 3, "data.var": 4.0},
                                    "w2_sq", sizes)
    np.testing.assert_allclose(wide.value, 4 * unit.value, rtol=1e-9)


def test_sizes_are_distinct_log_spaced_integers():
    sizes = log_spaced_sizes(2, 40_000)
    assert sizes[0] == 2 and sizes[-1] == 40_000 and np.all(np.diff(sizes) > 0)
    assert 6 * 4 <= len(sizes) <= 6 * 4.4 + 1  # about six per decade


def test_baseline_curve_averages_trials_by_n_init():
    first_generation = pd.DataFrame({"n_init": [10, 10, 100],
                                     "w2_sq_mean": [2.0, 4.0, 0.5],
                                     "w2_sq_sem": [0.3, 0.4, 0.1]})
    curve = baseline_reference_curve(first_generation, "w2_sq", "baseline")
    np.testing.assert_allclose(curve.n, [10, 100])
    np.testing.assert_allclose(curve.value, [3.0, 0.5])
    np.testing.assert_allclose(curve.standard_error, [0.25, 0.1])  # sqrt(0.09 + 0.16) / 2
    with pytest.raises(ValueError, match="no metric fid_mean"):
        baseline_reference_curve(first_generation, "fid", "baseline")


@pytest.mark.parametrize("loop, sizes", [
    ("fresh_data", {"n_real": 20, "n_syn": 50}),
    ("synthetic_augmentation", {"n_real": 20, "n_syn": 50}),  # n_init > n_real
    ("synthetic_augmentation", {"n_real": 80, "n_syn": 30}),  # n_init < n_real
    ("fully_synthetic", {"n_syn": 30}),
    ("bertrand", {"lambda_b": 0.5}),
])
@pytest.mark.parametrize("covariance", ["unbiased", "mle"])
def test_closed_form_expectations_match_the_simulator(loop, sizes, covariance):
    spec = resolve_spec({"model": "gaussian", "loop": loop, "n_init": 40, "lam": 0.8,
                         "generations": 8, "chains": 20000, "seed": 4,
                         "data": {"dim": 3, "var": 2.0},
                         "model_options": {"covariance": covariance}, **sizes})
    records = list(SelfConsumingLoop(spec))
    trace, mean_error = expected_trace_and_mean_error(
        loop=loop, lam=0.8, n_init=40, n_real=spec.n_real, n_syn=spec.n_syn, generations=8,
        trace_real=6.0, covariance=covariance)
    for record, expected_trace, expected_error in zip(records, trace, mean_error):
        assert abs(record["trace_mean"] - expected_trace) < Z * record["trace_sem"]
        assert abs(record["mean_err_sq_mean"] - expected_error) < Z * record["mean_err_sq_sem"]


def test_no_closed_form_for_other_loops():
    with pytest.raises(ValueError, match="no closed form"):
        expected_trace_and_mean_error(loop="pool", lam=1.0, n_init=10, n_real=10, n_syn=10,
                                      generations=3, trace_real=1.0)
