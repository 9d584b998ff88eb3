"""Bertrand's stability question, trial by trial: after burn-in, does a retraining loop
settle (no trend in the metric) near the level that real data alone gives, or drift?

For a trial's series of a metric (the mean over its chains at generations 1..T):

1. Burn-in as for asymptotes (``mad_core.convergence.burn_in_generations``: G1 and the
   MSER-5 cut).
2. Trend: the least-squares line through the kept generations. Successive generations
   are correlated, so the slope's variance is the independent-noise one,
   s^2 / sum (t - mean t)^2, times tau, the integrated autocorrelation time of the
   residuals (of the residuals: a trend would inflate it); the t-test uses
   L / tau - 2 degrees of freedom for L kept generations. On AR(1) noise with phi up
   to 0.9 its false-alarm rate at 1 % measures 0.75-2 % (tests/test_analysis_stability.py).
3. Level: where a reference exists (the real-data-only runs: bertrand with lambda_B = 0,
   same other parameters, seeds pooled), Welch's t-test of the kept mean against the
   reference's, each mean's variance s^2 tau / L.

Verdict at level ALPHA: "drifts" (significant slope), else "settles away" (significant
level difference from the reference), else "settles"; "undetermined" with a reason when
the series is too short or non-finite, or shows no trend over fewer than MIN_EFFECTIVE
autocorrelation times (too little to call it settled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from mad_core.convergence import (ALPHA, MIN_RETAINED, burn_in_generations,
                                   integrated_autocorrelation_time)

VERDICTS = ("settles", "settles away", "drifts", "undetermined")
MIN_EFFECTIVE = 20  # kept generations per autocorrelation time needed (as for asymptotes)


@dataclass(frozen=True)
class Level:
    """A kept mean with its standard error and Welch degrees of freedom."""

    mean: float
    standard_error: float
    dof: float

    @staticmethod
    def pooled(levels: list["Level"]) -> "Level":
        """The average of independent levels (replicate seeds)."""
        variances = [level.standard_error ** 2 / len(levels) ** 2 for level in levels]
        return Level(float(np.mean([level.mean for level in levels])),
                     math.sqrt(sum(variances)), _welch_dof(variances, [l.dof for l in levels]))


def _welch_dof(variances: list[float], dofs: list[float]) -> float:
    total = sum(variances)
    denominator = sum(v ** 2 / d for v, d in zip(variances, dofs))
    return total ** 2 / denominator if denominator > 0 else math.inf


@dataclass(frozen=True)
class Stability:
    """A trial's verdict and the numbers behind it (slope in metric units per
    generation; level: the mean of the kept generations; p-values two-sided)."""

    verdict: str
    slope: float = math.nan
    slope_p: float = math.nan
    level: float = math.nan
    level_p: float = math.nan
    burn_in: int = 0
    autocorrelation_time: float = math.nan
    reason: str = ""


@dataclass(frozen=True)
class _Fit:
    burn_in: int
    slope: float
    slope_p: float
    level: Level
    tau: float


def _fit(series: np.ndarray) -> tuple[_Fit | None, int, str]:
    series = np.asarray(series, dtype=float)
    if not np.isfinite(series).all():
        return None, 0, "non-finite values in the series"
    burn_in = burn_in_generations(series)
    kept = series[burn_in:]
    if len(kept) < MIN_RETAINED:
        return None, burn_in, (f"only {len(kept)} generations after a burn-in of {burn_in}; "
                               f"needs {MIN_RETAINED}")
    generations = np.arange(burn_in, len(series)) + 1.0
    line = stats.linregress(generations, kept)
    residuals = kept - (line.intercept + line.slope * generations)
    tau = integrated_autocorrelation_time(residuals[None])
    effective = len(kept) / tau
    variance = residuals.var(ddof=2)
    spread = ((generations - generations.mean()) ** 2).sum()
    slope_error = math.sqrt(variance * tau / spread)
    dof = max(effective - 2, 1.0)
    slope_p = (float(2 * stats.t.sf(abs(line.slope) / slope_error, dof)) if slope_error > 0
               else float(line.slope == 0))
    level = Level(float(kept.mean()), math.sqrt(kept.var(ddof=1) * tau / len(kept)),
                  max(effective - 1, 1.0))
    return _Fit(burn_in, float(line.slope), slope_p, level, tau), burn_in, ""


def kept_level(series: np.ndarray) -> Level | None:
    """The kept mean of a (T,) series with its error, or None where it cannot be judged."""
    fit, _, _ = _fit(series)
    return None if fit is None else fit.level


def assess_stability(series: np.ndarray, reference: Level | None = None) -> Stability:
    """The verdict for one trial's (T,) series, against the real-data-only ``reference``
    level (``Level.pooled`` of ``kept_level`` over its seeds) when there is one."""
    fit, burn_in, reason = _fit(series)
    if fit is None:
        return Stability("undetermined", burn_in=burn_in, reason=reason)
    common = dict(slope=fit.slope, slope_p=fit.slope_p, level=fit.level.mean,
                  burn_in=fit.burn_in, autocorrelation_time=fit.tau)
    if fit.slope_p < ALPHA:  # the t-test's few degrees of freedom already price in tau
        return Stability("drifts", **common, reason=f"trend {fit.slope:+.3g} per generation "
                                                    f"(p = {fit.slope_p:.2g})")
    kept = len(series) - fit.burn_in
    if kept < MIN_EFFECTIVE * fit.tau:  # too few independent stretches to call it settled
        return Stability("undetermined", **common,
                         reason=f"no significant trend, but autocorrelation time "
                                f"{fit.tau:.0f} generations over {kept} kept; run about "
                                f"{math.ceil(MIN_EFFECTIVE * fit.tau) + fit.burn_in} generations")
    if reference is None:
        return Stability("settles", **common, reason=f"no trend (p = {fit.slope_p:.2g}); no "
                                                     f"real-data-only reference")
    error = math.hypot(fit.level.standard_error, reference.standard_error)
    dof = _welch_dof([fit.level.standard_error ** 2, reference.standard_error ** 2],
                     [fit.level.dof, reference.dof])
    difference = fit.level.mean - reference.mean
    level_p = (float(2 * stats.t.sf(abs(difference) / error, dof)) if error > 0
               else float(difference == 0))
    relative = difference / reference.mean if reference.mean else math.nan
    verdict = "settles away" if level_p < ALPHA else "settles"
    return Stability(verdict, **common, level_p=level_p,
                     reason=f"no trend (p = {fit.slope_p:.2g}); level {relative:+.1%} from "
                            f"real data alone (p = {level_p:.2g})")
