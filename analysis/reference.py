"""Reference curves f(n) = E dist(model fit on n real samples only, P_r).

n_e inverts f. Two sources:

- Gaussian model on a Gaussian source (P_r = N(m, v I_d), no finite pool): computed, exact
  where that is cheap and simulated to a stated precision elsewhere.
  - Closed form (``analysis.gaussian_theory.fit_expectation``): W2^2 at d = 1, and the
    mean error, trace and log det at every d.
  - W2^2 at d > 1: W2^2 = |mu - m|^2 + tr Sigma + d v - 2 sqrt(v) tr Sigma^{1/2}, and every
    term's expectation is exact but E tr W^{1/2}, W ~ Wishart(I_d, n - 1) the fit's
    scatter (``gaussian_theory.fit_w2_sq``). Only that is simulated, with mad_core's exact
    sampler of a scatter matrix (``exact_gaussian.draw_stats``), and with tr W and tr W^2
    as control variates: their expectations are known, and tr W^{1/2} is close to linear
    in them (a Taylor expansion of sqrt around each eigenvalue's mean). At n = 1000 they
    cut the chains that a given precision needs by a factor 10^3 (d = 100) to 10^6 (d = 2).
  - W2 (no closed form at any d): sqrt(W2^2) per chain, with |mu - m|^2, tr W and tr W^2
    as control variates.
  Chains: a pilot batch (``PILOT_CHAINS``, more at d <= 2), then as many more as a target
  relative standard error of f(n) needs (0.2 % by default), again until it is met or the
  cap is reached (2^24 / d^2 chains per n: a few seconds at most per n on one core). The
  source says which relative standard error every point reached.
  Draws are independent across n: the generator of size n is derived from (seed, n).
  A draw shared by every n (common random numbers) makes the curve's error one smooth
  shift common to all n, which moves every n_e the same way (with 100 chains at d = 1 the
  shift was 10 % of f, and n_s = 0 gave n_e / n_r = 0.9 where it is 1 by construction);
  nothing that n_e is compared with shares those draws, so the shift never cancels.
  Independent errors are what each point's standard error describes, and what the n_e
  interval adds (``analysis.effective_size``).
- Any other model: measured from the baseline trials of a named sweep (one generation on
  n_init = n real samples), averaged over the trials that share n_init.

A curve belongs to one "reference configuration": everything that defines P_r, the
model class and the metric (``REFERENCE_PREFIXES`` keys plus ``model``); the loop, the
sampling bias and the sizes do not enter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from analysis.gaussian_theory import fit_expectation, fit_w2_sq, wishart_trace_moments
from mad_core.exact_gaussian import draw_stats
from mad_core.models.gaussian import covariance_denominator
from mad_core.spec import exact_simulation_possible, resolve_spec

REFERENCE_PREFIXES = ("data.", "model_options.", "metrics.")
POINTS_PER_DECADE = 6
GAUSSIAN_SEED = 0
# Part of the cache key of computed curves: change it when their computation changes.
GAUSSIAN_CURVE_VERSION = 2
TARGET_RELATIVE_ERROR = 0.002  # 0.2 % of f(n): ~0.2 % on n_e where f ~ 1/n
# The pilot: at least 256 chains, and 2^14 / d^2 (16k at d = 1, 4k at d = 2). At d <= 2
# the control-variate residual is heavy-tailed (about a cube of one near-normal
# eigenvalue) and its standard error is reliable only over thousands of chains (measured:
# the sd of (estimate - truth) / s.e. is 1.15 at 300 chains, 1.0 at 5000); at d >= 4 it
# sums over eigenvalues and 256 chains suffice (0.95-1.07).
PILOT_CHAINS = 256
PILOT_ENTRIES = 2 ** 14
CAP_ENTRIES = 2 ** 24  # chains x d^2 per n: 1.7k chains at d = 100, 4M at d = 2
BATCH_ENTRIES = 2 ** 20  # chains x d^2 drawn at once (~10 MB per matrix array)
# The curve's own random stream key; mad_core.seeding keys trials' streams 1-5, so no
# trial of any seed draws what the curve draws.
REFERENCE_STREAM = 100
SIMULATED_METRICS = ("w2_sq", "w2")


@dataclass(frozen=True)
class ReferenceCurve:
    """f at sample sizes n (K,) increasing, with Monte Carlo standard errors (K,)."""

    n: np.ndarray
    value: np.ndarray
    standard_error: np.ndarray
    metric: str
    source: str  # how it was obtained, for tables and figure captions

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"n": self.n, self.metric: self.value,
                             f"{self.metric}_sem": self.standard_error})


def reference_key_columns(columns) -> list[str]:
    """The parameter columns that define a reference configuration."""
    return ["model", *sorted(c for c in columns if c.startswith(REFERENCE_PREFIXES))]


def nest_parameters(parameters: Mapping[str, Any], section: str) -> dict[str, Any]:
    """{"data.dim": 100, ...} -> {"dim": 100, ...} for one section, nulls dropped."""
    prefix = section + "."
    return {key[len(prefix):]: value for key, value in parameters.items()
            if key.startswith(prefix) and value is not None and not pd.isna(value)}


def exact_gaussian_applies(parameters: Mapping[str, Any]) -> bool:
    """Whether a trial's typed parameters (dotted keys) allow the exact simulator."""
    return exact_simulation_possible(parameters.get("model"),
                                     nest_parameters(parameters, "data"))


def log_spaced_sizes(low: float, high: float, per_decade: int = POINTS_PER_DECADE) -> np.ndarray:
    """Distinct integers from low to high (inclusive), log-spaced."""
    count = max(2, int(np.ceil(np.log10(high / low) * per_decade)) + 1)
    return np.unique(np.round(np.geomspace(low, high, count)).astype(int))


def gaussian_setting(parameters: Mapping[str, Any]) -> tuple[int, float, str]:
    """(d, v, covariance estimator) of a Gaussian model on P_r = N(m, v I_d), from a
    trial's typed parameters, validated and defaulted as a spec is."""
    spec = resolve_spec({"model": "gaussian", "loop": "fully_synthetic", "n_init": 2,
                         "n_syn": 2, "generations": 1, "simulation": "exact",
                         "data": nest_parameters(parameters, "data"),
                         "model_options": nest_parameters(parameters, "model_options")})
    return (int(spec.data["dim"]), float(spec.data["var"]),
            spec.model_options["covariance"])


def size_generator(seed: int, n: int) -> np.random.Generator:
    """The generator of the curve's draws at size n: independent across n and seeds."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(REFERENCE_STREAM, n)))


def control_variate_mean(values: np.ndarray, controls: np.ndarray,
                         control_means: np.ndarray) -> tuple[float, float]:
    """E values by the regression control-variate estimator, with its standard error.

    mean(values) - (mean(controls) - control_means) beta, beta the least-squares slope of
    values on the controls: unbiased up to O(1 / C), and its standard error is the
    residuals' standard deviation (C - q - 1 degrees of freedom) over sqrt(C).

    Args:
        values: (C,) per-chain draws; controls: (C, q) per-chain draws of statistics whose
            expectations control_means (q,) are known exactly.
    """
    centred = controls - controls.mean(axis=0)
    beta = np.linalg.lstsq(centred, values - values.mean(), rcond=None)[0]
    residual = values - values.mean() - centred @ beta
    chains, count = controls.shape
    estimate = values.mean() - (controls.mean(axis=0) - control_means) @ beta
    return float(estimate), float(np.sqrt(residual @ residual / (chains - count - 1) / chains))


def wishart_statistics(n: int, dim: int, chains: int,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-chain statistics (C,) of a fit on n points of N(0, I_dim): mean_sq = |xbar|^2,
    and trace, trace_sq, root_trace = tr W, tr W^2, tr W^{1/2} of the scatter W."""
    stats = draw_stats(n, np.zeros(dim), 1.0, chains, rng)
    # Round-off leaves tiny negative eigenvalues when W is singular (n - 1 < d).
    eigenvalues = np.clip(np.linalg.eigvalsh(stats.scatter), 0.0, None)
    return {"mean_sq": (stats.mean ** 2).sum(axis=-1), "trace": eigenvalues.sum(axis=-1),
            "trace_sq": (eigenvalues ** 2).sum(axis=-1),
            "root_trace": np.sqrt(eigenvalues).sum(axis=-1)}


def simulated_point(metric: str, n: int, dim: int, var: float, covariance: str,
                    rng: np.random.Generator, target: float, max_chains: int
                    ) -> tuple[float, float]:
    """(f(n), its standard error) for metric w2_sq or w2, by control variates, with chains
    added until the standard error is at most ``target`` of f(n) or max_chains are used."""
    k = covariance_denominator(n, covariance)
    trace_mean, trace_sq_mean = wishart_trace_moments(n, dim)
    if metric == "w2_sq":
        def draw(chains):
            stats = wishart_statistics(n, dim, chains, rng)
            return stats["root_trace"], np.stack([stats["trace"], stats["trace_sq"]], axis=1)

        control_means = np.array([trace_mean, trace_sq_mean])
        slope = 2 * var / math.sqrt(k)  # |d f / d E tr W^{1/2}|

        def to_metric(mean, error):
            return fit_w2_sq(n, dim, var, covariance, mean), slope * error
    else:
        def draw(chains):
            stats = wishart_statistics(n, dim, chains, rng)
            w2_sq = (stats["mean_sq"] + stats["trace"] / k + dim
                     - 2 * stats["root_trace"] / math.sqrt(k))
            controls = np.stack([stats["mean_sq"], stats["trace"], stats["trace_sq"]], axis=1)
            return np.sqrt(np.clip(w2_sq, 0.0, None)), controls

        control_means = np.array([dim / n, trace_mean, trace_sq_mean])

        def to_metric(mean, error):  # W2 scales with the standard deviation of P_r
            return math.sqrt(var) * mean, math.sqrt(var) * error
    return adaptive_estimate(draw, control_means, to_metric, target,
                             pilot=max(PILOT_CHAINS, PILOT_ENTRIES // dim ** 2),
                             max_chains=max_chains, batch=max(1, BATCH_ENTRIES // dim ** 2))


def adaptive_estimate(draw: Callable[[int], tuple[np.ndarray, np.ndarray]],
                      control_means: np.ndarray,
                      to_metric: Callable[[float, float], tuple[float, float]],
                      target: float, pilot: int, max_chains: int, batch: int
                      ) -> tuple[float, float]:
    """A pilot of ``pilot`` chains, then as many more as the relative standard error
    ``target`` needs (it falls as 1 / sqrt(chains)), repeated while it is not met and
    fewer than max_chains are drawn; (value, standard error) on all chains drawn.

    Args:
        draw: chains -> (values (C,), controls (C, q)), fresh draws each call.
        to_metric: (E values, its standard error) -> (f(n), its standard error).
        batch: chains drawn per call of ``draw`` (bounds memory).
    """
    values, controls = [], []
    drawn, wanted = 0, min(pilot, max_chains)
    while True:
        while drawn < wanted:
            chunk = draw(min(batch, wanted - drawn))
            values.append(chunk[0])
            controls.append(chunk[1])
            drawn += len(chunk[0])
        value, error = to_metric(*control_variate_mean(np.concatenate(values),
                                                       np.concatenate(controls),
                                                       control_means))
        relative = error / abs(value)
        if relative <= target or drawn >= max_chains:
            return value, error
        # 10 % more than the estimate asks, against the estimate's own noise.
        wanted = min(max_chains, math.ceil(1.1 * drawn * (relative / target) ** 2))


def gaussian_reference_curve(parameters: Mapping[str, Any], metric: str, sizes: np.ndarray,
                             *, target: float = TARGET_RELATIVE_ERROR,
                             seed: int = GAUSSIAN_SEED) -> ReferenceCurve:
    """f(n) for a Gaussian model on its Gaussian source: closed form where there is one,
    else simulated to a relative standard error ``target`` per n (module docstring).

    Args:
        parameters: a trial's typed parameters (dotted keys); data.* and model_options.*
            are used.
        metric: a metric of mad_core's Gaussian records (w2_sq, w2, mean_err_sq, trace,
            logdet).
        sizes: (K,) sample sizes n >= 2.
        target: the relative standard error each simulated point is drawn to.
        seed: with n, derives each point's generator (``size_generator``).
    Raises:
        ValueError: a metric that is neither in closed form nor simulated.
    """
    dim, var, covariance = gaussian_setting(parameters)
    exact = [fit_expectation(metric, int(n), dim, var, covariance) for n in sizes]
    if None not in exact:
        return ReferenceCurve(np.asarray(sizes, dtype=float), np.array(exact),
                              np.zeros(len(exact)), metric, f"closed form, d = {dim}")
    if metric not in SIMULATED_METRICS:
        raise ValueError(f"no Gaussian reference curve for metric {metric!r}; known: "
                         f"{', '.join(SIMULATED_METRICS)}, mean_err_sq, trace, logdet")
    max_chains = max(PILOT_CHAINS, CAP_ENTRIES // dim ** 2)
    # Batches of small (d x d) matrices: BLAS threads only add overhead (5x slower with
    # two threads on a busy 2-core machine).
    with threadpool_limits(1):
        points = [simulated_point(metric, int(n), dim, var, covariance,
                                  size_generator(seed, int(n)), target, max_chains)
                  for n in sizes]
    value, error = (np.array(column) for column in zip(*points))
    worst = float((error / value).max())
    return ReferenceCurve(np.asarray(sizes, dtype=float), value, error, metric,
                          f"exact Gaussian simulator + control variates, d = {dim}, "
                          f"s.e. <= {100 * worst:.2g} % per n")


def baseline_reference_curve(first_generation: pd.DataFrame, metric: str,
                             sweep_name: str) -> ReferenceCurve:
    """f(n) measured on baseline trials: their generation-1 records, grouped by n_init.

    Args:
        first_generation: generation-1 rows of one reference configuration, with columns
            n_init, ``<metric>_mean`` and (when chains > 1) ``<metric>_sem``.
    The value at n is the mean over the trials with n_init = n; its standard error
    combines the trials' chain standard errors (independent trials).
    """
    mean_column, sem_column = f"{metric}_mean", f"{metric}_sem"
    if mean_column not in first_generation:
        raise ValueError(f"baseline sweep {sweep_name!r} has no metric {mean_column}")
    grouped = first_generation.groupby("n_init")
    value = grouped[mean_column].mean()
    if sem_column in first_generation:
        error = grouped[sem_column].apply(lambda s: np.sqrt((s ** 2).sum()) / len(s))
    else:
        error = grouped[mean_column].sem()
    return ReferenceCurve(value.index.to_numpy(dtype=float), value.to_numpy(),
                          error.to_numpy(), metric,
                          f"baseline sweep {sweep_name} ({len(first_generation)} trials)")
