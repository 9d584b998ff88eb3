"""Inverting reference curves: synthetic curves with known inverses, bounds outside the
range, interval propagation, monotone pooling, and the errors."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from analysis.effective_size import (ABOVE, BELOW, Bounded, MonotoneCurve,
                                     pool_adjacent_violators_decreasing)

SIZES = np.geomspace(10, 10_000, 19)  # 6 points per decade, as the Gaussian curves use


def test_power_law_is_inverted_exactly():
    """f = c / n is a straight line in log-log space, which PCHIP reproduces exactly."""
    curve = MonotoneCurve(SIZES, 250.0 / SIZES)
    for n in (10.0, 37.0, 512.5, 9999.0):
        assert curve.inverse(250.0 / n).value == pytest.approx(n, rel=1e-9)


def test_curved_log_log_curve_within_the_interpolation_bound():
    """f = 1/n + 30/n^2 bends in log-log space; a monotone cubic through points h apart in
    log n errs by at most h^2 / 8 * max |g''| in log f (the piecewise-linear bound, which
    PCHIP on a convex curve stays within); the error in log n is that divided by |g'| >= 1."""
    def f(n):
        return 1 / n + 30 / n ** 2

    curve = MonotoneCurve(SIZES, f(SIZES))
    log_sizes = np.log(SIZES)
    step = log_sizes[1] - log_sizes[0]
    grid = np.linspace(log_sizes[0], log_sizes[-1], 2001)
    log_f = np.log(f(np.exp(grid)))
    curvature = np.abs(np.gradient(np.gradient(log_f, grid), grid)).max()
    tolerance = step ** 2 / 8 * curvature
    for n in np.geomspace(11, 9000, 25):
        assert abs(math.log(curve.inverse(f(n)).value / n)) <= tolerance


def test_outside_the_range_is_a_bound_never_an_extrapolation():
    curve = MonotoneCurve(SIZES, 250.0 / SIZES)
    below, above = curve.inverse(1000.0), curve.inverse(0.001)
    assert below.bound == BELOW and below.value == pytest.approx(10.0)  # worse than n_min
    assert above.bound == ABOVE and above.value == pytest.approx(10_000.0)
    assert curve.inverse(0.0).bound == ABOVE
    assert np.isnan(curve(5.0)) and np.isnan(curve(20_000.0))
    assert Bounded(10_000.0, ABOVE).text() == "> 1e+04"


def test_interval_maps_through_the_decreasing_curve():
    curve = MonotoneCurve(SIZES, 250.0 / SIZES)
    size = curve.effective_size(2.5, 2.0, 3.0)
    assert size.estimate.value == pytest.approx(100.0)
    assert size.low.value == pytest.approx(250 / 3.0) and size.high.value == pytest.approx(125.0)
    ratio = size.scaled(1 / 50)
    assert ratio.estimate.value == pytest.approx(2.0) and ratio.high.value == pytest.approx(2.5)
    # An interval reaching past the curve's end gives a bound on that side only.
    edge = curve.effective_size(0.03, 0.02, 0.04)
    assert edge.high.bound == ABOVE and edge.high.value == pytest.approx(10_000.0)
    assert edge.low.bound == "" and edge.estimate.bound == ""


def test_curve_noise_widens_the_interval():
    """An exact limit (zero-width interval) and a curve with 1 % error: the ends are where
    f -+ z se_f cross y, f(n) (1 -+ z r) = y, so n = 100 (1 -+ z r) for f = 250 / n."""
    exact = MonotoneCurve(SIZES, 250.0 / SIZES)
    noisy = MonotoneCurve(SIZES, 250.0 / SIZES, standard_error=0.01 * 250.0 / SIZES)
    z = norm.ppf(0.975)
    size = noisy.effective_size(2.5, 2.5, 2.5)
    assert exact.effective_size(2.5, 2.5, 2.5).low.value == pytest.approx(100.0)
    assert size.low.value == pytest.approx(100 * (1 - z * 0.01), rel=1e-9)
    assert size.high.value == pytest.approx(100 * (1 + z * 0.01), rel=1e-9)


def test_limit_and_curve_errors_add_in_quadrature():
    """Limit 2.5 in [2, 3], curve error a = z r of f: the low end's F = f(n) solves
    F - 2.5 = sqrt(0.5^2 + (a F)^2), i.e. (1 - a^2) F^2 - 5 F + 6 = 0, whose roots
    (5 +- sqrt(1 + 24 a^2)) / (2 (1 - a^2)) are the two ends' distances."""
    relative = 0.03
    curve = MonotoneCurve(SIZES, 250.0 / SIZES, standard_error=relative * 250.0 / SIZES)
    a = norm.ppf(0.975) * relative
    root = math.sqrt(1 + 24 * a ** 2)
    size = curve.effective_size(2.5, 2.0, 3.0)
    assert size.low.value == pytest.approx(250 * 2 * (1 - a ** 2) / (5 + root), rel=1e-9)
    assert size.high.value == pytest.approx(250 * 2 * (1 - a ** 2) / (5 - root), rel=1e-9)
    assert size.estimate.value == pytest.approx(100.0)


def test_curve_error_is_read_where_each_end_lies():
    """A curve whose error grows with n (2 % at n = 10 to 20 % at n = 10^4): each end's
    widening uses the error at that end, not at n_e."""
    relative = np.geomspace(0.02, 0.2, len(SIZES))
    curve = MonotoneCurve(SIZES, 250.0 / SIZES, standard_error=relative * 250.0 / SIZES)
    z = norm.ppf(0.975)
    size = curve.effective_size(2.5, 2.2, 2.8)
    for end, limit_half_width, side in ((size.low, 0.3, 1), (size.high, 0.3, -1)):
        n = end.value
        half_width = math.hypot(limit_half_width, z * curve.relative_error_at(n) * curve(n))
        assert curve(n) == pytest.approx(2.5 + side * half_width, rel=1e-9)
    assert curve.relative_error_at(size.high.value) > curve.relative_error_at(100.0)


def test_noisy_non_monotone_points_are_pooled_into_a_decreasing_curve():
    values = np.array([5.0, 4.0, 4.2, 3.0, 3.1, 3.05, 1.0])
    blocks = pool_adjacent_violators_decreasing(values)
    means = [mean for _, _, mean in blocks]
    assert [(start, stop) for start, stop, _ in blocks] == [(0, 1), (1, 3), (3, 6), (6, 7)]
    assert means == pytest.approx([5.0, 4.1, 3.05, 1.0])
    curve = MonotoneCurve(np.array([10, 20, 30, 40, 50, 60, 70.0]), values)
    assert np.all(np.diff(curve.log_y) < 0)  # strictly decreasing after pooling
    # Pooling is done on log f: the pooled point is the geometric mean of both coordinates.
    assert curve.inverse(math.sqrt(4.0 * 4.2)).value == pytest.approx(math.sqrt(20 * 30))


def test_curves_that_cannot_be_inverted_are_refused():
    with pytest.raises(ValueError, match="does not decrease"):
        MonotoneCurve(SIZES, SIZES / 100)
    with pytest.raises(ValueError, match="positive"):
        MonotoneCurve(SIZES, 1 / SIZES - 0.01)
    with pytest.raises(ValueError, match="two sample sizes"):
        MonotoneCurve(np.array([10.0]), np.array([2.0]))
