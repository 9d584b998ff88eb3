"""Tables of asymptotes and effective sample sizes for a loaded sweep.

Replicates: trials whose parameters differ only by ``seed`` (and the free-text ``name``)
form a group; its asymptote pools their series (``mad_core.convergence``). Each group is
described by the parameters that vary across the sweep.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.effective_size import MonotoneCurve
from analysis.load import Sweep
from mad_core.convergence import Asymptote, estimate_asymptote

REPLICATE_PARAMETERS = ("seed", "name")  # differ between replicates of one configuration
# Distances n_e can be computed for (they fall as a model sees more real data), in the
# order the default is chosen: MAD's "WD" is W2^2.
DISTANCE_METRICS = ("w2_sq", "w2", "w2_sq_emp", "w2_emp", "fid", "kid")


class AnalysisError(ValueError):
    """The analysis cannot proceed as asked (an unknown metric, an unusable reference)."""


ASYMPTOTE_COLUMNS = ("value", "low", "high", "standard_error", "burn_in", "retained", "seeds",
                     "converged", "reason", "autocorrelation_time", "drift_t")


def as_text(table: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text, missing values included ("None", "<NA>"), for comparing."""
    return table.astype(object).map(str)


def varying_parameters(sweep: Sweep) -> list[str]:
    """Parameters with more than one value across the sweep's trials, seed and name excluded."""
    keys = [p for p in sweep.parameters if p not in REPLICATE_PARAMETERS]
    counts = as_text(sweep.trials[keys]).nunique()
    return [p for p in keys if counts[p] > 1]


def group_ids(sweep: Sweep) -> pd.Series:
    """Replicate group number (0, 1, ...) of each trial, indexed by run_id."""
    trials = sweep.trials
    keys = [p for p in sweep.parameters if p not in REPLICATE_PARAMETERS]
    labels = (as_text(trials[keys]).agg("|".join, axis=1) if keys
              else pd.Series("", trials.index))
    codes = pd.factorize(labels, sort=True)[0]
    return pd.Series(codes, index=trials["run_id"], name="group")


def default_distance(sweep: Sweep) -> str:
    """The first of DISTANCE_METRICS the sweep recorded."""
    for metric in DISTANCE_METRICS:
        if f"{metric}_mean" in sweep.metrics:
            return metric
    raise AnalysisError(f"sweep {sweep.name!r} records none of the distances "
                        f"{', '.join(DISTANCE_METRICS)}")


def summary_metrics(sweep: Sweep) -> list[str]:
    """Metric names with a ``_mean`` summary in the records (w2_sq, trace, precision, ...)."""
    return [m.removesuffix("_mean") for m in sweep.metrics if m.endswith("_mean")]


def _asymptote_row(asymptote: Asymptote) -> dict:
    return {column: getattr(asymptote, column) for column in ASYMPTOTE_COLUMNS}


def expected_generations(trials: pd.DataFrame) -> pd.Series:
    """Generations each trial (a row of ``Sweep.trials``) must log to be complete: its
    ``generations`` parameter; but a FINISHED trial with a stop rule (``stop.metric``
    set) is complete at whatever generation its rule ended it."""
    generations = (trials["generations"] if "generations" in trials
                   else trials["generations_logged"]).astype(int)
    if "stop.metric" not in trials:
        return generations
    stopped = trials["stop.metric"].notna() & (trials["status"] == "FINISHED")
    return generations.where(~stopped, trials["generations_logged"]).astype(int)


def asymptote_table(sweep: Sweep, metrics: list[str]) -> pd.DataFrame:
    """One row per (trial, metric) and per (replicate group, metric).

    Columns: scope ("trial" or "group"), group, run_id (trials only), the varying
    parameters, metric, then ASYMPTOTE_COLUMNS. A trial that logged fewer generations
    than ``expected_generations`` is incomplete, and so is its group. A group's seeds
    that stopped at different generations pool over their common prefix.
    """
    trials = sweep.trials.set_index("run_id")
    groups = group_ids(sweep)
    varying = varying_parameters(sweep)
    expected = expected_generations(trials)
    series = {metric: sweep.records.pivot(index="run_id", columns="generation",
                                          values=f"{metric}_mean") for metric in metrics}
    rows = []
    for group, members in groups.groupby(groups):
        run_ids = list(members.index)
        description = trials.loc[run_ids[0], varying].to_dict()
        generations = int(expected[run_ids].max())
        for metric in metrics:
            values = series[metric].loc[run_ids].to_numpy(dtype=float)[:, :generations]
            logged = trials.loc[run_ids, "generations_logged"].astype(int)
            seeds = [row[:length] for row, length in zip(values, logged)]
            for run_id, row in zip(run_ids, seeds):
                rows.append({"scope": "trial", "group": group, "run_id": run_id, **description,
                             "metric": metric, **_asymptote_row(
                                 estimate_asymptote(row, int(expected[run_id])))})
            rows.append({"scope": "group", "group": group, "run_id": None, **description,
                         "metric": metric, **_asymptote_row(
                             estimate_asymptote(seeds, expected[run_ids].to_numpy()))})
    return pd.DataFrame(rows)


def _bounded_columns(prefix: str, size) -> dict:
    return {prefix: size.estimate.value, f"{prefix}_bound": size.estimate.bound,
            f"{prefix}_low": size.low.value, f"{prefix}_low_bound": size.low.bound,
            f"{prefix}_high": size.high.value, f"{prefix}_high_bound": size.high.bound,
            f"{prefix}_text": f"{size.estimate.text()} [{size.low.text()}, {size.high.text()}]"}


def effective_size_row(asymptote: pd.Series, curve: MonotoneCurve, n_real: float) -> dict:
    """n_e and n_e / n_r columns for one group's asymptote row (a converged one gives
    numbers; a non-converged one gives nan and keeps its reason).

    The intervals combine the limit's 95 % interval with the curve's own error at 95 %
    (``MonotoneCurve.effective_size``); ``reference_error`` is that error at n_e, relative
    to f(n_e), so a table shows how much of an interval is the curve's.
    """
    if not asymptote["converged"]:
        return {"n_e": math.nan, "ratio": math.nan, "n_e_text": "not converged",
                "ratio_text": "not converged"}
    size = curve.effective_size(asymptote["value"], asymptote["low"], asymptote["high"])
    row = {**_bounded_columns("n_e", size),
           "reference_error": curve.relative_error_at(size.estimate.value)}
    if n_real and n_real > 0:
        row.update(_bounded_columns("ratio", size.scaled(1 / n_real)))
    return row
