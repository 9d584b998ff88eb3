"""Gaussian loops against what theory says exactly (SCIENCE.md, "The Gaussian model").

Tolerances are z-bounds built from the theoretical (or per-chain) standard error, at
4 standard errors: a false failure has probability < 1e-4 per check.
"""

import numpy as np
import pytest
from scipy.special import digamma, gammaln, polygamma

from analysis.gaussian_theory import fit_expectation
from mad_core.loop import SelfConsumingLoop
from mad_core.spec import resolve_spec

Z = 4.0


def gaussian_spec(**overrides):
    raw = {"model": "gaussian", "loop": "fully_synthetic", "n_init": 20, "n_syn": 20,
           "generations": 6, "chains": 4000, "seed": 1, "data": {"dim": 3}}
    raw.update(overrides)
    return resolve_spec(raw)


def trace_per_generation(spec):
    """(T, C) trace of Sigma_t per generation and chain."""
    loop = SelfConsumingLoop(spec)
    traces = []
    for _ in loop:
        traces.append(loop.per_chain["trace"])
    return np.array(traces)


@pytest.mark.parametrize("simulation", ["exact", "naive"])
@pytest.mark.parametrize("lam", [1.0, 0.7])
def test_unbiased_trace_shrinks_by_lambda_per_generation(simulation, lam):
    chains = 4000 if simulation == "exact" else 600
    spec = gaussian_spec(lam=lam, simulation=simulation, chains=chains)
    traces = trace_per_generation(spec)
    dim = 3
    for t, values in enumerate(traces, start=1):
        expected = lam ** (t - 1) * dim  # E tr Sigma_1 = tr Sigma = d, then x lam each step
        sem = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean() - expected) < Z * sem, (t, values.mean(), expected)


def test_mle_trace_shrinks_by_n_minus_one_over_n():
    n_init, n_syn, lam = 20, 10, 0.9
    spec = gaussian_spec(n_init=n_init, n_syn=n_syn, lam=lam,
                         model_options={"covariance": "mle"})
    traces = trace_per_generation(spec)
    for t, values in enumerate(traces, start=1):
        expected = 3 * (n_init - 1) / n_init * ((n_syn - 1) / n_syn * lam) ** (t - 1)
        sem = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean() - expected) < Z * sem, (t, values.mean(), expected)


def test_median_collapses_while_mean_holds_at_lambda_one():
    """d = 1: sigma_t^2 = sigma_{t-1}^2 * chi2_k / k with k = n - 1. The mean stays 1; log
    sigma^2 is a random walk with drift E log(chi2_k / k) = psi(k/2) + log(2/k) < 0, so
    the median goes to 0."""
    n, generations, chains = 10, 12, 20000
    spec = gaussian_spec(n_init=n, n_syn=n, generations=generations, chains=chains,
                         data={"dim": 1})
    final = trace_per_generation(spec)[-1]
    k = n - 1
    second_moment = (1 + 2 / k) ** generations  # E[(chi2_k/k)^2] = 1 + 2/k per generation
    mean_se = np.sqrt((second_moment - 1) / chains)
    assert abs(final.mean() - 1.0) < Z * mean_se

    # Cumulants of log(chi2_k / k): psi(k/2) + log(2/k), psi'(k/2), psi''(k/2); a sum of T
    # steps has T times each. Its median is mean - kappa3 / (6 variance) (Cornish-Fisher).
    mean = generations * (digamma(k / 2) + np.log(2 / k))
    variance = generations * polygamma(1, k / 2)
    kappa3 = generations * polygamma(2, k / 2)
    log_median_expected = mean - kappa3 / (6 * variance)
    median_se = np.sqrt(np.pi / 2 * variance / chains)  # sqrt(pi/2) sd / sqrt(C)
    assert abs(np.median(np.log(final)) - log_median_expected) < Z * median_se
    assert np.median(final) < 0.35 < final.mean()  # collapsed median, intact mean


def test_fresh_data_asymptote_does_not_depend_on_n_init():
    def run(n_init, lam):
        spec = resolve_spec({"model": "gaussian", "loop": "fresh_data", "n_init": n_init,
                             "n_real": 100, "n_syn": 900, "lam": lam, "generations": 60,
                             "chains": 400, "seed": n_init, "data": {"dim": 10}})
        records = list(SelfConsumingLoop(spec))
        return records[0], records[-1]

    for lam in (1.0, 0.8):
        first_small, last_small = run(100, lam)
        first_large, last_large = run(1000, lam)
        # G1 clearly depends on n_init ...
        gap = first_small["w2_sq_mean"] - first_large["w2_sq_mean"]
        assert gap > Z * np.hypot(first_small["w2_sq_sem"], first_large["w2_sq_sem"])
        # ... generation 60 does not (the weight of G1 is below 0.9^59 < 0.2 %).
        late_gap = last_small["w2_sq_mean"] - last_large["w2_sq_mean"]
        assert abs(late_gap) < Z * np.hypot(last_small["w2_sq_sem"], last_large["w2_sq_sem"])


def one_fit_record(n: int, dim: int, covariance: str, chains: int = 20000) -> dict:
    """The record of one fit on n real samples per chain (generation 1 of any loop)."""
    spec = resolve_spec({"model": "gaussian", "loop": "fully_synthetic", "n_init": n,
                         "n_syn": 2, "generations": 1, "chains": chains, "seed": 5,
                         "data": {"dim": dim, "var": 2.0},
                         "model_options": {"covariance": covariance}})
    return SelfConsumingLoop(spec).step()


@pytest.mark.parametrize("covariance", ["unbiased", "mle"])
@pytest.mark.parametrize("n", [2, 3, 10, 100, 1000])
def test_one_dimensional_w2_sq_closed_form_matches_a_large_simulation(covariance, n):
    """d = 1: W2^2 = (mu - m)^2 + (s - sigma)^2, E = var (1/n + (n-1)/k + 1 - 2 sqrt((n-1)/k)
    c4(n)); for the unbiased fit (k = n - 1), var (1/n + 2 - 2 c4(n))."""
    record = one_fit_record(n, 1, covariance)
    expected = fit_expectation("w2_sq", n, 1, var=2.0, covariance=covariance)
    assert abs(record["w2_sq_mean"] - expected) < Z * record["w2_sq_sem"]
    if covariance == "unbiased":
        c4 = np.sqrt(2 / (n - 1)) * np.exp(gammaln(n / 2) - gammaln((n - 1) / 2))
        assert expected == pytest.approx(2.0 * (1 / n + 2 - 2 * c4), rel=1e-12)


@pytest.mark.parametrize("covariance", ["unbiased", "mle"])
@pytest.mark.parametrize("n", [5, 40])
@pytest.mark.parametrize("metric", ["mean_err_sq", "trace", "logdet"])
def test_one_fit_closed_forms_match_a_large_simulation(metric, n, covariance):
    record = one_fit_record(n, 3, covariance)
    expected = fit_expectation(metric, n, 3, var=2.0, covariance=covariance)
    assert abs(record[f"{metric}_mean"] - expected) < Z * record[f"{metric}_sem"]


def test_singular_fit_has_log_det_minus_infinity_and_no_closed_w2():
    """n - 1 < d: Sigma has rank n - 1, as the records say; W2 and W2^2 at d > 1 have no
    closed form (the reference curve simulates them)."""
    assert fit_expectation("logdet", 3, 3) == one_fit_record(3, 3, "unbiased", 10)["logdet_mean"]
    assert fit_expectation("logdet", 3, 3) == -np.inf
    assert fit_expectation("w2_sq", 10, 2) is None and fit_expectation("w2", 10, 1) is None
