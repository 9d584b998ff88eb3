"""The README's main job, `mad sweep paper_quick_phase`, against an earlier revision of the
project measured in the same run; and whether both give the same phase diagram.

    python benchmarks/main_job.py [--baseline REV] [--sweep paper_quick_phase]

Each revision runs the sweep in its own process from a fresh folder (its own sqlite
store, a local Ray on this machine's CPUs), as a user runs it; the baseline is checked
out into a temporary git worktree (benchmarks/baseline_revision.py). Both stores are
then analysed by this checkout's `mad analyze` (which reads either layout), so the
comparison isolates the sweep. Prints:

- the wall time of each `mad sweep` and their ratio (target: >= 4x on 2 cores);
- the generations each ran and the trials whose W2^2 limit converged;
- n_e / n_r per cell from both, and whether their 95 % intervals overlap.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.baseline_revision import (DEFAULT_BASELINE, REPOSITORY,  # noqa: E402
                                          baseline_checkout, environment_for)

CELL = ["lam", "n_real", "n_syn"]


def run_sweep(source: Path, sweep: str, folder: Path) -> float:
    """Wall seconds of `mad sweep` with the code under `source`, run in `folder`."""
    folder.mkdir()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mad_cli", "sweep", sweep, "--tracking-uri",
                    f"sqlite:///{folder}/mlflow.db"], cwd=folder, env=environment_for(source),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def analyse(sweep: str, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(trials, W2^2 asymptotes per trial, n_e per cell) by this checkout's analysis."""
    out = folder / "analysis"
    subprocess.run([sys.executable, "-m", "mad_cli", "analyze", sweep, "--tracking-uri",
                    f"sqlite:///{folder}/mlflow.db", "--out", str(out)], cwd=folder,
                   env=environment_for(REPOSITORY), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    asymptotes = pd.read_csv(out / "asymptotes.csv")
    asymptotes = asymptotes[(asymptotes["scope"] == "trial")
                            & (asymptotes["metric"] == "w2_sq")]
    return (pd.read_csv(out / "trials.csv"), asymptotes,
            pd.read_csv(out / "effective_size.csv"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision")
    parser.add_argument("--sweep", default="paper_quick_phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="main_job") as tmp:
        folder = Path(tmp)
        with baseline_checkout(args.baseline, folder / "baseline") as baseline_source:
            seconds = {"this checkout": run_sweep(REPOSITORY, args.sweep, folder / "current"),
                       "baseline": run_sweep(baseline_source, args.sweep, folder / "old")}
        results = {"this checkout": analyse(args.sweep, folder / "current"),
                   "baseline": analyse(args.sweep, folder / "old")}
    print(f"\nmad sweep {args.sweep}, local Ray, sqlite store")
    for name, (trials, asymptotes, _) in results.items():
        print(f"  {name:>13}: {seconds[name]:6.1f} s, {int(trials['generations_logged'].sum()):,} "
              f"generations, {int(asymptotes['converged'].sum())} of {len(asymptotes)} trials "
              f"converged")
    print(f"speed-up, baseline / this checkout: "
          f"{seconds['baseline'] / seconds['this checkout']:5.2f}x (target >= 4)")
    current, old = (results[name][2] for name in ("this checkout", "baseline"))
    cells = current.merge(old, on=CELL, suffixes=("", "_baseline"))
    overlap = ((cells["ratio_low"] <= cells["ratio_high_baseline"])
               & (cells["ratio_low_baseline"] <= cells["ratio_high"]))
    print(f"n_e / n_r intervals overlap in {int(overlap.sum())} of {len(cells)} cells:")
    for (_, cell), same in zip(cells.iterrows(), overlap):
        print(f"  lam {cell['lam']:<4} n_r {cell['n_real']:<5} n_s {cell['n_syn']:<6} "
              f"{cell['ratio_text']:>24}  baseline {cell['ratio_text_baseline']:>24}"
              f"{'' if same else '  (no overlap)'}")


if __name__ == "__main__":
    main()
