"""Inverting a decreasing reference curve f(n): effective sample sizes with intervals.

f(n) = E dist(model fit on n real samples, P_r) is decreasing in n. It is known at a
grid of n (measured or simulated, with Monte Carlo noise), so it is first made monotone
(pool-adjacent-violators on log f), then interpolated by a monotone cubic (PCHIP) in
log-log space, where such curves are close to straight lines. n_e solves f(n_e) = y.
A y outside the curve's range gives a bound (n_e < n_min or n_e > n_max), never an
extrapolated number.

The interval on n_e covers two independent errors: the limit's (from the sweep's chains)
and the curve's own Monte Carlo error (from the reference's draws, independent of the
sweep's and, for a computed Gaussian curve, independent across n). It is every n at which
f(n) is compatible with the limit (``MonotoneCurve.effective_size``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.optimize import brentq
from scipy.stats import norm

INSIDE, BELOW, ABOVE = "", "<", ">"


@dataclass(frozen=True)
class Bounded:
    """A number, or a bound on it: ``bound`` is "" (exact), "<" or ">" (then ``value`` is
    the end of the range it lies beyond)."""

    value: float
    bound: str = INSIDE

    def scaled(self, factor: float) -> "Bounded":
        return Bounded(self.value * factor, self.bound)

    def text(self, digits: int = 3) -> str:
        if math.isnan(self.value):
            return "n/a"
        number = f"{self.value:.{digits}g}"
        return f"{self.bound} {number}" if self.bound else number


@dataclass(frozen=True)
class EffectiveSize:
    """n_e with its interval; low/high come from the upper/lower end of the distance's
    interval (f decreases)."""

    estimate: Bounded
    low: Bounded
    high: Bounded

    def scaled(self, factor: float) -> "EffectiveSize":
        return EffectiveSize(self.estimate.scaled(factor), self.low.scaled(factor),
                             self.high.scaled(factor))


def pool_adjacent_violators_decreasing(values: np.ndarray) -> list[tuple[int, int, float]]:
    """Blocks (start, stop, mean) of the least-squares decreasing fit to values (K,):
    adjacent points that violate the order are pooled into their mean."""
    blocks: list[list] = []  # [start, stop, total, count]
    for index, value in enumerate(values):
        blocks.append([index, index + 1, float(value), 1])
        while len(blocks) > 1 and blocks[-2][2] / blocks[-2][3] <= blocks[-1][2] / blocks[-1][3]:
            start, _, total, count = blocks[-2]
            _, stop, last_total, last_count = blocks.pop()
            blocks[-1] = [start, stop, total + last_total, count + last_count]
    return [(start, stop, total / count) for start, stop, total, count in blocks]


class MonotoneCurve:
    """A decreasing curve y = f(n) through measured points, monotone-cubic in log-log.

    Args:
        n: (K,) sample sizes (> 0); y: (K,) values (> 0); standard_error: (K,) or None,
            the Monte Carlo standard error of y, carried into intervals.
    Raises:
        ValueError: fewer than two sample sizes, non-positive values, or a curve whose last
            value is not below its first (f must decrease with n; then pooling always
            leaves at least two points).
    """

    def __init__(self, n, y, standard_error=None):
        order = np.argsort(n)
        n = np.asarray(n, dtype=float)[order]
        y = np.asarray(y, dtype=float)[order]
        error = (np.zeros_like(y) if standard_error is None
                 else np.nan_to_num(np.asarray(standard_error, dtype=float)[order]))
        if len(np.unique(n)) < 2:
            raise ValueError("a reference curve needs at least two sample sizes")
        if (n <= 0).any() or (y <= 0).any() or not np.isfinite(y).all():
            raise ValueError("a reference curve needs positive sample sizes and positive, "
                             "finite values")
        if y[-1] >= y[0]:
            raise ValueError(f"the reference curve does not decrease with n (f({n[0]:g}) = "
                             f"{y[0]:.4g}, f({n[-1]:g}) = {y[-1]:.4g}); n_e needs a distance "
                             f"that falls as the model sees more real data")
        log_n, log_y, relative_error = [], [], []
        for start, stop, log_mean in pool_adjacent_violators_decreasing(np.log(y)):
            # A pooled block becomes one point at its geometric-mean n: strictly decreasing.
            log_n.append(np.log(n[start:stop]).mean())
            log_y.append(log_mean)
            relative_error.append((error[start:stop] / y[start:stop]).mean())
        self.log_n = np.array(log_n)
        self.log_y = np.array(log_y)
        self.relative_error = np.array(relative_error)
        self._log_curve = PchipInterpolator(self.log_n, self.log_y)

    @property
    def n_min(self) -> float:
        return float(np.exp(self.log_n[0]))

    @property
    def n_max(self) -> float:
        return float(np.exp(self.log_n[-1]))

    def __call__(self, n) -> np.ndarray:
        """f(n) inside [n_min, n_max]; nan outside (no extrapolation)."""
        log_n = np.log(np.asarray(n, dtype=float))
        inside = (log_n >= self.log_n[0]) & (log_n <= self.log_n[-1])
        return np.where(inside, np.exp(self._log_curve(np.clip(log_n, self.log_n[0],
                                                               self.log_n[-1]))), np.nan)

    def relative_error_at(self, n: float) -> float:
        """The curve's relative Monte Carlo error at n (linear in log n, clamped)."""
        return float(np.interp(math.log(n), self.log_n, self.relative_error))

    def solve(self, target: Callable[[float], float]) -> Bounded:
        """n with f(n) = target(n), or a bound at the end of the range it lies beyond.

        ``target`` may depend on n (an end of the n_e interval, which widens with the curve's
        error at n); f(n) - target(n) must decrease in n, as it does for a constant target.
        """
        def gap(log_n: float) -> float:
            return math.exp(float(self._log_curve(log_n))) - target(math.exp(log_n))

        first, last = gap(self.log_n[0]), gap(self.log_n[-1])
        if first <= 0:
            return Bounded(self.n_min, INSIDE if first == 0 else BELOW)
        if last >= 0:
            return Bounded(self.n_max, INSIDE if last == 0 else ABOVE)
        return Bounded(float(math.exp(brentq(gap, self.log_n[0], self.log_n[-1], xtol=1e-12))))

    def inverse(self, y: float) -> Bounded:
        """n with f(n) = y, or a bound when y lies outside [f(n_max), f(n_min)]."""
        return self.solve(lambda n: y)

    def effective_size(self, y: float, low: float, high: float,
                       confidence: float = 0.95) -> EffectiveSize:
        """n_e for a distance y with interval [low, high], widened by the curve's own error.

        The interval is every n at which f(n) is compatible with the limit:
        -(y - low)' <= f(n) - y <= (high - y)', where each half-width h of the limit's
        interval becomes h' = sqrt(h^2 + (z se_f(n))^2), se_f(n) the curve's standard error
        at that n and z the normal quantile of ``confidence``. So the low end of n_e is
        where f(n) meets y + (high - y)', and the high end where it meets y - (y - low)';
        with an exact limit (low = high = y) the ends are where f -+ z se_f cross y.

        Why the quadrature sum: the limit and the curve come from independent draws, so
        Var(y - f(n)) is the sum of their variances, and adding the two half-widths in
        quadrature is that sum at one confidence level (exact for two normal errors; the
        limit's Student-t half-width keeps its own, slightly larger quantile, which errs
        on the wide side). The curve's error is taken at the candidate n, not at n_e, so
        that an end far from n_e uses the curve's error where the curve is read.
        """
        z = norm.ppf(0.5 + confidence / 2)

        def half_width(limit_half_width: float, n: float) -> float:
            curve_error = self.relative_error_at(n) * float(self(n))
            return math.hypot(limit_half_width, z * curve_error)

        return EffectiveSize(self.inverse(y),
                             low=self.solve(lambda n: y + half_width(high - y, n)),
                             high=self.solve(lambda n: y - half_width(y - low, n)))
