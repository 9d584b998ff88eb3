"""Closed-form expectations of a Gaussian loop on a Gaussian source, per generation.

For a Gaussian model fitted to a Gaussian P_r = N(m, R), the expected trace of the
fitted covariance, T_t = E tr Sigma_t, and the expected squared error of the fitted
mean, M_t = E |mu_t - m|^2, follow an exact linear recursion, because every fit is a
linear function of sample means and scatter matrices whose conditional expectations
are linear in (mu_{t-1}, Sigma_{t-1}). For a training set of n_r real and n_s synthetic
points (n = n_r + n_s; synthetic ones from N(mu_{t-1}, lam Sigma_{t-1})):

    E tr scatter = (n_r - 1) tr R + (n_s - 1) lam T_{t-1} + (n_r n_s / n) E|xbar_s - xbar_r|^2
    T_t = E tr scatter / k(n),      k(n) = n - 1 (unbiased) or n (mle)

with E|xbar_s - xbar_r|^2 and M_t depending on whether the real part is fresh each
generation or the same fixed set (see ``expected_trace_and_mean_error``). W2^2 is not
linear in the fit, so it has no such closed form. Only the default synthetic source
(the previous generation) is covered: pools and last-K mixtures are not.

One fit on n real samples of P_r = N(m, v I_d) (the reference curve f(n) of n_e): the
mean error is v chi2_d / n, and the scatter is v W with W ~ Wishart(I_d, n - 1),
independent of the mean; Sigma = v W / k(n). Every record metric but W2 is then a
moment of W with a closed form (``fit_expectation``). W2^2 is one too at d = 1, where
tr W^{1/2} = sqrt(chi2_{n-1}); at d > 1 only E tr W^{1/2} needs simulating
(``fit_w2_sq``, ``analysis.reference``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import digamma, gammaln

from mad_core.models.gaussian import covariance_denominator

THEORY_LOOPS = ("fully_synthetic", "fresh_data", "synthetic_augmentation", "bertrand")


def expected_trace_and_mean_error(*, loop: str, lam: float, n_init: int, n_real: int,
                                  n_syn: int, generations: int, trace_real: float,
                                  covariance: str = "unbiased"
                                  ) -> tuple[np.ndarray, np.ndarray]:
    """E tr Sigma_t and E |mu_t - m|^2 for t = 1..generations, each of shape (generations,).

    Args:
        loop: one of THEORY_LOOPS (bertrand is synthetic augmentation with n_real = n_init:
            a Gaussian fit has no warm start).
        n_real, n_syn: per-generation sizes for t >= 2 (n_real = 0 in fully_synthetic).
        trace_real: tr R, the total variance of P_r (d * var for N(mean, var I_d)).
        covariance: "unbiased" or "mle", the fit's covariance estimator.

    G1 fits the first n_init points of the initial real set; the synthetic augmentation
    loop reuses the first n_real points of that same set (nested prefixes), so its fixed
    real mean xbar_r is correlated with mu_1.
    """
    if loop not in THEORY_LOOPS:
        raise ValueError(f"no closed form for loop {loop!r}; known: {', '.join(THEORY_LOOPS)}")
    n = n_real + n_syn
    weight_syn = n_syn / n
    trace = np.empty(generations)
    mean_error = np.empty(generations)
    trace[0] = (n_init - 1) * trace_real / covariance_denominator(n_init, covariance)
    mean_error[0] = trace_real / n_init
    fixed_real = loop in ("synthetic_augmentation", "bertrand")
    if fixed_real:
        # D_t = E|mu_t - xbar_r|^2 and C_t = E[(mu_t - xbar_r) . (xbar_r - m)] for the fixed
        # real mean xbar_r; nested prefixes of sizes a, b give Cov(xbar_a, xbar_b) = R / max(a, b).
        gap = trace_real * abs(1 / n_real - 1 / n_init)
        cross = trace_real * (1 / max(n_init, n_real) - 1 / n_real)
    for t in range(1, generations):
        previous_trace, previous_error = trace[t - 1], mean_error[t - 1]
        synthetic_noise = lam * previous_trace / n_syn if n_syn else 0.0  # E|xbar_s - mu_{t-1}|^2
        if fixed_real:
            gap_sq = gap + synthetic_noise  # E|xbar_s - xbar_r|^2
            gap = weight_syn ** 2 * gap_sq
            cross = weight_syn * cross
            mean_error[t] = gap + 2 * cross + trace_real / n_real
        else:
            real_noise = trace_real / n_real if n_real else 0.0  # E|xbar_r - m|^2
            gap_sq = previous_error + synthetic_noise + real_noise
            mean_error[t] = (n_real ** 2 * real_noise
                             + n_syn ** 2 * (previous_error + synthetic_noise)) / n ** 2
        scatter = (max(n_real - 1, 0) * trace_real + max(n_syn - 1, 0) * lam * previous_trace
                   + (n_real * n_syn / n) * gap_sq)
        trace[t] = scatter / covariance_denominator(n, covariance)
    return trace, mean_error


def expected_sqrt_chi2(dof: int) -> float:
    """E sqrt(X) for X ~ chi2_dof: sqrt(2) Gamma((dof + 1) / 2) / Gamma(dof / 2), through
    log-gammas (the ratio of gammas overflows beyond dof ~ 340). For dof = n - 1 it is
    sqrt(n - 1) c4(n), c4 the bias factor of the sample standard deviation."""
    return math.sqrt(2.0) * math.exp(gammaln((dof + 1) / 2) - gammaln(dof / 2))


def wishart_trace_moments(n: int, dim: int) -> tuple[float, float]:
    """(E tr W, E tr W^2) for W ~ Wishart(I_dim, n - 1), singular or not: W is a sum of
    k = n - 1 outer products x x^T of N(0, I) vectors, E x x^T = I and
    E (x x^T)^2 = (dim + 2) I, so E W^2 = k (k + dim + 1) I."""
    k = n - 1
    return float(k * dim), float(k * dim * (k + dim + 1))


def fit_w2_sq(n: int, dim: int, var: float, covariance: str, root_trace: float) -> float:
    """E W2^2 between one fit on n samples and P_r = N(m, var I_dim), given
    root_trace = E tr W^{1/2}, W ~ Wishart(I_dim, n - 1) the fit's scatter in units of var.

    W2^2 = |mu - m|^2 + tr Sigma + dim var - 2 sqrt(var) tr Sigma^{1/2} with
    Sigma = var W / k(n), so it is linear in root_trace (slope -2 var / sqrt(k(n))).
    """
    k = covariance_denominator(n, covariance)
    return var * (dim / n + dim * (n - 1) / k + dim - 2 * root_trace / math.sqrt(k))


def fit_expectation(metric: str, n: int, dim: int, var: float = 1.0,
                    covariance: str = "unbiased") -> float | None:
    """E metric of one Gaussian fit on n >= 2 samples of N(m, var I_dim), in closed form;
    None where there is none (w2 at any dim, w2_sq at dim > 1: simulate those).

    Metrics as mad_core records them: mean_err_sq = |mu - m|^2, trace = tr Sigma,
    logdet = log det Sigma (-inf when n - 1 < dim: Sigma is singular), w2_sq.
    At dim = 1 with the unbiased fit, E W2^2 = var (1/n + 2 - 2 c4(n)).
    """
    k = covariance_denominator(n, covariance)
    if metric == "mean_err_sq":
        return dim * var / n
    if metric == "trace":
        return dim * var * (n - 1) / k
    if metric == "logdet":
        if n - 1 < dim:
            return -math.inf
        # E log det W = sum_i [psi((n - 1 - i) / 2) + log 2] (Bartlett: independent chi2s).
        log_det_w = float(sum(digamma((n - 1 - i) / 2) for i in range(dim))) + dim * math.log(2)
        return dim * math.log(var / k) + log_det_w
    if metric == "w2_sq" and dim == 1:
        return fit_w2_sq(n, 1, var, covariance, expected_sqrt_chi2(n - 1))
    return None
