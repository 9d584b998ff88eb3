"""Reference curves and closed-form expectations against exact theory.

Tolerances: 4 standard errors (from the simulation's own chain spread), a false failure
below 1e-4 per check.
"""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2

from analysis.gaussian_theory import (expected_trace_and_mean_error, fit_expectation)
from analysis.reference import (TARGET_RELATIVE_ERROR, baseline_reference_curve,
                                gaussian_reference_curve, log_spaced_sizes, simulated_point,
                                size_generator)
from mad_core.loop import SelfConsumingLoop
from mad_core.spec import resolve_spec

Z = 4.0
ONE_DIMENSION = {"data.source": "gaussian", "data.dim": 1}


def brute_force(n: int, dim: int, metric: str, chains: int, seed: int = 9) -> tuple[float, float]:
    """(mean, standard error) of a metric over chains of one fit on n real samples: the
    exact simulator through the loop, no control variates."""
    spec = resolve_spec({"model": "gaussian", "loop": "fully_synthetic", "n_init": n,
                         "n_syn": 2, "generations": 1, "chains": chains, "seed": seed,
                         "data": {"dim": dim}})
    record = SelfConsumingLoop(spec).step()
    return record[f"{metric}_mean"], record[f"{metric}_sem"]


def test_one_dimension_uses_the_closed_form():
    sizes = np.array([2, 10, 1000])
    curve = gaussian_reference_curve(ONE_DIMENSION, "w2_sq", sizes)
    np.testing.assert_array_equal(curve.standard_error, 0.0)
    assert curve.value.tolist() == [fit_expectation("w2_sq", n, 1) for n in sizes]
    assert curve.source == "closed form, d = 1"


@pytest.mark.parametrize("dim, metric", [(2, "w2_sq"), (10, "w2_sq"), (3, "w2"), (1, "w2")])
def test_simulated_curve_meets_its_stated_precision(dim, metric):
    sizes = log_spaced_sizes(2, 3000)
    curve = gaussian_reference_curve({"data.source": "gaussian", "data.dim": dim}, metric,
                                     sizes)
    relative = curve.standard_error / curve.value
    assert relative.max() <= TARGET_RELATIVE_ERROR
    assert f"d = {dim}" in curve.source and "control variates" in curve.source
    assert f"s.e. <= {100 * relative.max():.2g} % per n" in curve.source


def one_dimension_z_scores(covariance: str, sizes) -> np.ndarray:
    """(simulated - closed form) / stated s.e. of the control-variate W2^2 at d = 1."""
    scores = []
    for n in sizes:
        value, error = simulated_point("w2_sq", int(n), 1, 1.0, covariance,
                                       size_generator(0, int(n)), TARGET_RELATIVE_ERROR,
                                       max_chains=10 ** 6)
        scores.append((value - fit_expectation("w2_sq", int(n), 1, covariance=covariance))
                      / error)
    return np.array(scores)


@pytest.mark.parametrize("covariance", ["unbiased", "mle"])
def test_control_variates_agree_with_the_closed_form_independently_across_n(covariance):
    """d = 1, where f is known: every point within its stated error, and the errors of
    different n are independent N(0, 1) draws, not one shared shift: they change sign,
    and their sum of squares about their mean is chi2 with K - 1 degrees of freedom (a
    shared shift would make it ~0), tested two-sided at 1e-4."""
    sizes = log_spaced_sizes(2, 20_000)
    scores = one_dimension_z_scores(covariance, sizes)
    assert np.abs(scores).max() < Z, scores
    assert (scores > 0).any() and (scores < 0).any(), scores
    spread = ((scores - scores.mean()) ** 2).sum()
    dof = len(scores) - 1
    assert chi2.ppf(1e-4, dof) < spread < chi2.ppf(1 - 1e-4, dof), scores


@pytest.mark.parametrize("metric", ["w2_sq", "w2"])
def test_control_variates_agree_with_brute_force_at_small_dimension(metric):
    """d = 3 (no closed form for W2^2): the control-variate curve and 40,000 plain chains
    of the loop's own simulator agree within their combined standard error."""
    sizes = np.array([3, 10, 60])
    curve = gaussian_reference_curve({"data.source": "gaussian", "data.dim": 3}, metric,
                                     sizes)
    for n, value, error in zip(sizes, curve.value, curve.standard_error):
        plain, plain_error = brute_force(int(n), 3, metric, chains=40_000)
        assert abs(value - plain) < Z * np.hypot(error, plain_error), (n, value, plain)


def test_curve_follows_the_source_variance():
    """P_r = N(0, 4 I): W2^2 scales by the variance, W2 by the standard deviation."""
    sizes = np.array([5, 50])
    for metric, factor in (("w2_sq", 4.0), ("w2", 2.0)):
        unit = gaussian_reference_curve({"data.source": "gaussian", "data.dim": 3}, metric,
                                        sizes)
        wide = gaussian_reference_curve({"data.source": "gaussian", "data.dim": 3,
                                         "data.var": 4.0}, metric, sizes)
        np.testing.assert_allclose(wide.value, factor * unit.value, rtol=1e-12)
        np.testing.assert_allclose(wide.standard_error, factor * unit.standard_error,
                                   rtol=1e-12)


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="no Gaussian reference curve for metric 'fid'"):
        gaussian_reference_curve({"data.source": "gaussian", "data.dim": 2}, "fid",
                                 np.array([5, 50]))


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
