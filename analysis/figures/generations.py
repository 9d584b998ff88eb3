"""Metric vs generation (MAD figures 4, 6, 9): one panel per metric, one line per
configuration (loop type, lambda, ...), with a band and, for Gaussian loops, the
closed-form expectation where the theory gives one."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.figures.labels import describe, log_scale_plain_ticks, metric_label
from analysis.gaussian_theory import THEORY_LOOPS, expected_trace_and_mean_error

# The metrics plotted, in panel order, when the records have them.
PANEL_METRICS = ("w2_sq", "mean_err_sq", "trace", "w2_sq_emp", "w2_sq_sliced", "fid", "fid_inception", "kid",
                 "precision", "recall", "density", "coverage", "class_fidelity", "modes_covered",
                 "high_quality")
# Shares and ratios near 1: drawn on a linear scale.
LINEAR_METRICS = ("precision", "recall", "density", "coverage", "class_fidelity", "modes_covered",
                  "high_quality")
PANELS_PER_ROW = 4
THEORY_METRICS = {"trace": 0, "mean_err_sq": 1}  # index into the closed form's outputs
MAX_LEGEND_LINES = 12
THEORY_LABEL = "closed-form E[·]"
LIMIT_LABEL = "estimated limit (after burn-in)"


def panel_metrics(metrics) -> list[str]:
    """The PANEL_METRICS present as ``<metric>_mean`` columns."""
    return [m for m in PANEL_METRICS if f"{m}_mean" in metrics]


def closed_form(parameters: pd.Series, generations: int) -> tuple | None:
    """(E tr Sigma_t, E |mu_t - mu|^2) for a trial's parameters, or None where no closed
    form applies (not a Gaussian model on a Gaussian source, or a pooled/last-K source)."""
    get = parameters.get
    if not (get("model") == "gaussian" and get("data.source") == "gaussian"
            and get("loop") in THEORY_LOOPS and get("synthetic_source", "previous") == "previous"
            and pd.isna(get("data.pool_size"))):
        return None
    return expected_trace_and_mean_error(
        loop=get("loop"), lam=float(get("lam")), n_init=int(get("n_init")),
        n_real=int(get("n_real")), n_syn=int(get("n_syn")), generations=generations,
        trace_real=float(get("data.dim")) * float(get("data.var", 1.0)),
        covariance=get("model_options.covariance", "unbiased"))


def plot_generations(records: pd.DataFrame, line_keys: list[str], metrics: list[str],
                     title: str, limits: pd.DataFrame | None = None) -> plt.Figure:
    """Metric vs generation.

    Args:
        records: the tidy records of the trials to draw (one figure's worth), with a
            ``group`` column (the replicate group of each trial).
        line_keys: parameters whose combinations are the lines; trials within a line are
            seeds (band: their range) or a single trial (band: 5-95 % of its chains).
        metrics: panel metrics (names without the ``_mean`` suffix).
        limits: group asymptotes indexed by (group, metric) with value, burn_in and
            converged: a converged limit is drawn dotted from the end of its burn-in.
    """
    columns = min(len(metrics), PANELS_PER_ROW)
    rows_of_panels = -(-len(metrics) // columns)
    figure, grid = plt.subplots(rows_of_panels, columns, figsize=(4.6 * columns, 3.6 * rows_of_panels + 0.6),
                                squeeze=False, layout="constrained")
    panels = grid.ravel()[:len(metrics)]
    for unused in grid.ravel()[len(metrics):]:
        unused.remove()
    lines = (list(records.groupby(line_keys, sort=True, dropna=False)) if line_keys
             else [((), records)])
    colors = plt.colormaps["viridis" if len(lines) > 10 else "tab10"](
        np.linspace(0, 0.9, len(lines)) if len(lines) > 10 else np.arange(len(lines)))
    band_notes = set()
    theory_drawn = limit_drawn = False
    for (values, rows), color in zip(lines, colors):
        values = values if isinstance(values, tuple) else (values,)
        label = describe(dict(zip(line_keys, values))) or "all trials"
        seeds = rows["run_id"].nunique()
        first = rows.iloc[0]
        theory = closed_form(first, int(rows["generation"].max()))
        for axis, metric in zip(panels, metrics):
            per_generation = rows.groupby("generation")[f"{metric}_mean"]
            mean = per_generation.mean()
            axis.plot(mean.index, mean.to_numpy(), color=color, lw=1.6, label=label)
            limit = (None if limits is None or rows["group"].nunique() != 1
                     else limits.loc[(rows["group"].iloc[0], metric)])
            if limit is not None and limit["converged"]:
                axis.hlines(limit["value"], limit["burn_in"] + 1, mean.index.max(), color="black",
                            lw=1, ls=":", zorder=3,
                            label=LIMIT_LABEL if not limit_drawn else None)
                limit_drawn = True
            if seeds > 1:
                low, high = per_generation.min(), per_generation.max()
                band_notes.add(f"band: range over {seeds} seeds")
            elif f"{metric}_q05" in rows:
                low, high = rows[f"{metric}_q05"], rows[f"{metric}_q95"]
                band_notes.add("band: 5–95 % of chains")
            else:
                continue
            axis.fill_between(mean.index, np.asarray(low), np.asarray(high), color=color,
                              alpha=0.18, lw=0)
            if theory is not None and metric in THEORY_METRICS:
                expected = theory[THEORY_METRICS[metric]]
                axis.plot(np.arange(1, len(expected) + 1), expected, color="black", lw=1,
                          ls="--", label=THEORY_LABEL if not theory_drawn else None)
                theory_drawn = True
    for axis, metric in zip(panels, metrics):
        axis.set_xlabel("generation t")
        axis.set_title(metric_label(metric), fontsize=11)
        values = records[f"{metric}_mean"].to_numpy(dtype=float)
        if metric not in LINEAR_METRICS and np.nanmin(values) > 0:
            log_scale_plain_ticks(axis)
        axis.grid(alpha=0.3, which="both", lw=0.5)
    for row in grid:
        row[0].set_ylabel("mean over chains")
    entries: dict[str, object] = {}
    for axis in panels:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    # The configurations first, then the reference lines drawn over them.
    order = sorted(entries, key=lambda label: label in (THEORY_LABEL, LIMIT_LABEL))
    if len(order) <= MAX_LEGEND_LINES + 2:
        figure.legend([entries[label] for label in order], order, loc="outside right upper",
                      fontsize=9, frameon=False)
    notes = "; ".join(sorted(band_notes))
    figure.suptitle(f"{title}\nline: mean over chains" + (f"; {notes}" if notes else ""),
                    fontsize=11)
    return figure
