"""Everything `mad analyze` writes for a loaded sweep: tables (CSV) and figures (PNG).

    written = analyze(sweep, Path("mad_analysis/my_sweep"))

What applies depends on the sweep: metric-vs-generation figures always; asymptotes
always; n_e (and its figures) where a reference curve exists (Gaussian: computed;
otherwise from a baseline sweep); phase diagrams where two of (n_r, n_s, lambda) vary;
the asymptote-vs-n_init figure where n_init varies; stability verdicts and figures
(Bertrand's experiment) where a trial runs the bertrand loop. No trial is re-run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import pandas as pd

from analysis.effective_size import MonotoneCurve
from analysis.estimates import (DISTANCE_METRICS, AnalysisError, as_text, asymptote_table,
                                default_distance, effective_size_row, group_ids,
                                summary_metrics, varying_parameters)
from analysis.figures.generations import panel_metrics, plot_generations
from analysis.figures.intervals import plot_intervals
from analysis.figures.labels import describe, facets, metric_label, slug
from analysis.figures.phase import plot_phase_diagram
from analysis.figures.stability import plot_stability
from analysis.load import Sweep
from analysis.stability import Level, assess_stability, kept_level
from analysis.reference import (GAUSSIAN_CURVE_VERSION, ReferenceCurve,
                                baseline_reference_curve, exact_gaussian_applies,
                                gaussian_reference_curve, log_spaced_sizes,
                                reference_key_columns)

GENERATION_LINE_PARAMETERS = ("loop", "lam", "n_init", "synthetic_source", "lambda_b")
EFFECTIVE_LINE_PARAMETERS = ("loop", "lam", "n_real")
INITIAL_LINE_PARAMETERS = ("loop", "lam", "n_real", "n_syn")
# Phase diagrams: (x, y, one panel per value of) -> file name.
# Axes of Bertrand's experiment: lines of its figure, not a match for the reference runs.
STABILITY_LINE_PARAMETERS = ("loop", "lambda_b", "lam")
STABILITY_DERIVED = ("n_syn", "n_real", "n_total", "real_fraction", "synthetic_source")
PHASE_DIAGRAMS = {("n_real", "n_syn", "lam"): "phase_nr_ns",
                  ("n_syn", "lam", "n_real"): "phase_lam_ns"}
FIGURE_FORMATS = ("png", "pdf", "svg")
REFERENCE_RANGE = 10  # the Gaussian curve reaches 10x the largest training set
SMALLEST_FIT = 2  # a Gaussian fit needs two points
FIGURE_DPI = 130


@dataclass
class Report:
    """What an analysis wrote (paths) and said (notes for the user)."""

    out_dir: Path
    formats: tuple[str, ...] = ("png",)  # every figure is saved in each (FIGURE_FORMATS)
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def save_table(self, table: pd.DataFrame, name: str) -> None:
        path = self.out_dir / name
        table.to_csv(path, index=False)
        self.written.append(path)

    def save_figure(self, figure: plt.Figure, name: str) -> None:
        """Save as out_dir/name with each of the report's formats as its suffix."""
        path = self.out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in self.formats:
            figure.savefig(path.with_suffix(f".{suffix}"), dpi=FIGURE_DPI)
            self.written.append(path.with_suffix(f".{suffix}"))
        plt.close(figure)


def sweep_caption(trials: pd.DataFrame, varying: list[str]) -> str:
    """What every trial of the sweep shares, in words: model, loop, P_r."""
    first = trials.iloc[0]
    parts = [f"{first['model']} model"] if "model" not in varying else []
    if "loop" not in varying:
        parts.append(f"{first['loop'].replace('_', ' ')} loop")
    data = {k: first[k] for k in trials.columns if k.startswith("data.") and k not in varying
            and k not in ("data.source", "data.reshuffle") and not pd.isna(first[k])}
    source = first.get("data.source", "")
    if data or source:
        parts.append(f"P_r: {source}" + (f" ({describe(data)})" if data else ""))
    return " · ".join(parts).replace("data.", "")


class ReferenceCurves:
    """Reference curves per reference configuration, computed or measured once each."""

    def __init__(self, metric: str, baseline: Sweep | None, cache_dir: Path | None):
        self.metric = metric
        self.baseline = baseline
        self.cache_dir = cache_dir

    def _gaussian(self, parameters: dict, largest: float) -> ReferenceCurve:
        sizes = log_spaced_sizes(SMALLEST_FIT, REFERENCE_RANGE * largest)
        key = json.dumps({"parameters": {k: str(v) for k, v in parameters.items()},
                          "metric": self.metric, "sizes": sizes.tolist(),
                          "version": GAUSSIAN_CURVE_VERSION}, sort_keys=True)
        path = None
        if self.cache_dir is not None:
            digest = hashlib.sha256(key.encode()).hexdigest()[:16]
            path = Path(self.cache_dir) / "reference" / f"{digest}.csv"
            if path.is_file():
                saved = pd.read_csv(path)
                return ReferenceCurve(saved["n"].to_numpy(float), saved[self.metric].to_numpy(),
                                      saved[f"{self.metric}_sem"].to_numpy(), self.metric,
                                      saved["source"].iloc[0])
        curve = gaussian_reference_curve(parameters, self.metric, sizes)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            curve.to_frame().assign(source=curve.source).to_csv(path, index=False)
        return curve

    def _measured(self, parameters: dict) -> ReferenceCurve | None:
        records = self.baseline.records
        rows = records[records["generation"] == 1]
        for key, value in parameters.items():
            if key in rows:
                rows = rows[as_text(rows[[key]])[key] == str(value)]
        if rows.empty:
            return None
        return baseline_reference_curve(rows, self.metric, self.baseline.name)

    def curve(self, parameters: dict, largest: float) -> ReferenceCurve | None:
        """The curve for one reference configuration; None when there is no way to get it.

        Args:
            parameters: the configuration's reference key values (model, data.*, ...).
            largest: the largest training set of the trials using it (sets the range).
        """
        if self.baseline is not None:
            return self._measured(parameters)
        if exact_gaussian_applies(parameters):
            return self._gaussian(parameters, largest)
        return None


def effective_size_table(sweep: Sweep, asymptotes: pd.DataFrame, metric: str,
                         curves: ReferenceCurves, report: Report) -> pd.DataFrame | None:
    """n_e and n_e / n_r per replicate group (from its pooled asymptote of ``metric``);
    also writes reference_curve.csv. None when no group has a reference curve."""
    trials = sweep.trials
    trials["group"] = group_ids(sweep).loc[trials["run_id"]].to_numpy()
    configurations = trials.drop_duplicates("group").set_index("group")
    reference_keys = [k for k in reference_key_columns(sweep.parameters) if k in trials]
    limits = asymptotes[(asymptotes["scope"] == "group")
                        & (asymptotes["metric"] == metric)].set_index("group")
    shown = [p for p in dict.fromkeys([*varying_parameters(sweep), "lam", "n_real", "n_syn"])
             if p in configurations]
    rows, curve_frames = [], []
    for reference, members in configurations.groupby(reference_keys, dropna=False):
        values = dict(zip(reference_keys, reference if isinstance(reference, tuple)
                          else (reference,)))
        training_sizes = members["n_real"].fillna(0) + members["n_syn"].fillna(0)
        largest = float(max(members["n_init"].max(), training_sizes.max()))
        if (members["n_real"].fillna(0) == 0).all():
            continue  # no real data after G1 (fully synthetic): n_e does not apply
        curve = curves.curve(values, largest)
        if curve is None:
            # The reference keys include every model option: name only the telling ones.
            telling = {k: v for k, v in values.items()
                       if k in ("model", "data.source", *varying_parameters(sweep))}
            report.notes.append(
                f"n_e skipped for {describe(telling)}: no reference curve "
                + ("in the baseline sweep" if curves.baseline is not None else
                   "(only Gaussian models on a Gaussian source have a computed one; pass "
                   "--reference-sweep with baseline trials)"))
            continue
        curve_frames.append(curve.to_frame().assign(source=curve.source, **values))
        try:
            monotone = MonotoneCurve(curve.n, curve.value, curve.standard_error)
        except ValueError as error:
            raise AnalysisError(f"reference curve for {describe(values)} ({curve.source}): "
                                f"{error}") from None
        for group in members.index:
            asymptote = limits.loc[group]
            configuration = configurations.loc[group]
            rows.append({"group": group, **configuration[shown].to_dict(), "metric": metric,
                         "asymptote": asymptote["value"], "asymptote_low": asymptote["low"],
                         "asymptote_high": asymptote["high"],
                         "converged": asymptote["converged"], "reason": asymptote["reason"],
                         **effective_size_row(asymptote, monotone, configuration["n_real"]),
                         "reference": curve.source})
    if curve_frames:
        report.save_table(pd.concat(curve_frames, ignore_index=True), "reference_curve.csv")
    return pd.DataFrame(rows).sort_values(shown, ignore_index=True) if rows else None


def write_generation_figures(sweep: Sweep, asymptotes: pd.DataFrame, varying: list[str],
                             caption: str, report: Report) -> None:
    metrics = panel_metrics(sweep.metrics)
    line_keys = [p for p in varying if p in GENERATION_LINE_PARAMETERS]
    facet_keys = [p for p in varying if p not in GENERATION_LINE_PARAMETERS]
    records = sweep.records.assign(group=group_ids(sweep).loc[sweep.records["run_id"]].to_numpy())
    limits = asymptotes[asymptotes["scope"] == "group"].set_index(["group", "metric"])
    for values, rows in facets(records, facet_keys):
        title = " · ".join(part for part in (caption, describe(values)) if part)
        report.save_figure(plot_generations(rows, line_keys, metrics, title, limits),
                           f"generations/generations_{slug(values)}.png")


def reference_footnote(rows: pd.DataFrame) -> str:
    """Which reference curves gave the n_e of these rows, for a figure's caption."""
    return "f(n): " + "; ".join(dict.fromkeys(rows["reference"].dropna()))


def write_effective_size_figures(table: pd.DataFrame, varying: list[str], metric: str,
                                 caption: str, report: Report) -> None:
    with_ratio = table[table["n_real"] > 0].copy()
    if "ratio" not in with_ratio or with_ratio.empty:
        return
    title_metric = f"n_e / n_r from the limit of {metric_label(metric)}"
    for (x, y, panel), name in PHASE_DIAGRAMS.items():
        if not {x, y} <= set(varying):
            continue
        facet_keys = [p for p in varying if p not in (x, y, panel)]
        for values, rows in facets(with_ratio, facet_keys):
            title = f"{title_metric}\n" + " · ".join(p for p in (caption, describe(values)) if p)
            report.save_figure(plot_phase_diagram(rows, x, y, panel, title,
                                                  reference_footnote(rows)),
                               f"{name}{'_' + slug(values) if values else ''}.png")
    x = next((p for p in ("n_syn", "n_real", "lam") if p in varying), None)
    if x is None:
        return
    panel_key = "lam" if "lam" in varying and x != "lam" else None
    line_keys = [p for p in varying if p in EFFECTIVE_LINE_PARAMETERS and p not in (x, panel_key)]
    facet_keys = [p for p in varying if p not in (*line_keys, x, panel_key)]
    for values, rows in facets(with_ratio, facet_keys):
        title = f"{title_metric}\n" + " · ".join(p for p in (caption, describe(values)) if p)
        figure = plot_intervals(rows, x, line_keys, value="ratio", low="ratio_low",
                                high="ratio_high", bound="ratio_bound", ylabel="n_e / n_r",
                                title=title, panel_key=panel_key,
                                reference_y=(1.0, "n_e = n_r"),
                                footnote=reference_footnote(rows))
        report.save_figure(figure, f"effective_size{'_' + slug(values) if values else ''}.png")


def write_initial_model_figures(asymptotes: pd.DataFrame, varying: list[str], metric: str,
                                caption: str, report: Report) -> None:
    if "n_init" not in varying:
        return
    groups = asymptotes[(asymptotes["scope"] == "group") & (asymptotes["metric"] == metric)]
    line_keys = [p for p in varying if p in INITIAL_LINE_PARAMETERS]
    facet_keys = [p for p in varying if p not in (*line_keys, "n_init")]
    for values, rows in facets(groups, facet_keys):
        title = (f"The initial model is forgotten: limit of {metric_label(metric)} vs n_init\n"
                 + " · ".join(p for p in (caption, describe(values)) if p))
        figure = plot_intervals(rows, "n_init", line_keys, value="value", low="low",
                                high="high", ylabel=f"limit of {metric_label(metric)}",
                                title=title, log_y=False)
        report.save_figure(figure, f"asymptote_vs_n_init{'_' + slug(values) if values else ''}.png")


def stability_table(sweep: Sweep, metric: str) -> tuple[pd.DataFrame, dict, list[str]]:
    """One verdict per trial (``analysis.stability``), the real-data-only level of each
    configuration (keyed by the text of the matching parameters' values), and those
    matching parameters.

    The reference of a trial is the bertrand runs with lambda_B = 0 whose parameters
    match its own except the experiment's axes (STABILITY_LINE_PARAMETERS and the sizes
    they derive); a reference run itself is judged on its trend only.
    """
    trials = sweep.trials.set_index("run_id")
    varying = varying_parameters(sweep)
    match = [p for p in varying if p not in (*STABILITY_LINE_PARAMETERS, *STABILITY_DERIVED)]
    series = sweep.records.pivot(index="run_id", columns="generation", values=f"{metric}_mean")
    logged = trials["generations_logged"].astype(int)

    def key(run_id) -> tuple:
        return tuple(as_text(trials.loc[[run_id], match]).iloc[0]) if match else ()

    is_reference = (trials["loop"] == "bertrand") & (trials["lambda_b"].fillna(-1) == 0)
    references: dict[tuple, list[Level]] = {}
    for run_id in trials.index[is_reference]:
        level = kept_level(series.loc[run_id].to_numpy(dtype=float)[:logged[run_id]])
        if level is not None:
            references.setdefault(key(run_id), []).append(level)
    pooled = {k: Level.pooled(levels) for k, levels in references.items()}
    rows = []
    for run_id in trials.index:
        reference = None if is_reference[run_id] else pooled.get(key(run_id))
        result = assess_stability(series.loc[run_id].to_numpy(dtype=float)[:logged[run_id]],
                                  reference)
        if is_reference[run_id] and result.verdict == "settles":
            result = dataclasses.replace(result, reason=f"no trend (p = {result.slope_p:.2g}); "
                                                        f"the real-data-only reference")
        rows.append({"run_id": run_id, **trials.loc[run_id, [*varying, "seed"]].to_dict(),
                     "metric": metric, **vars(result)})
    return pd.DataFrame(rows), {k: level.mean for k, level in pooled.items()}, match


def write_stability(sweep: Sweep, metric: str, caption: str, report: Report) -> None:
    """stability.csv and a figure per configuration of Bertrand's experiment."""
    table, reference_levels, match = stability_table(sweep, metric)
    report.save_table(table, "stability.csv")
    varying = varying_parameters(sweep)
    line_keys = [p for p in varying if p in STABILITY_LINE_PARAMETERS]
    trials = sweep.trials.set_index("run_id")
    for values, rows in facets(sweep.records, match):
        key = tuple(as_text(trials.loc[[rows["run_id"].iloc[0]], match]).iloc[0]) if match else ()
        title = " · ".join(part for part in (caption, describe(values)) if part)
        figure = plot_stability(rows, table, line_keys, metric, title, reference_levels.get(key))
        report.save_figure(figure, f"stability{'_' + slug(values) if values else ''}.png")
    for line, members in table.groupby(line_keys, sort=True, dropna=False):
        line = line if isinstance(line, tuple) else (line,)
        counts = members["verdict"].value_counts()
        report.notes.append(f"stability of {metric}, {describe(dict(zip(line_keys, line)))}: "
                            + ", ".join(f"{v} {n}/{len(members)}" for v, n in counts.items()))


def analyze(sweep: Sweep, out_dir: Path, *, metric: str | None = None,
            baseline: Sweep | None = None, cache_dir: Path | None = None,
            formats: tuple[str, ...] = ("png",),
            progress: Callable[[str], None] = lambda message: None) -> Report:
    """Write every table and figure that applies to the sweep into out_dir.

    Args:
        metric: the distance whose limit defines n_e (default: the first recorded of
            estimates.DISTANCE_METRICS, w2_sq for Gaussian sweeps).
        baseline: a loaded sweep of baseline trials (one generation on n_init real samples)
            giving measured reference curves; needed for n_e of non-Gaussian models.
        cache_dir: where computed Gaussian reference curves are kept between runs.
        formats: the files of every figure, among FIGURE_FORMATS (vector ones for papers).
        progress: called with a short message before each slow step.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir, formats)
    metric = metric or default_distance(sweep)
    if metric not in DISTANCE_METRICS:
        raise AnalysisError(f"n_e needs a distance to P_r, which falls as a model sees more "
                            f"real data; --metric {metric} is not one of "
                            f"{', '.join(DISTANCE_METRICS)}")
    if f"{metric}_mean" not in sweep.metrics:
        raise AnalysisError(f"sweep {sweep.name!r} has no metric {metric}_mean; it has "
                            + ", ".join(summary_metrics(sweep)))
    varying = varying_parameters(sweep)
    caption = sweep_caption(sweep.trials, varying)
    report.save_table(sweep.trials, "trials.csv")

    progress("asymptotes")
    estimated = list(dict.fromkeys([metric, *panel_metrics(sweep.metrics)]))
    asymptotes = asymptote_table(sweep, estimated)
    report.save_table(asymptotes, "asymptotes.csv")
    groups = asymptotes[(asymptotes["scope"] == "group") & (asymptotes["metric"] == metric)]
    unconverged = int((~groups["converged"].astype(bool)).sum())
    report.notes.append(f"{len(groups)} configurations, {unconverged} not converged "
                        f"(limit of {metric}; reasons in asymptotes.csv)")

    progress("reference curves and n_e")
    curves = ReferenceCurves(metric, baseline, cache_dir)
    effective = effective_size_table(sweep, asymptotes, metric, curves, report)
    if effective is not None:
        report.save_table(effective, "effective_size.csv")

    progress("figures")
    write_generation_figures(sweep, asymptotes, varying, caption, report)
    if effective is not None:
        write_effective_size_figures(effective, varying, metric, caption, report)
    write_initial_model_figures(asymptotes, varying, metric, caption, report)
    if "loop" in sweep.trials and (sweep.trials["loop"] == "bertrand").any():
        progress("stability verdicts")
        write_stability(sweep, metric, caption, report)
    return report
