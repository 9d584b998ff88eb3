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
"""

from __future__ import annotations

import numpy as np

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
