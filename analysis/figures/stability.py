"""Bertrand's experiment: a metric against generation, one line per retraining setting
(lambda_B values of the bertrand loop, and controls such as a fully synthetic run), the
legend giving each line's verdicts (``analysis.stability``)."""

from __future__ import annotations

from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.figures.labels import describe, log_scale_plain_ticks, metric_label

REFERENCE_LABEL = "real data alone (λ_B = 0): kept level"


def verdict_summary(verdicts: pd.Series) -> str:
    """'settles (3/3)' or 'drifts (2/3), undetermined (1/3)' over a line's seeds."""
    counts = Counter(verdicts)
    return ", ".join(f"{verdict} ({count}/{len(verdicts)})" for verdict, count in counts.most_common())


def plot_stability(records: pd.DataFrame, verdicts: pd.DataFrame, line_keys: list[str],
                   metric: str, title: str, reference_level: float | None) -> plt.Figure:
    """Metric vs generation per line (mean over seeds, band: their range).

    Args:
        records: tidy records of one figure's trials (run_id, generation, <metric>_mean).
        verdicts: one row per trial: run_id, verdict.
        line_keys: parameters whose combinations are the lines (loop, lambda_b, ...).
        reference_level: the real-data-only runs' kept level, drawn dotted.
    """
    figure, axis = plt.subplots(figsize=(8.5, 4.6), layout="constrained")
    by_run = verdicts.set_index("run_id")["verdict"]
    lines = list(records.groupby(line_keys, sort=True, dropna=False))
    colors = plt.colormaps["viridis"](np.linspace(0, 0.9, max(len(lines), 1)))
    for (values, rows), color in zip(lines, colors):
        values = values if isinstance(values, tuple) else (values,)
        per_generation = rows.groupby("generation")[f"{metric}_mean"]
        mean = per_generation.mean()
        runs = rows["run_id"].unique()
        label = f"{describe(dict(zip(line_keys, values)))}: {verdict_summary(by_run[runs])}"
        axis.plot(mean.index, mean.to_numpy(), color=color, lw=1.6, label=label)
        if len(runs) > 1:
            axis.fill_between(mean.index, per_generation.min().to_numpy(),
                              per_generation.max().to_numpy(), color=color, alpha=0.18, lw=0)
    if reference_level is not None:
        axis.axhline(reference_level, color="black", lw=1, ls=":", label=REFERENCE_LABEL)
    values = records[f"{metric}_mean"].to_numpy(dtype=float)
    if np.nanmin(values) > 0:
        log_scale_plain_ticks(axis)
    axis.set_xlabel("generation t")
    axis.set_ylabel(f"{metric_label(metric)}\nmean over chains")
    axis.grid(alpha=0.3, which="both", lw=0.5)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    figure.suptitle(f"{title}\nverdict per trial after burn-in: trend test, then level against "
                    f"real data alone (α = 1 %); band: range over seeds", fontsize=10)
    return figure
