"""Estimates with 95 % intervals against a sample-size axis, one line per configuration,
one panel per value of a parameter: n_e / n_r vs n_s (panels: lambda), and the asymptote
vs n_init (MAD's "the initial model is forgotten"). Sample sizes lie on a log axis, where
n_s = 0 (real data only) is drawn one grid step left of the smallest n_s, labelled 0."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.figures.labels import (AXIS_LABELS, LOG_AXES, PARAMETER_SYMBOLS, axis_positions,
                                     describe, format_value, log_scale_plain_ticks)

BOUND_MARKERS = {"": "o", ">": "^", "<": "v"}
NUDGE = 0.03  # lines at one x are moved apart by up to +-3 % so their bars stay visible


def _draw_lines(axis, rows: pd.DataFrame, x: str, line_keys: list[str], colours: dict,
                value: str, low: str, high: str, bound: str | None,
                positions_of: dict) -> None:
    lines = list(rows.groupby(line_keys, sort=True)) if line_keys else [((), rows)]
    offsets = np.geomspace(1 - NUDGE, 1 + NUDGE, len(lines)) if len(lines) > 1 else [1.0]
    for (values, line), offset in zip(lines, offsets):
        values = values if isinstance(values, tuple) else (values,)
        label = describe(dict(zip(line_keys, values))) or "all"
        line = line.sort_values(x)
        positions = (line[x].map(positions_of).to_numpy(dtype=float)
                     * (offset if x in LOG_AXES else 1.0))
        centre = line[value].to_numpy(dtype=float)
        errors = np.abs(np.vstack([centre - line[low].to_numpy(dtype=float),
                                   line[high].to_numpy(dtype=float) - centre]))
        colour = colours[label]
        axis.plot(positions, centre, color=colour, lw=1.2, label=label)
        # Hollow markers under the bars: intervals of a few per cent are shorter than a
        # marker, and a filled one would hide them.
        kinds = line[bound].to_numpy() if bound else np.full(len(line), "")
        for kind, marker in BOUND_MARKERS.items():
            chosen = kinds == kind
            axis.scatter(positions[chosen], centre[chosen], facecolors="white",
                         edgecolors=colour, marker=marker, s=30, zorder=3)
        axis.errorbar(positions, centre, yerr=errors, fmt="none", ecolor=colour, capsize=4,
                      elinewidth=1.6, zorder=4)


def plot_intervals(table: pd.DataFrame, x: str, line_keys: list[str], *, value: str,
                   low: str, high: str, ylabel: str, title: str, panel_key: str | None = None,
                   bound: str | None = None, log_y: bool = True,
                   reference_y: tuple[float, str] | None = None,
                   footnote: str = "") -> plt.Figure:
    """Points with interval bars over x, joined per line, one panel per ``panel_key`` value.

    Args:
        table: one row per configuration; rows with ``converged`` False are not drawn but
            counted in the caption.
        bound: a column of "", ">" or "<": such points are a bound, drawn as a triangle
            pointing the way the value lies.
        reference_y: (y, label) of a horizontal reference line (n_e / n_r = 1).
        footnote: a last caption line (which reference curve f(n) gave n_e).
    """
    drawn = table[table["converged"].astype(bool)]
    panels = sorted(drawn[panel_key].unique()) if panel_key and len(drawn) else [None]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1.8, 4.4),
                                squeeze=False, sharey=True, layout="constrained")
    labels = sorted({describe(dict(zip(line_keys, key if isinstance(key, tuple) else (key,))))
                     or "all" for key, _ in (drawn.groupby(line_keys) if line_keys
                                             else [((), drawn)])}, key=lambda text: (len(text), text))
    palette = plt.colormaps["tab10" if len(labels) <= 10 else "viridis"](
        np.arange(len(labels)) if len(labels) <= 10 else np.linspace(0, 0.9, len(labels)))
    colours = dict(zip(labels, palette))
    grid_values = np.sort(table[x].unique())
    grid_positions = axis_positions(grid_values, x)
    positions_of = dict(zip(grid_values, grid_positions))
    for axis, panel in zip(axes[0], panels):
        rows = drawn if panel is None else drawn[drawn[panel_key] == panel]
        _draw_lines(axis, rows, x, line_keys, colours, value, low, high, bound, positions_of)
        if reference_y is not None:
            axis.axhline(reference_y[0], color="black", lw=1, ls="--", label=reference_y[1])
        if x in LOG_AXES:
            axis.set_xscale("log")
            axis.minorticks_off()
        axis.set_xticks(grid_positions, [format_value(v) for v in grid_values])
        axis.set_xlabel(AXIS_LABELS.get(x, x))
        axis.grid(alpha=0.3, which="both", lw=0.5)
        if panel is not None:
            axis.set_title(f"{PARAMETER_SYMBOLS.get(panel_key, panel_key)} = "
                           f"{format_value(panel)}")
    if log_y and len(drawn) and (drawn[value] > 0).all():
        log_scale_plain_ticks(axes[0][0])
    axes[0][0].set_ylabel(ylabel)
    if len(panels) == 1:
        axes[0][0].legend(fontsize=8, frameon=False)
    else:
        handles, names = axes[0][0].get_legend_handles_labels()
        for axis in axes[0][1:]:
            for handle, name in zip(*axis.get_legend_handles_labels()):
                if name not in names:
                    handles.append(handle)
                    names.append(name)
        figure.legend(handles, names, loc="outside right upper", fontsize=8, frameon=False)
    half_widths = ((drawn[high] - drawn[low]) / (2 * drawn[value].abs())).dropna()
    caption = "bars: 95 % intervals" + (
        f" (half-widths {100 * half_widths.min():.2g}-{100 * half_widths.max():.2g} %)"
        if len(half_widths) else "")
    if bound and (drawn[bound] != "").any():
        caption += "; ▲/▼: beyond the reference curve (a bound)"
    if len(table) > len(drawn):
        caption += f"; {len(table) - len(drawn)} not converged (not drawn)"
    if footnote:
        caption += f"\n{footnote}"
    figure.suptitle(f"{title}\n{caption}", fontsize=11)
    return figure
