"""`mad analyze` on a large sweep: 300 trials x 200 generations in a sqlite MLflow store.

    python benchmarks/analyze.py [--store DIR]

Fills the store (once; --store keeps it for later runs) with real mad_core records in
the layout of docs/tracking.md, by MLflow's batch logging (the writer of the analysis
tests): a fresh data loop on N(0, I_10), lambda x n_r x n_s x 4 seeds = 300 trials.
Then prints, all measured in this run:
  - `mad analyze` end to end with an empty cache, split into loading, the asymptote
    fits, the reference curve and n_e, and the figures; and again with a warm cache;
  - loading a subset of trials in bulk (one query per metric) against one MLflow call
    per (trial, metric) history, the client's public way (target: bulk >= 10x faster).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the writer shared with the analysis tests

from mlflow import MlflowClient  # noqa: E402

from analysis.history import fetch_histories, per_history  # noqa: E402
from analysis.load import load_sweep  # noqa: E402
from analysis.report import analyze  # noqa: E402
from mad_cli import main as mad  # noqa: E402
from test_analysis_load import log_sweep  # noqa: E402

NAME = "benchmark_analyze"
BASE = {"model": "gaussian", "loop": "fresh_data", "n_init": 100, "generations": 200,
        "chains": 10, "data": {"dim": 10}}
GRID = {"lam": [0.7, 0.85, 1.0], "n_real": [20, 50, 100, 200, 500],
        "n_syn": [10, 30, 100, 300, 1000], "seed": [0, 1, 2, 3]}
SUBSET = 100  # trials loaded both ways for the bulk-vs-per-history ratio


def fill(uri: str, root: Path) -> None:
    started = time.perf_counter()
    log_sweep(uri, NAME, BASE, GRID, artifact_location=(root / "artifacts").as_uri())
    print(f"filled the store in {time.perf_counter() - started:.0f} s")


def time_steps(uri: str, root: Path) -> None:
    """Load from MLflow (cache bypassed), then analyze with a timestamp at each step."""
    started = time.perf_counter()
    sweep = load_sweep(NAME, uri)
    marks = [("load from MLflow (bulk)", started), ("", time.perf_counter())]
    # Each progress message names the step that starts now.
    report = analyze(sweep, root / "out_steps", cache_dir=root / "cache_steps",
                     progress=lambda step: marks.append((step, time.perf_counter())))
    marks.append(("", time.perf_counter()))
    figures = sum(path.suffix == ".png" for path in report.written)
    labels = {"": "trials.csv", "asymptotes": "asymptote fits (all metrics)",
              "reference curves and n_e": "reference curve + n_e",
              "figures": f"figures ({figures} PNGs)"}
    print(f"steps ({sweep.records['run_id'].nunique()} trials, {len(sweep.records)} records, "
          f"{len(sweep.metrics)} metrics):")
    for (step, begun), (_, ended) in zip(marks, marks[1:]):
        print(f"  {labels.get(step, step):40s} {ended - begun:7.1f} s")


def time_command(uri: str, root: Path, label: str) -> float:
    started = time.perf_counter()
    code = mad(["analyze", NAME, "--tracking-uri", uri, "--out", str(root / "out"),
                "--cache-dir", str(root / "cache")])
    elapsed = time.perf_counter() - started
    assert code == 0
    print(f"mad analyze, {label}: {elapsed:.1f} s")
    return elapsed


def time_loading_ways(uri: str) -> None:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(NAME)
    runs = client.search_runs([experiment.experiment_id], "tags.`mad.role` = 'trial'",
                              max_results=SUBSET)
    run_ids = [run.info.run_id for run in runs]
    keys = sorted(runs[0].data.metrics)
    started = time.perf_counter()
    bulk = fetch_histories(client, run_ids, keys, generations=BASE["generations"])
    bulk_seconds = time.perf_counter() - started
    started = time.perf_counter()
    single = per_history(client, run_ids, keys)
    single_seconds = time.perf_counter() - started
    assert len(bulk) == len(single)
    print(f"loading {SUBSET} trials x {len(keys)} metrics ({len(bulk)} values): bulk "
          f"{bulk_seconds:.2f} s, one call per history {single_seconds:.2f} s "
          f"({len(run_ids) * len(keys)} calls): {single_seconds / bulk_seconds:.0f}x "
          f"(target >= 10x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="folder of the sqlite store, kept "
                                                   "between runs (default: a temporary one)")
    args = parser.parse_args()
    root = args.store or Path(tempfile.mkdtemp(prefix="mad_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    if not (root / "mlflow.db").is_file():
        fill(uri, root)
    time_steps(uri, root)
    time_command(uri, root, "empty cache")
    time_command(uri, root, "warm cache (records and reference curve)")
    time_loading_ways(uri)


if __name__ == "__main__":
    main()
