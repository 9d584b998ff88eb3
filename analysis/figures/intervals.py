"""Estimates with 95 % intervals against a sample-size axis, one line per configuration:
n_e / n_r vs n_s, and the asymptote vs n_init (MAD's "the initial model is forgotten")."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.figures.labels import AXIS_LABELS, describe, format_value, log_scale_plain_ticks
from analysis.figures.phase import LOG_AXES

BOUND_MARKERS = {"": "o", ">": "^", "<": "v"}


def plot_intervals(table: pd.DataFrame, x: str, line_keys: list[str], *, value: str,
                   low: str, high: str, ylabel: str, title: str, bound: str | None = None,
                   log_y: bool = True, reference_y: tuple[float, str] | None = None
                   ) -> plt.Figure:
    """Points with interval bars over x, joined per line.

    Args:
        table: one row per configuration; rows with ``converged`` False are not drawn but
            counted in the caption.
        bound: a column of "", ">" or "<": such points are a bound, drawn as a triangle
            pointing the way the value lies.
        reference_y: (y, label) of a horizontal reference line (n_e / n_r = 1).
    """
    figure, axis = plt.subplots(figsize=(6.8, 4.6), layout="constrained")
    drawn = table[table["converged"].astype(bool)]
    lines = list(drawn.groupby(line_keys, sort=True)) if line_keys else [((), drawn)]
    # Colour by the first line parameter, line style by the others.
    first_values = sorted({key[0] if isinstance(key, tuple) else key for key, _ in lines}
                          if line_keys else {()}, key=str)
    palette = plt.colormaps["tab10"](np.arange(len(first_values)) % 10)
    colour_of = dict(zip(map(str, first_values), palette))
    styles = ["-", "--", ":", "-."]
    offsets = np.geomspace(0.97, 1.03, len(lines)) if len(lines) > 1 else [1.0]
    seen_styles: dict[str, str] = {}
    for (values, rows), offset in zip(lines, offsets):
        values = values if isinstance(values, tuple) else (values,)
        color = colour_of[str(values[0] if values else ())]
        rest = str(values[1:])
        style = seen_styles.setdefault(rest, styles[len(seen_styles) % len(styles)])
        rows = rows.sort_values(x)
        # Lines at one x are nudged apart so that their intervals do not hide each other.
        positions = rows[x].to_numpy(dtype=float) * (offset if x in LOG_AXES else 1.0)
        centre = rows[value].to_numpy(dtype=float)
        errors = np.abs(np.vstack([centre - rows[low].to_numpy(dtype=float),
                                   rows[high].to_numpy(dtype=float) - centre]))
        label = describe(dict(zip(line_keys, values))) or None
        axis.plot(positions, centre, color=color, lw=1.2, ls=style, label=label)
        axis.errorbar(positions, centre, yerr=errors, fmt="none", ecolor=color, capsize=3)
        kinds = rows[bound].to_numpy() if bound else np.full(len(rows), "")
        for kind, marker in BOUND_MARKERS.items():
            chosen = kinds == kind
            axis.scatter(positions[chosen], centre[chosen], color=color, marker=marker, s=30,
                         zorder=3)
    if reference_y is not None:
        axis.axhline(reference_y[0], color="black", lw=1, ls="--", label=reference_y[1])
    if x in LOG_AXES:
        axis.set_xscale("log")
        axis.minorticks_off()
    grid_values = np.sort(table[x].unique())
    axis.set_xticks(grid_values, [format_value(v) for v in grid_values])
    if log_y and len(drawn) and (drawn[value] > 0).all():
        log_scale_plain_ticks(axis)
    axis.set_xlabel(AXIS_LABELS.get(x, x))
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3, which="both", lw=0.5)
    skipped = len(table) - len(drawn)
    caption = "bars: 95 % intervals"
    if bound and (drawn[bound] != "").any():
        caption += "; ▲/▼: beyond the reference curve (a bound)"
    if skipped:
        caption += f"; {skipped} not converged (not drawn)"
    axis.set_title(caption, fontsize=9)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=11)
    return figure
