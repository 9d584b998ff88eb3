"""What running trials through `mad sweep` (Ray Tune + MLflow) costs over plain loops.

    python benchmarks/sweep_overhead.py [--trials 4] [--generations 120]

One grid of Gaussian trials (d = 100, 100 chains, exact simulation: about 10 s each on
one BLAS thread) runs three ways, all measured in this run:
  1. plain: mad_core's SelfConsumingLoop over every trial, one after another, in this
     process (and, for the machine's own scaling, spread over two processes);
  2. the sweep (run_sweep, what `mad sweep` runs: Tune trials, a checkpoint every 10
     generations, every record logged to a sqlite MLflow store) on a local Ray with 1 CPU;
  3. the same sweep with 2 CPUs.
Prints the overhead, sweep on 1 CPU / plain (target <= 1.1), and the throughput of
2 CPUs vs 1, sweep on 1 CPU / sweep on 2 CPUs (target >= 1.8). Sweep times run from
run_sweep's call to its return; Ray's start is printed apart. The overhead splits into a
start-up cost per invocation (tracking store, Tune, the first trial process importing
the project) and a cost per trial (child-run duration in MLflow against the plain loop).

Every process uses one BLAS thread, as a trial with one CPU does.
"""

from __future__ import annotations

import os

# Before numpy and ray are imported: one BLAS thread everywhere (Ray's workers inherit
# it), and a local Ray on 127.0.0.1.
os.environ.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
from sweeps.environment import configure_local_ray  # noqa: E402

configure_local_ray()

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import ray  # noqa: E402
import yaml  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from mad_core.loop import SelfConsumingLoop  # noqa: E402
from mad_core.spec import TrialSpec  # noqa: E402
from sweeps.mlflow_runs import child_runs  # noqa: E402
from sweeps.runner import run_sweep  # noqa: E402
from sweeps.sweep_file import Sweep, load_sweep  # noqa: E402


def benchmark_sweep(folder: Path, trials: int, generations: int) -> Sweep:
    content = {
        "name": "sweep_overhead",
        "trial": {"model": "gaussian", "loop": "fresh_data", "n_init": 1000, "n_real": 100,
                  "n_syn": 900, "chains": 100, "data": {"source": "gaussian", "dim": 100},
                  "simulation": "exact"},
        "generations": generations,
        "grid": {"seed": {"range": [0, trials]}},
        "checkpoint_every": 10,
    }
    path = folder / "sweep_overhead.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return load_sweep(str(path))


def run_plain(spec: TrialSpec) -> None:
    for _ in SelfConsumingLoop(spec):
        pass


def plain_seconds(sweep: Sweep, processes: int) -> float:
    """Wall seconds of every trial as a plain loop: in this process (processes=1), or
    spread over started processes (what the machine itself gives for parallel trials)."""
    specs = [point.spec for point in sweep.trials]
    if processes == 1:
        started = time.perf_counter()
        for spec in specs:
            run_plain(spec)
        return time.perf_counter() - started
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(run_plain, specs[:processes])  # start-up and imports, not timed
        started = time.perf_counter()
        pool.map(run_plain, specs, chunksize=1)
        return time.perf_counter() - started


def sweep_seconds(sweep: Sweep, folder: Path, cpus: int) -> tuple[float, float, float]:
    """(seconds to start Ray, seconds of run_sweep, mean seconds of a trial's child run)
    with a local Ray of `cpus` CPUs."""
    tracking_uri = f"sqlite:///{folder}/mlflow-{cpus}cpu.db"  # each run creates its store
    started = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started
    try:
        started = time.perf_counter()
        outcome = run_sweep(sweep, tracking_uri=tracking_uri, storage=str(folder / "tune"))
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    assert outcome.finished == len(sweep.trials), outcome
    client = MlflowClient(tracking_uri)
    children = child_runs(client, outcome.experiment_id, outcome.parent_run_id).values()
    trial_seconds = [(run.info.end_time - run.info.start_time) / 1000 for run in children]
    return ray_start, seconds, sum(trial_seconds) / len(trial_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--generations", type=int, default=120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sweep_overhead") as tmp:
        folder = Path(tmp)
        sweep = benchmark_sweep(folder, args.trials, args.generations)
        plain = plain_seconds(sweep, processes=1)
        plain_two = plain_seconds(sweep, processes=2)
        ray_1, one_cpu, trial_1 = sweep_seconds(sweep, folder, cpus=1)
        ray_2, two_cpus, _ = sweep_seconds(sweep, folder, cpus=2)
    per_trial = plain / len(sweep.trials)
    print(f"\n{len(sweep.trials)} trials x {args.generations} generations, "
          f"{per_trial:.1f} s per trial in a plain loop")
    print(f"plain loops, one process:  {plain:7.1f} s")
    print(f"mad sweep, 1 CPU:          {one_cpu:7.1f} s   (Ray start {ray_1:.1f} s apart)")
    print(f"mad sweep, 2 CPUs:         {two_cpus:7.1f} s   (Ray start {ray_2:.1f} s apart)")
    print(f"overhead, 1 CPU / plain:   {one_cpu / plain:7.2f}x  (target <= 1.1)")
    print(f"  of which start-up:       {one_cpu - len(sweep.trials) * trial_1:7.1f} s")
    print(f"  per trial:               {trial_1 / per_trial:7.2f}x  ({trial_1:.1f} s "
          f"a trial in MLflow, {per_trial:.1f} s plain)")
    print(f"throughput, 2 CPUs vs 1:   {one_cpu / two_cpus:7.2f}x  (target >= 1.8)")
    print(f"  plain loops, 2 processes vs 1: {plain / plain_two:.2f}x  (this machine's "
          f"own scaling, the ceiling)")


if __name__ == "__main__":
    main()
