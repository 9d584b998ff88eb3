"""Reference curves f(n) = E dist(model fit on n real samples only, P_r).

n_e inverts f. Two sources:

- Gaussian model on a Gaussian source: f is computed with mad_core's exact simulator
  (a spec of one generation on n_init = n real samples, many chains). E W2^2 has no
  closed form (it involves square roots of Wishart eigenvalues), but the simulation
  costs O(d^3) per chain whatever n is, and is exact in distribution.
- Any other model: measured from the baseline trials of a named sweep (one generation
  on n_init = n real samples), averaged over the trials that share n_init.

A curve belongs to one "reference configuration": everything that defines P_r, the
model class and the metric (``REFERENCE_PREFIXES`` keys plus ``model``); the loop, the
sampling bias and the sizes do not enter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from mad_core.loop import SelfConsumingLoop
from mad_core.spec import exact_simulation_possible, resolve_spec

REFERENCE_PREFIXES = ("data.", "model_options.", "metrics.")
GAUSSIAN_CHAINS = 100  # W2^2 at d = 100 has a relative chain sd ~2 %: ~0.2 % per point
GAUSSIAN_SEED = 0
POINTS_PER_DECADE = 6


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


def gaussian_reference_curve(parameters: Mapping[str, Any], metric: str, sizes: np.ndarray,
                             chains: int = GAUSSIAN_CHAINS, seed: int = GAUSSIAN_SEED
                             ) -> ReferenceCurve:
    """f(n) for a Gaussian model on its Gaussian source, by the exact simulator.

    Args:
        parameters: a trial's typed parameters (dotted keys); data.* and model_options.*
            are used.
        metric: a metric of mad_core's Gaussian records (w2_sq, w2, ...).
        sizes: (K,) sample sizes n >= 2.
    """
    values, errors = [], []
    # Batches of small (d x d) matrices: BLAS threads only add overhead (5x slower with
    # two threads on a busy 2-core machine).
    with threadpool_limits(1):
        for n in sizes:
            spec = resolve_spec({"model": "gaussian", "loop": "fully_synthetic",
                                 "n_init": int(n), "n_syn": 2, "generations": 1,
                                 "chains": chains, "seed": seed, "simulation": "exact",
                                 "data": nest_parameters(parameters, "data"),
                                 "model_options": nest_parameters(parameters, "model_options")})
            record = SelfConsumingLoop(spec).step()
            values.append(record[f"{metric}_mean"])
            errors.append(record[f"{metric}_sem"])
    return ReferenceCurve(np.asarray(sizes, dtype=float), np.array(values), np.array(errors),
                          metric, f"exact Gaussian simulator, {chains} chains per n")


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
