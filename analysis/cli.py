"""`mad analyze`: a sweep's asymptotes, n_e and MAD's figures, from its MLflow records.

Reads the sweep (never re-runs a trial), writes CSV tables and PNG figures to --out, and
logs them as artifacts (folder analysis/) of the sweep's latest parent run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path("mad_output") / "analysis"
DEFAULT_CACHE = Path("mad_output") / "cache"
ARTIFACT_FOLDER = "analysis"
EXIT_BAD_INPUT = 2


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze", help="asymptotes, n_e and phase diagrams of a sweep, from MLflow",
        description=__doc__, epilog="Definitions and outputs: docs/analysis.md.")
    parser.add_argument("sweep", metavar="EXPERIMENT",
                        help="the sweep's MLflow experiment name, or a parent run id")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: "
                                               "$MLFLOW_TRACKING_URI, sqlite:///mlflow.db)")
    parser.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT_OUT}/"
                                                 f"<experiment>)")
    parser.add_argument("--metric", help="distance whose limit defines n_e (default: w2_sq, "
                                         "MAD's WD, or the first distance the sweep has)")
    parser.add_argument("--reference-sweep", metavar="EXPERIMENT",
                        help="a sweep of baseline trials (one generation on n_init real "
                             "samples) measuring f(n); needed for n_e of non-Gaussian models")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help="cached tables and reference curves (default %(default)s)")
    parser.add_argument("--refresh", action="store_true",
                        help="reload the records from MLflow even if the cache is current")
    parser.add_argument("--format", default="png", metavar="png,pdf,svg",
                        help="figure files to write, comma-separated (default %(default)s)")
    parser.add_argument("--no-artifacts", action="store_true",
                        help="do not log the outputs to the sweep's parent run")
    parser.set_defaults(handler=analyze_command)


def log_outputs(tracking_uri: str, parent_run_id: str, out_dir: Path) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri).log_artifacts(parent_run_id, str(out_dir), ARTIFACT_FOLDER)


def analyze_command(args: argparse.Namespace) -> int:
    # Imported here, not at the top: they bring mlflow and pandas (seconds), which
    # `mad --help` and `mad run` would pay for nothing.
    from analysis.estimates import AnalysisError
    from analysis.load import SweepLoadError, load_sweep, resolve_tracking_uri
    from analysis.report import FIGURE_FORMATS, analyze

    formats = tuple(dict.fromkeys(f.strip().lower() for f in args.format.split(",")))
    unknown = [f for f in formats if f not in FIGURE_FORMATS]
    if unknown:
        print(f"mad analyze: --format {args.format}: {', '.join(unknown)} not among "
              f"{', '.join(FIGURE_FORMATS)}; e.g. --format png,pdf", file=sys.stderr)
        return EXIT_BAD_INPUT
    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    started = time.perf_counter()
    try:
        sweep = load_sweep(args.sweep, tracking_uri, cache_dir=args.cache_dir,
                           refresh=args.refresh)
        baseline = None if args.reference_sweep is None else load_sweep(
            args.reference_sweep, tracking_uri, cache_dir=args.cache_dir, refresh=args.refresh)
    except SweepLoadError as error:
        print(f"mad analyze: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    trials = sweep.records["run_id"].nunique()
    print(f"sweep {sweep.name}: {trials} trials, {len(sweep.records)} records from "
          f"{tracking_uri} ({time.perf_counter() - started:.1f} s)")
    out_dir = args.out or DEFAULT_OUT / sweep.name
    try:
        report = analyze(sweep, out_dir, metric=args.metric, baseline=baseline,
                         cache_dir=args.cache_dir, formats=formats,
                         progress=lambda step: print(f"  {step} ...", flush=True))
    except AnalysisError as error:
        print(f"mad analyze: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for note in report.notes:
        print(f"  {note}")
    tables = [p for p in report.written if p.suffix == ".csv"]
    figures = [p for p in report.written if p.suffix == f".{formats[0]}" and p.parent == out_dir]
    per_generation = [p for p in report.written if p.parent == out_dir / "generations"
                      and p.suffix == f".{formats[0]}"]
    print(f"tables: {', '.join(p.name for p in tables)}")
    print("figures:")
    for path in figures:
        print(f"  {path}")
    if per_generation:
        print(f"  {out_dir / 'generations'}/ ({len(per_generation)} figures of metrics vs "
              f"generation)")
    if args.no_artifacts or not sweep.parent_run_ids:
        print("not logged to MLflow" + ("" if args.no_artifacts else
                                        " (the sweep has no parent run)"))
    else:
        log_outputs(tracking_uri, sweep.parent_run_ids[0], out_dir)
        print(f"logged to MLflow as artifacts '{ARTIFACT_FOLDER}/' of parent run "
              f"{sweep.parent_run_ids[0]}")
    print(f"written to {out_dir}/ in {time.perf_counter() - started:.1f} s; "
          f"browse MLflow with: mad ui {sweep.name} --tracking-uri {tracking_uri}")
    return 0
