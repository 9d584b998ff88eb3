"""The limit of a metric over generations: burn-in, a batch-means interval, convergence;
and the rule that stops a trial once its own limit is known well enough.

One implementation for both users: ``analysis`` estimates each configuration's limit from
its logged records, and ``SelfConsumingLoop`` applies ``StopRule`` to the series of the
trial it runs.

Input: the per-generation value of one metric (the mean over a trial's chains) for S
replicate trials that differ only by seed, as an array (S, T) for generations 1..T.
Successive generations are correlated (each trains on the previous one's samples), so
the interval comes from batch means, not from treating generations as independent.

The rule, in order:

1. Burn-in. Generation 1 is always discarded (it trains on n_init real samples, a
   training set no later generation has). Then MSER-5 (White, 1997) on the seed-averaged
   series: cut it into batches of 5 generations, and discard the first d batches, d in
   0..J/2 of J, minimising the squared standard error of what remains,
   sum_{j >= d} (z_j - mean)^2 / (J - d)^2.
2. Batch means. What remains (per seed) must be at least MIN_RETAINED generations; it is
   cut into N_BATCHES equal batches ending at the last generation (the few generations
   that do not fill a batch are dropped from the start). The limit is the mean of the
   S * N_BATCHES batch means, its standard error their standard deviation over
   sqrt(S * N_BATCHES), and the 95 % interval uses Student's t with S * N_BATCHES - 1
   degrees of freedom.
3. Convergence. The estimate is withheld (nan) and the series flagged when any holds:
   fewer generations logged than the spec asked for; non-finite values; too few
   generations after burn-in; drift (the mean of the first half of the batches differs
   from the second half's, two-sided t-test at level ALPHA); or batches shorter than
   BATCH_OVER_TAU integrated autocorrelation times tau (estimated on the kept
   generations, see ``integrated_autocorrelation_time``), so that neighbouring batch
   means are still correlated and the interval would be too narrow. A kept run must so
   span about 20 tau. On AR(1) series the interval covers the limit in 93-96 % of runs;
   runs of 2-10 tau are flagged in over 90 % of cases (tests/test_convergence.py).

Seeds of different lengths (trials that a ``StopRule`` ended at different generations)
are pooled over their common prefix, generations 1..T_min of the shortest: burn-in is
chosen on the seed-averaged series, which needs the same generations from every seed.

The stop rule (a spec's ``stop``): at its check generations, the estimate on the trial's
own series of the chosen metric (S = 1); the trial stops at the first check where it has
converged and its 95 % half-width is at most ``rel_precision`` of the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

MSER_BATCH = 5  # generations per MSER batch (MSER-5)
N_BATCHES = 10  # batch means per seed
MIN_RETAINED = 2 * N_BATCHES  # generations after burn-in: batches of at least 2
CONFIDENCE = 0.95
ALPHA = 0.01  # level of the drift test
BATCH_OVER_TAU = 2.0  # batch length needed, in integrated autocorrelation times
SOKAL_WINDOW = 5.0  # window M: the smallest with M >= SOKAL_WINDOW * tau(M)
MAX_LAG_ONE = 0.999  # caps the AR(1) estimate of tau at ~2000 generations
# Stop checks: after every 1 / CHECK_SHARE (5 %) of the generations run so far, so that
# a check (one estimate: O(T log T) plus MSER's O(T^2 / 50) loop) costs a fast generation
# little, but never more often than every MIN_CHECK_INTERVAL generations.
CHECK_SHARE = 20
MIN_CHECK_INTERVAL = 10
# Generations a stop rule waits at least: G1 plus what the estimator must keep.
FEWEST_STOP_GENERATIONS = 1 + MIN_RETAINED


@dataclass(frozen=True)
class Asymptote:
    """The estimated limit of a metric's expected value over generations.

    ``value``, ``low`` and ``high`` (95 % interval) are nan unless ``converged``;
    ``reason`` then says why. ``burn_in`` counts the generations discarded (G1 included)
    and ``retained`` the generations per seed the batches use.
    """

    value: float
    low: float
    high: float
    standard_error: float
    burn_in: int
    retained: int
    seeds: int
    converged: bool
    reason: str = ""
    drift_t: float = math.nan
    autocorrelation_time: float = math.nan

    @property
    def relative_half_width(self) -> float:
        return (self.high - self.low) / (2 * abs(self.value)) if self.converged else math.nan


def mser_batches_discarded(batch_means: np.ndarray) -> int:
    """MSER: the number d of leading batches (0 <= d <= J // 2) whose removal minimises
    sum_{j >= d} (z_j - mean_{>= d})^2 / (J - d)^2 for batch means z of shape (J,)."""
    count = len(batch_means)
    scores = []
    for discarded in range(count // 2 + 1):
        rest = batch_means[discarded:]
        scores.append(((rest - rest.mean()) ** 2).sum() / len(rest) ** 2)
    return int(np.argmin(scores))


def burn_in_generations(series: np.ndarray) -> int:
    """Generations to discard from the start of a (T,) series: G1 plus MSER-5's cut."""
    after_first = series[1:]
    n_batches = len(after_first) // MSER_BATCH
    if n_batches < 2:
        return 1
    batch_means = after_first[:n_batches * MSER_BATCH].reshape(n_batches, MSER_BATCH).mean(axis=1)
    return 1 + MSER_BATCH * mser_batches_discarded(batch_means)


def _not_converged(reason: str, *, burn_in: int = 0, retained: int = 0, seeds: int = 1,
                   drift_t: float = math.nan, autocorrelation_time: float = math.nan
                   ) -> Asymptote:
    return Asymptote(math.nan, math.nan, math.nan, math.nan, burn_in, retained, seeds,
                     converged=False, reason=reason, drift_t=drift_t,
                     autocorrelation_time=autocorrelation_time)


def drift_statistic(batch_means: np.ndarray) -> tuple[float, int]:
    """t statistic of (first-half mean - second-half mean) of (S, B) batch means, B even,
    with the batch variance pooled within halves (so drift does not inflate it); and its
    degrees of freedom S * (B - 2)."""
    seeds, count = batch_means.shape
    first, second = batch_means[:, :count // 2], batch_means[:, count // 2:]
    difference = (first.mean(axis=1) - second.mean(axis=1)).mean()
    dof = seeds * (count - 2)
    pooled = (((first - first.mean(axis=1, keepdims=True)) ** 2).sum()
              + ((second - second.mean(axis=1, keepdims=True)) ** 2).sum()) / dof
    standard_error = math.sqrt(pooled * (4 / count) / seeds)
    if standard_error == 0:
        return (0.0 if difference == 0 else math.inf), dof
    return float(difference / standard_error), dof


def integrated_autocorrelation_time(series: np.ndarray) -> float:
    """tau = 1 + 2 sum_k rho_k of (S, L) series (each row centred on its own mean,
    autocovariances averaged over rows): 1 for uncorrelated values; tau / L is the
    variance of the mean relative to that of L independent values.

    The larger of two estimates, because each alone is too small on runs only a few
    tau long: Sokal's windowed sum (the smallest window M >= SOKAL_WINDOW * tau(M)), and
    the AR(1) value (1 + rho_1) / (1 - rho_1). The latter never exceeds the true tau of a
    mixture of AR(1) components (Jensen: (1 + phi) / (1 - phi) is convex in phi), the
    shape of the linear recursions a loop's statistics follow.
    """
    centred = series - series.mean(axis=1, keepdims=True)
    length = centred.shape[1]
    spectrum = np.fft.rfft(centred, n=2 * length, axis=1)
    autocovariance = np.fft.irfft(spectrum * spectrum.conj(), axis=1)[:, :length].mean(axis=0)
    if autocovariance[0] <= 0:
        return 1.0
    rho = autocovariance / autocovariance[0]
    taus = 2 * np.cumsum(rho) - 1
    window = np.arange(length) >= SOKAL_WINDOW * taus
    windowed = taus[np.argmax(window)] if window.any() else taus[-1]
    lag_one = min(rho[1], MAX_LAG_ONE) if length > 1 else 0.0
    return float(max(windowed, (1 + lag_one) / (1 - lag_one)))


def _seed_rows(series: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """The series of each seed, as float arrays (possibly of different lengths)."""
    if not isinstance(series, np.ndarray) and len(series) and all(
            np.ndim(row) == 1 for row in series):
        return [np.asarray(row, dtype=float) for row in series]
    return list(np.atleast_2d(np.asarray(series, dtype=float)))


def estimate_asymptote(series: np.ndarray | Sequence[np.ndarray],
                       expected_generations: int | Sequence[int] | None = None) -> Asymptote:
    """The limit of a metric's series, with a batch-means interval and convergence checks.

    Args:
        series: (S, T) or (T,): the metric at generations 1..T for S seeds (replicate trials
            of one configuration; each value a mean over that trial's chains); or S
            one-dimensional series of different lengths (seeds stopped at different
            generations), pooled over their common prefix, the shortest length.
        expected_generations: generations the spec asked for (one number, or one per
            seed); a seed that logged fewer is flagged incomplete. A trial that its stop
            rule ended is complete at the generation it stopped.
    """
    rows = _seed_rows(series)
    seeds = len(rows)
    lengths = [len(row) for row in rows]
    if expected_generations is not None:
        expected = np.broadcast_to(expected_generations, (seeds,))
        for seed, (length, wanted) in enumerate(zip(lengths, expected)):
            if length < wanted:
                which = f" (seed {seed + 1} of {seeds})" if seeds > 1 else ""
                return _not_converged(f"incomplete: {length} of {wanted} generations "
                                      f"logged{which}", seeds=seeds)
    logged = min(lengths)
    series = np.stack([row[:logged] for row in rows])
    if not np.isfinite(series).all():
        return _not_converged("non-finite values in the series", seeds=seeds)
    burn_in = burn_in_generations(series.mean(axis=0))
    retained = logged - burn_in
    if retained < MIN_RETAINED:
        return _not_converged(f"only {retained} generations after a burn-in of {burn_in}; "
                              f"needs {MIN_RETAINED}: run more generations",
                              burn_in=burn_in, retained=retained, seeds=seeds)
    batch = retained // N_BATCHES
    used = batch * N_BATCHES
    batch_means = series[:, logged - used:].reshape(seeds, N_BATCHES, batch).mean(axis=2)

    # Imported here: every trial process and spec validation imports this module, and
    # scipy.stats takes ~1 s to import.
    from scipy import stats

    drift_t, drift_dof = drift_statistic(batch_means)
    tau = integrated_autocorrelation_time(series[:, logged - used:])
    diagnostics = dict(burn_in=logged - used, retained=used, seeds=seeds,
                       drift_t=drift_t, autocorrelation_time=tau)
    if abs(drift_t) > stats.t.ppf(1 - ALPHA / 2, drift_dof):
        return _not_converged(f"drifting: the second half of the kept generations differs "
                              f"from the first (t = {drift_t:.1f}); run more generations",
                              **diagnostics)
    if batch < BATCH_OVER_TAU * tau:
        needed = math.ceil(N_BATCHES * BATCH_OVER_TAU * tau) + logged - used
        return _not_converged(f"correlated: autocorrelation time {tau:.0f} generations, "
                              f"batches of {batch}; run about {needed} generations",
                              **diagnostics)
    values = batch_means.ravel()
    value = float(values.mean())
    standard_error = float(values.std(ddof=1) / math.sqrt(len(values)))
    half_width = stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * standard_error
    return Asymptote(value, value - half_width, value + half_width, standard_error,
                     converged=True, **diagnostics)


@dataclass(frozen=True)
class StopRule:
    """Stop a trial once the limit of one of its metrics is known well enough.

    Checked at generation ``min_generations`` and then, after a check at generation c,
    at c + max(MIN_CHECK_INTERVAL, ceil(c / CHECK_SHARE)) (50, 60, ..., 200, 210, 221,
    ... for min_generations = 50): a fixed schedule, so the decision depends on the
    series alone and a resumed trial stops where an uninterrupted one does. A check
    estimates the limit of the trial's own series of ``metric`` (S = 1); the rule is met
    when that estimate converged and both its 95 % half-width and the half-width
    1.96 sd sqrt(tau / L) of the L kept generations (tau: their integrated
    autocorrelation time) are at most ``rel_precision`` times the value.

    Why the second width: ten batch means give a half-width with 9 degrees of freedom,
    itself uncertain by about a quarter, and stopping at the first check where it is
    narrow picks intervals that came out narrow by chance. The tau-based width uses the
    whole kept series and varies far less. On AR(1) series (200 runs each, +-0.5 %), the
    stopped intervals covered the limit in 85.5 % (phi 0.5) and 78.5 % (phi 0.9) of runs
    with the batch width alone, and in 92.0 % and 86.0 % with both; a fixed 3,000
    generations covered it in 93.9 % (phi 0.5). docs/analysis.md has the table.

    Attributes:
        metric: a record key (``w2_sq_mean``).
        rel_precision: the relative half-width wanted, in (0, 1).
        min_generations: the first check; at least FEWEST_STOP_GENERATIONS.
    """

    metric: str
    rel_precision: float
    min_generations: int

    def next_check(self, generation: int) -> int:
        """The first check generation at or after ``generation``."""
        check = self.min_generations
        while check < generation:
            check += max(MIN_CHECK_INTERVAL, -(-check // CHECK_SHARE))
        return check

    def check(self, series: np.ndarray) -> tuple[bool, Asymptote]:
        """(whether the rule is met, the estimate) for a (T,) series of ``metric``."""
        asymptote = estimate_asymptote(series)
        if not asymptote.converged:
            return False, asymptote
        kept = np.asarray(series[asymptote.burn_in:], dtype=float)
        tau_half_width = 1.96 * kept.std(ddof=1) * math.sqrt(
            asymptote.autocorrelation_time / len(kept))
        half_width = max(asymptote.high - asymptote.value, tau_half_width)
        return half_width <= self.rel_precision * abs(asymptote.value), asymptote

    def describe(self) -> str:
        return (f"stop once {self.metric}'s 95 % interval is within "
                f"+-{100 * self.rel_precision:g} % of its limit, checked from "
                f"G{self.min_generations} every max({MIN_CHECK_INTERVAL}, "
                f"{100 / CHECK_SHARE:g} % of the generations so far)")
