"""How many generations per second one sweep driver takes in and stores, against an
earlier revision of the project measured in the same run.

    python benchmarks/driver_ingestion.py [--trials 8] [--generations 1000] [--baseline REV] [--direct]

Two ways, each for this checkout and for a baseline revision (checked out into a
temporary git worktree) in its own process:

--direct (the driver alone): the sweep's MLflow logger is fed the trials' results as
Tune would feed them, round-robin over the trials, from records computed beforehand
(not timed): chunks of CHUNK generations with a checkpoint every CHECKPOINT_EVERY for
this checkout; one result per generation for a baseline that reported so. The rate is
generations stored per second from the first result to the last finished run: what one
driver can take in, whatever produces it.

Without --direct (the whole path): many fast trials (exact Gaussian loops at d = 2 and 2 chains, well under a millisecond
per generation) run at once on a local Ray with one logical CPU per trial, into a fresh
sqlite MLflow store: the trials produce far faster than any store absorbs, so the
sweep's pace is the driver's (Tune's results, the MLflow writes). Each revision runs the
same sweep file in its own process, this checkout's code and the baseline's (checked
out into a temporary git worktree), and the benchmark prints:

- ingestion: generations of complete records stored per second, counted over the
  window from the first trial's start to the last trial's end (MLflow run times), so
  Ray's and Tune's start-up are left out (on a 2-core machine the trials' own start-up
  and production then bound this rate, not the driver: --direct measures the driver);
- the ratio of this checkout's rate to the baseline's (target: >= 1,000 generations per
  second, so a 64-CPU cluster is not driver-bound);
- whether every generation of every trial was stored (read back by `analysis`).

The default baseline is the last revision that sent one Tune result and ~30 MLflow
metrics per generation (benchmarks/baseline_revision.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.baseline_revision import (DEFAULT_BASELINE, REPOSITORY,  # noqa: E402
                                          baseline_checkout, environment_for)

# Runs in a fresh interpreter against whichever revision PYTHONPATH selects: only the
# API both revisions share (load_sweep, run_sweep with tracking_uri and storage).
DRIVER = textwrap.dedent("""
    import json, sys, time
    from sweeps.environment import configure_local_ray
    configure_local_ray()
    import ray
    from sweeps.runner import run_sweep
    from sweeps.sweep_file import load_sweep
    path, uri, storage, cpus, out = sys.argv[1:6]
    ray.init(address="local", num_cpus=int(cpus), include_dashboard=False,
             log_to_driver=False)
    started = time.perf_counter()
    outcome = run_sweep(load_sweep(path), tracking_uri=uri, storage=storage)
    seconds = time.perf_counter() - started
    ray.shutdown()
    json.dump({"seconds": seconds, "finished": outcome.finished,
               "experiment_id": outcome.experiment_id}, open(out, "w"))
""")


# The driver alone, on the API both revisions share; a revision with RECORDS_KEY takes
# chunks of records, an older one a result per generation.
DIRECT = textwrap.dedent("""
    import json, sys, tempfile, time
    from mlflow import MlflowClient
    from ray import tune
    from ray.tune.experiment import Trial
    import sweeps.trial as trial_module
    from mad_core.loop import SelfConsumingLoop
    from sweeps.mlflow_callback import MlflowTrialLogger
    from sweeps.mlflow_runs import open_experiment, provenance_tags, start_parent_run
    from sweeps.sweep_file import load_sweep
    from sweeps.trial import CHECKPOINT_FLAG, trial_config
    path, uri, chunk, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    sweep = load_sweep(path)
    chunked = hasattr(trial_module, "RECORDS_KEY")
    client = MlflowClient(uri)
    experiment_id = open_experiment(client, sweep)
    parent = start_parent_run(client, experiment_id, sweep, "unused", provenance_tags())
    logger = MlflowTrialLogger(uri, experiment_id, parent, {"mad.sweep": sweep.name})
    trials = [Trial("run_trial", config={"trial": trial_config(p, sweep.checkpoint_every)},
                    trial_id=f"t{p.index:05d}", stub=True) for p in sweep.trials]
    records = [list(SelfConsumingLoop(p.spec)) for p in sweep.trials]
    every, last = sweep.checkpoint_every, len(records[0])
    checkpoint = tune.Checkpoint.from_directory(tempfile.mkdtemp())

    def report(trial, result, flagged):
        if flagged:
            result[CHECKPOINT_FLAG] = True
        logger.on_trial_result(iteration=0, trials=trials, trial=trial, result=result)
        if flagged:
            logger.on_checkpoint(iteration=0, trials=trials, trial=trial,
                                 checkpoint=checkpoint)

    started = time.perf_counter()
    for trial in trials:
        logger.on_trial_start(iteration=0, trials=trials, trial=trial)
    for start in range(0, last, chunk):
        for trial, trial_records in zip(trials, records):
            part = trial_records[start:start + chunk]
            if chunked:
                end = part[-1]["generation"]
                report(trial, {trial_module.RECORDS_KEY: part, "record": part[-1]},
                       end % every == 0 or end == last)
            else:
                for record in part:
                    g = record["generation"]
                    report(trial, {"record": record}, g % every == 0 or g == last)
    for trial in trials:
        logger.on_trial_complete(iteration=0, trials=trials, trial=trial)
    seconds = time.perf_counter() - started
    json.dump({"seconds": seconds, "window": seconds, "finished": len(trials),
               "experiment_id": experiment_id}, open(out, "w"))
""")
CHUNK = 250  # generations per result: about a second of a trial of 4 ms generations
CHECKPOINT_EVERY = 500


def sweep_file(folder: Path, trials: int, generations: int) -> Path:
    content = {"name": "driver_ingestion",
               "trial": {"model": "gaussian", "loop": "fresh_data", "n_init": 20,
                         "n_real": 10, "n_syn": 10, "chains": 2, "simulation": "exact",
                         "data": {"source": "gaussian", "dim": 2}},
               "generations": generations, "grid": {"seed": {"range": [0, trials]}},
               "checkpoint_every": min(CHECKPOINT_EVERY, generations)}
    path = folder / "driver_ingestion.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def run_revision(source: Path, sweep: Path, folder: Path, cpus: int, direct: bool) -> dict:
    """Run the sweep (direct: feed its logger) with the code under `source`; wall
    seconds, the ingestion window and the generations stored (read by this checkout's
    analysis package)."""
    folder.mkdir()
    uri = f"sqlite:///{folder}/mlflow.db"
    out = folder / "outcome.json"
    command = ([DIRECT, str(sweep), uri, str(CHUNK), str(out)] if direct else
               [DRIVER, str(sweep), uri, str(folder / "tune"), str(cpus), str(out)])
    subprocess.run([sys.executable, "-c", *command], cwd=folder, env=environment_for(source),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    outcome = json.loads(out.read_text())
    if direct:
        outcome["window"] = outcome["seconds"]

    from mlflow import MlflowClient

    from analysis.load import load_sweep as load_records

    runs = MlflowClient(uri).search_runs([outcome["experiment_id"]],
                                         "tags.`mad.role` = 'trial'")
    outcome.setdefault("window", (max(run.info.end_time for run in runs)
                                  - min(run.info.start_time for run in runs)) / 1000)
    records = load_records("driver_ingestion", uri).records
    return {**outcome, "stored": len(records),
            "unique": len(records.drop_duplicates(["run_id", "generation"]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8, help="trials, all running at once")
    parser.add_argument("--generations", type=int, default=1000)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision")
    parser.add_argument("--direct", action="store_true",
                        help="feed the driver's logger directly (no Ray, no trials)")
    args = parser.parse_args()
    expected = args.trials * args.generations
    with tempfile.TemporaryDirectory(prefix="driver_ingestion") as tmp:
        folder = Path(tmp)
        sweep = sweep_file(folder, args.trials, args.generations)
        with baseline_checkout(args.baseline, folder / "baseline") as baseline_source:
            results = {"this checkout": run_revision(REPOSITORY, sweep, folder / "current",
                                                     args.trials, args.direct),
                       f"baseline {args.baseline}": run_revision(
                           baseline_source, sweep, folder / "old", args.trials, args.direct)}
    how = (f"the driver's logger fed directly, {CHUNK} generations a result" if args.direct
           else "local Ray")
    print(f"\n{args.trials} trials x {args.generations} generations at once "
          f"({expected:,} generations), {how}, sqlite store")
    rates = {}
    for name, result in results.items():
        rates[name] = result["stored"] / result["window"]
        complete = "every generation once" if result["unique"] == result["stored"] == expected \
            else f"{result['unique']:,} of {expected:,} generations stored"
        timing = (f"{result['window']:6.1f} s" if args.direct else
                  f"{result['window']:6.1f} s of trials ({result['seconds']:.1f} s in run_sweep)")
        print(f"  {name:>20}: {rates[name]:8,.0f} generations/s stored over {timing}; "
              f"{complete}")
    current, baseline = rates.values()
    print(f"ingestion, this checkout / baseline: {current / baseline:6.1f}x "
          f"(target: >= 1,000 generations/s, this checkout {current:,.0f})")


if __name__ == "__main__":
    main()
