"""Exactly-once MLflow histories for every moment a trial or the driver can fail.

Tune's contract with the logger: results reach ``on_trial_result`` in order, and a
checkpoint is registered (and tagged as the resume point) only after the result it came
with was processed. So a trial that failed after its result f was processed restarts
from a checkpoint r <= f, where r is a checkpoint generation or 0. These tests replay
every (f, r) through the real logger into a real sqlite store, with the same logger (a
retry under the same driver) or a fresh one that lost its buffer (a killed driver,
then --resume), and check the stored histories and files.
"""

from __future__ import annotations

import pickle

import pytest
from mlflow import MlflowClient
from ray.tune.experiment import Trial

from mad_core.loop import SelfConsumingLoop
from sweeps.mlflow_callback import MlflowTrialLogger
from sweeps.mlflow_runs import open_experiment, provenance_tags, start_parent_run
from sweeps.sweep_file import load_sweep
from sweeps.trial import ARTIFACTS_KEY, CHECKPOINT_FLAG, RECORDS_KEY, trial_config

GENERATIONS = 5
SWEEP = {"name": "replay", "generations": GENERATIONS,
         "trial": {"model": "gaussian", "loop": "fully_synthetic", "n_init": 20, "n_syn": 10,
                   "chains": 3, "data": {"source": "gaussian", "dim": 2}}}


def checkpointed(generation: int, checkpoint_every: int) -> bool:
    return generation % checkpoint_every == 0 or generation == GENERATIONS


def grid_path(generation: int) -> str:
    return f"grids/generation_{generation:04d}.png"


def result(records: list[dict], checkpoint_every: int) -> dict:
    """What run_trial reports for a chunk of records, with a file for every generation."""
    reported = {RECORDS_KEY: records, "record": records[-1],
                ARTIFACTS_KEY: {grid_path(r["generation"]): b"%d" % r["generation"]
                                for r in records}}
    if checkpointed(records[-1]["generation"], checkpoint_every):
        reported[CHECKPOINT_FLAG] = True
    return reported


def chunks(records: list[dict], checkpoint_every: int, size: int) -> list[list[dict]]:
    """Records cut as run_trial cuts them: a chunk ends at a checkpoint, or after `size`
    records (standing in for CHUNK_S of work)."""
    cut, current = [], []
    for record in records:
        current.append(record)
        if len(current) == size or checkpointed(record["generation"], checkpoint_every):
            cut.append(current)
            current = []
    return cut + ([current] if current else [])


def scenarios(checkpoint_every: int):
    """(failed after result f, restored from checkpoint r) pairs."""
    checkpoints = [0] + [g for g in range(1, GENERATIONS + 1)
                         if checkpointed(g, checkpoint_every)]
    return [(f, r) for f in range(1, GENERATIONS + 1) for r in checkpoints if r <= f]


@pytest.mark.parametrize("driver_restarted", [False, True], ids=["retry", "driver restart"])
@pytest.mark.parametrize("checkpoint_every,chunk", [(1, 1), (2, 1), (5, 2)])
def test_history_holds_every_generation_once(write_sweep, tracking_uri, check_store,
                                             checkpoint_every, chunk, driver_restarted):
    cases = scenarios(checkpoint_every)
    sweep = load_sweep(str(write_sweep({**SWEEP, "grid": {"seed": list(range(len(cases)))}})))
    client = MlflowClient(tracking_uri)
    experiment_id = open_experiment(client, sweep)
    parent_run_id = start_parent_run(client, experiment_id, sweep, tune_path="unused",
                                     provenance=provenance_tags())
    logger = MlflowTrialLogger(tracking_uri, experiment_id, parent_run_id, {"mad.sweep": "replay"})

    for point, (failed_after, restored_from) in zip(sweep.trials, cases):
        trial = Trial("run_trial", config={"trial": trial_config(point, checkpoint_every)},
                      trial_id=f"replay_{point.index:05d}", stub=True)
        records = list(SelfConsumingLoop(point.spec))
        logger.on_trial_start(iteration=0, trials=[trial], trial=trial)
        for part in chunks(records[:failed_after], checkpoint_every, chunk):
            logger.on_trial_result(iteration=0, trials=[trial], trial=trial,
                                   result=result(part, checkpoint_every))
        if driver_restarted:
            # A killed driver loses its buffer and whatever its writer had queued. Tune
            # registers a checkpoint only after on_checkpoint waited for the writer, so
            # the checkpoint restored from is always stored; lost writes after it are
            # re-run. Letting the queue drain is the case that could store a
            # generation twice.
            logger.writer.flush()
            logger = pickle.loads(pickle.dumps(logger))
        else:
            logger.on_trial_recover(iteration=0, trials=[trial], trial=trial)
        logger.on_trial_start(iteration=0, trials=[trial], trial=trial)
        for part in chunks(records[restored_from:], checkpoint_every, chunk):
            logger.on_trial_result(iteration=0, trials=[trial], trial=trial,
                                   result=result(part, checkpoint_every))
        logger.on_trial_complete(iteration=0, trials=[trial], trial=trial)

    children = check_store(tracking_uri, sweep, parent_run_id)
    for run in children.values():
        assert sorted(f.path for f in client.list_artifacts(run.info.run_id, "grids")) == [
            grid_path(g) for g in range(1, GENERATIONS + 1)]
    if not driver_restarted:
        assert {run.data.tags["mad.failures"] for run in children.values()} == {"1"}
