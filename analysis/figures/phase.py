"""MAD's phase diagrams: n_e / n_r as a heatmap over two grid axes, one panel per value of
a third, with the n_e / n_r = 1 line drawn along the edges between cells on either side
of 1 (on one side synthetic data helped).

Colour is log2(n_e / n_r) on a diverging map centred at 1 (blue: helped, red: hurt);
every cell prints its ratio, "> x" / "< x" where n_e lies beyond the reference curve,
and "n.c." where the loop had not converged (no number is reported for it). Sample sizes
lie on log axes; n_s = 0 (real data only, where n_e = n_r) is a column of its own,
labelled 0 and set apart by a white line, one grid step left of the smallest n_s.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.figures.labels import (AXIS_LABELS, LOG_AXES, PARAMETER_SYMBOLS, axis_positions,
                                     format_value)

NOT_CONVERGED = "lightgrey"
MAX_PANELS_PER_ROW = 3


def cell_edges(centres: np.ndarray, logarithmic: bool) -> np.ndarray:
    """(K + 1,) cell boundaries around sorted centres (K,): midpoints, in log space for
    log axes; a single centre gets a cell of +-1/2 (of a decade's fraction on log axes)."""
    values = np.log(centres) if logarithmic else centres.astype(float)
    if len(values) == 1:
        edges = values[0] + np.array([-0.5, 0.5]) * (0.5 if logarithmic else 0.1)
    else:
        middle = (values[1:] + values[:-1]) / 2
        edges = np.concatenate([[2 * values[0] - middle[0]], middle,
                                [2 * values[-1] - middle[-1]]])
    return np.exp(edges) if logarithmic else edges


def draw_unit_boundary(axis, x_edges: np.ndarray, y_edges: np.ndarray,
                       log_ratio: np.ndarray, keep_x: np.ndarray, keep_y: np.ndarray) -> bool:
    """The n_e / n_r = 1 line as the boundary between neighbouring cells on opposite
    sides of 1: drawn along cell edges, so that it never claims a crossing inside a cell
    that the grid did not measure (an interpolated contour on a coarse grid does).
    Cells outside keep_x / keep_y (the n_s = 0 control) are left out; whether a line
    was drawn.

    Args:
        x_edges (X + 1,), y_edges (Y + 1,): cell boundaries; log_ratio (Y, X): log2 ratio,
        nan where missing or not converged; keep_x (X,), keep_y (Y,): cells that count.
    """
    kept = np.isfinite(log_ratio) & keep_y[:, None] & keep_x[None, :]
    side = np.where(kept, np.sign(log_ratio), 0.0)
    across_x = side[:, :-1] * side[:, 1:] < 0  # (Y, X - 1): left and right cells differ
    across_y = side[:-1, :] * side[1:, :] < 0  # (Y - 1, X): lower and upper cells differ
    for i, j in zip(*np.nonzero(across_x)):
        axis.plot([x_edges[j + 1]] * 2, [y_edges[i], y_edges[i + 1]], color="black", lw=2,
                  solid_capstyle="projecting")
    for i, j in zip(*np.nonzero(across_y)):
        axis.plot([x_edges[j], x_edges[j + 1]], [y_edges[i + 1]] * 2, color="black", lw=2,
                  solid_capstyle="projecting")
    return bool(across_x.any() or across_y.any())


def ratio_grid(rows: pd.DataFrame, x: str, y: str) -> tuple:
    """(x values (X,), y values (Y,), log2 ratio (Y, X) nan where missing or not
    converged, cell texts (Y, X))."""
    xs = np.sort(rows[x].unique())
    ys = np.sort(rows[y].unique())
    log_ratio = np.full((len(ys), len(xs)), np.nan)
    texts = np.full((len(ys), len(xs)), "", dtype=object)
    for _, row in rows.iterrows():
        i, j = np.searchsorted(ys, row[y]), np.searchsorted(xs, row[x])
        if not row["converged"]:
            texts[i, j] = "n.c."
            continue
        ratio = row["ratio"]
        log_ratio[i, j] = math.log2(ratio)
        bound = row["ratio_bound"]
        texts[i, j] = f"{bound}{ratio:.2g}" if bound else f"{ratio:.2f}"
    return xs, ys, log_ratio, texts


def plot_phase_diagram(table: pd.DataFrame, x: str, y: str, panel: str,
                       title: str, footnote: str = "") -> plt.Figure:
    """One heatmap of n_e / n_r over (x, y) per value of ``panel``.

    Args:
        table: one row per configuration with columns x, y, panel, converged, ratio,
            ratio_bound (from the effective-size table).
        footnote: a line under the panels (which reference curve f(n) gave n_e).
    """
    panels = sorted(table[panel].unique())
    converged = table[table["converged"]]
    span = np.nanmax(np.abs(np.log2(converged["ratio"].to_numpy(dtype=float)))) \
        if len(converged) else 1.0
    limit = max(1.0, math.ceil(span))
    norm = Normalize(-limit, limit)
    cmap = plt.colormaps["RdBu"]
    columns = min(len(panels), MAX_PANELS_PER_ROW)
    rows_of_panels = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows_of_panels, columns,
                                figsize=(4.4 * columns + 1.2, 3.9 * rows_of_panels + 0.5),
                                squeeze=False, layout="constrained", sharey=True)
    for spare in axes.flat[len(panels):]:
        spare.remove()
    boundary_drawn = False
    legend = []
    if not table["converged"].all():
        legend.append(Patch(facecolor=NOT_CONVERGED,
                            label="n.c.: not converged (asymptotes.csv says why)"))
    for axis, value in zip(axes.flat, panels):
        rows = table[table[panel] == value]
        xs, ys, log_ratio, texts = ratio_grid(rows, x, y)
        x_positions, y_positions = axis_positions(xs, x), axis_positions(ys, y)
        x_edges = cell_edges(x_positions, x in LOG_AXES)
        y_edges = cell_edges(y_positions, y in LOG_AXES)
        axis.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(log_ratio), cmap=cmap,
                        norm=norm)
        not_converged = np.ma.masked_where(texts != "n.c.", np.ones_like(log_ratio))
        axis.pcolormesh(x_edges, y_edges, not_converged, cmap=ListedColormap([NOT_CONVERGED]))
        for i, y_position in enumerate(y_positions):
            for j, x_position in enumerate(x_positions):
                dark = np.isfinite(log_ratio[i, j]) and abs(log_ratio[i, j]) > 0.6 * limit
                axis.text(x_position, y_position, texts[i, j], ha="center", va="center",
                          fontsize=8, color="white" if dark else "black")
        # The line is drawn over positive sample sizes only: at n_s = 0 the ratio is 1
        # by construction, and its noise around 1 would draw a line along that column.
        keep_x = (xs > 0) if x in LOG_AXES else np.ones(len(xs), bool)
        keep_y = (ys > 0) if y in LOG_AXES else np.ones(len(ys), bool)
        boundary_drawn |= draw_unit_boundary(axis, x_edges, y_edges, log_ratio, keep_x, keep_y)
        if x in LOG_AXES:
            axis.set_xscale("log")
            if not keep_x.all():
                axis.axvline(x_edges[1], color="white", lw=3)
        if y in LOG_AXES:
            axis.set_yscale("log")
            if not keep_y.all():
                axis.axhline(y_edges[1], color="white", lw=3)
        axis.set_xlim(x_edges[0], x_edges[-1])
        axis.set_ylim(y_edges[0], y_edges[-1])
        axis.set_xticks(x_positions, [format_value(v) for v in xs],
                        rotation=45 if len(xs) > 4 else 0)
        axis.set_yticks(y_positions, [format_value(v) for v in ys])
        axis.minorticks_off()
        axis.set_xlabel(AXIS_LABELS.get(x, x))
        axis.set_title(f"{PARAMETER_SYMBOLS.get(panel, panel)} = {format_value(value)}")
    for row in axes:
        row[0].set_ylabel(AXIS_LABELS.get(y, y))
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    ticks = np.arange(-limit, limit + 1)
    colorbar = figure.colorbar(mappable, ax=axes.flat[:len(panels)], ticks=ticks, shrink=0.9)
    colorbar.ax.set_yticklabels([format_value(2.0 ** t) for t in ticks])
    colorbar.set_label("n_e / n_r   (> 1: synthetic data helped)")
    if boundary_drawn:
        legend.insert(0, Line2D([], [], color="black", lw=2, label="n_e = n_r"))
    if legend:
        figure.legend(handles=legend, loc="outside lower right", frameon=False, fontsize=9,
                      ncols=len(legend))
    if footnote:
        figure.supxlabel(footnote, x=0.01, ha="left", fontsize=8)
    figure.suptitle(title, fontsize=11)
    return figure
