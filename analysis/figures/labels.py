"""Display labels of metrics and parameters (metric keys stay snake_case everywhere else),
the splitting of a sweep's varying parameters into lines and separate figures, and where
values sit on a sample-size axis."""

from __future__ import annotations

import math
import re
from typing import Iterator

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

METRIC_LABELS = {
    "w2_sq": "W2² to P_r", "w2": "W2 to P_r", "mean_err_sq": "|μ_t − μ|² (mean error)",
    "trace": "tr Σ_t (total variance)", "logdet": "log det Σ_t", "w2_sq_emp": "empirical W2²",
    "w2_emp": "empirical W2", "precision": "precision (quality)", "recall": "recall (diversity)",
    "fid": "FID (LeNet features)", "kid": "KID (LeNet features)", "fid_inception": "FID (Inception)",
    "w2_sq_sliced": "sliced W2²", "density": "density", "coverage": "coverage",
    "class_fidelity": "class fidelity (LeNet agrees with the label)",
    "modes_covered": "modes covered", "high_quality": "high-quality share (within 3σ of a mode)",
}
PARAMETER_SYMBOLS = {
    "lam": "λ", "n_real": "n_r", "n_syn": "n_s", "n_init": "n_init", "loop": "loop",
    "data.dim": "d", "chains": "chains", "synthetic_source": "synthetic source",
    "lambda_b": "λ_B", "model": "model", "generations": "generations",
}
LOG_AXES = ("n_real", "n_syn", "n_init")  # sample sizes: log-spaced grids, log axes
AXIS_LABELS = {
    "n_real": "n_r, real samples per generation",
    "n_syn": "n_s, synthetic samples per generation",
    "lam": "λ, sampling bias (1 = unbiased)",
    "n_init": "n_init, real samples of generation 1",
}


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("_", " ")


def _unset(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def describe(values: dict) -> str:
    """{"lam": 0.7, "n_real": 100} -> "λ = 0.7, n_r = 100"; a parameter a trial leaves
    unset (None, NaN: lambda_B of a fully synthetic control) is left out."""
    return ", ".join(f"{PARAMETER_SYMBOLS.get(k, k)} = {format_value(v)}"
                     for k, v in values.items() if not _unset(v))


def slug(values: dict) -> str:
    """A file-name fragment for a facet: {"n_real": 100, "lam": 0.7} -> "n_real100_lam0.7"."""
    text = "_".join(f"{k}{format_value(v)}" for k, v in values.items())
    return re.sub(r"[^A-Za-z0-9_.-]", "", text.replace(" ", "-")) or "all"


def facets(table: pd.DataFrame, keys: list[str]) -> Iterator[tuple[dict, pd.DataFrame]]:
    """(values of keys, rows with those values) for every combination present."""
    if not keys:
        yield {}, table
        return
    for values, rows in table.groupby(keys, sort=True, dropna=False):
        yield dict(zip(keys, values if isinstance(values, tuple) else (values,))), rows


PLAIN_TICK_DECADES = 4  # up to this span, ticks at 1, 2, 5 x 10^k read as 0.2, 50


NARROW_SPAN = 4.0  # n_e / n_r panels often span 0.7-2: 1, 2, 5 would label only 1 and 2
NARROW_SUBS = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)


def log_scale_plain_ticks(axis) -> None:
    """A log y scale; within a factor of NARROW_SPAN ticked at 1, 1.2, 1.5, 2, 2.5, 3, 4,
    5, 6, 8 x 10^k, over a few decades at 1, 2, 5 x 10^k, labelled as plain numbers (0.8,
    1.5, 50); over more (a collapsing variance) at powers of ten."""
    axis.set_yscale("log")
    low, high = axis.dataLim.intervaly
    if high / low <= 10 ** PLAIN_TICK_DECADES:
        subs = NARROW_SUBS if high / low <= NARROW_SPAN else (1.0, 2.0, 5.0)
        axis.yaxis.set_major_locator(LogLocator(subs=subs))
        axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.yaxis.set_minor_formatter(NullFormatter())


def log_axis_positions(values: np.ndarray) -> np.ndarray:
    """Where values (K,) of a sample-size axis are drawn on its log scale: at themselves,
    and 0 (n_s = 0, the real-data-only control, which a log scale cannot show) one grid
    step left of the smallest positive value, as a column of its own labelled 0. The step
    is the geometric mean ratio of the positive values (a decade when there is one)."""
    values = np.asarray(values, dtype=float)
    positive = np.unique(values[values > 0])
    if len(positive) == 0:
        return np.ones_like(values)
    step = ((positive[-1] / positive[0]) ** (1 / (len(positive) - 1)) if len(positive) > 1
            else 10.0)
    return np.where(values > 0, values, positive[0] / step)


def axis_positions(values: np.ndarray, key: str) -> np.ndarray:
    """Where a grid axis's values (K,) are drawn: ``log_axis_positions`` on the log axes
    of sample sizes (LOG_AXES), the values themselves elsewhere."""
    return log_axis_positions(values) if key in LOG_AXES else np.asarray(values, dtype=float)
