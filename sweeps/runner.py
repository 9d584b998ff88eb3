"""Running a validated sweep: Ray Tune trials, tracked in MLflow, resumable.

Order of work, so that bad input and unusable infrastructure fail before anything is
recorded: tracking store reachable -> Ray connected -> trial resources fit a node ->
experiment and parent run -> Tune.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import ray
from mlflow import MlflowClient
from ray import tune

from sweeps.mlflow_callback import MlflowTrialLogger
from sweeps.mlflow_runs import (child_runs, latest_parent_run, open_experiment, provenance_tags,
                                start_parent_run)
from sweeps.progress import progress_reporter
from sweeps.ray_cluster import TrialResources, connect, plan_resources
from sweeps.sweep_file import Sweep
from sweeps.tracking_store import check_tracking_store, resolve_tracking_uri
from sweeps.trial import run_trial, trial_config

DEFAULT_STORAGE = Path("mad_output") / "sweeps"
CHECKPOINTS_KEPT = 2  # the newest is the restore point; one more in case it is incomplete


class ResumeError(RuntimeError):
    """There is no earlier invocation to resume, or it ran a different grid."""


@dataclass(frozen=True)
class SweepOutcome:
    """How an invocation ended. trials = grid size; finished and failed count trials
    that ended in this or an earlier invocation of the same parent run."""

    experiment_id: str
    parent_run_id: str
    tune_path: str
    trials: int
    finished: int
    failed: int

    @property
    def interrupted(self) -> bool:
        return self.finished + self.failed < self.trials

    @property
    def status(self) -> str:
        """The parent run's MLflow status."""
        return "KILLED" if self.interrupted else "FAILED" if self.failed else "FINISHED"


@dataclass(frozen=True)
class _Invocation:
    experiment_id: str
    parent_run_id: str
    tune_path: str


def trial_name(trial) -> str:
    """Tune's name and folder for a trial: t0003 for grid point 3 (also the progress row)."""
    return f"t{trial.config['trial']['index']:04d}"


def _resumable(client: MlflowClient, sweep: Sweep) -> _Invocation:
    parent = latest_parent_run(client, sweep.name)
    if parent is None:
        raise ResumeError(f"sweep {sweep.name!r} has no earlier invocation in this tracking "
                          f"store to resume; run it without --resume")
    tags = parent.data.tags
    if tags.get("mad.grid_hash") != sweep.grid_hash:
        raise ResumeError(
            f"the sweep file resolves to a different grid ({sweep.grid_hash}, "
            f"{len(sweep.trials)} trials) than the invocation to resume (run "
            f"{parent.info.run_id}: {tags.get('mad.grid_hash')}, {tags.get('mad.trials')} "
            f"trials); restore the file, or run it without --resume as a new invocation")
    return _Invocation(parent.info.experiment_id, parent.info.run_id, tags["mad.tune_path"])


def _tuner(sweep: Sweep, invocation: _Invocation, resources: TrialResources,
           tracking_uri: str, max_concurrent: int | None, resume: bool) -> tune.Tuner:
    trainable = tune.with_resources(run_trial, resources.as_tune())
    if resume and tune.Tuner.can_restore(invocation.tune_path):
        # Finished trials stay finished; unfinished and errored ones continue from their
        # last checkpoint. The run and tune configs (callbacks included) come from the
        # saved experiment.
        return tune.Tuner.restore(invocation.tune_path, trainable=trainable,
                                  resume_unfinished=True, resume_errored=True)
    run_tags = {"mad.sweep": sweep.name, **provenance_tags(),
                "mad.resources": f'{{"cpu": {resources.cpu:g}, "gpu": {resources.gpu:g}}}'}
    logger = MlflowTrialLogger(tracking_uri, invocation.experiment_id,
                               invocation.parent_run_id, run_tags)
    tune_path = invocation.tune_path.rstrip("/")
    storage, name = tune_path.rsplit("/", 1)
    return tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(
            [trial_config(point, sweep.checkpoint_every) for point in sweep.trials])},
        # Reusing a trial's actor for the next trial saves a worker process start (seconds).
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True,
                                    trial_name_creator=trial_name,
                                    trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=1, callbacks=[logger],
            progress_reporter=progress_reporter(sweep),
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT)),
    )


def run_sweep(sweep: Sweep, *, address: str | None = None, tracking_uri: str | None = None,
              resume: bool = False, max_concurrent: int | None = None,
              storage: str | None = None, say: Callable[[str], None] = print) -> SweepOutcome:
    """Run (or with resume=True continue) a sweep and wait for it.

    Args:
        address: a Ray cluster address; None starts a local Ray (or uses the Ray this
            process has joined).
        tracking_uri: overrides the sweep file's tracking_uri (docs/tracking.md).
        storage: folder or URI for Tune's experiment state and checkpoints (default
            mad_output/sweeps); on a multi-node cluster, storage every node reaches.
        say: where progress lines go.
    Raises:
        TrackingStoreError, ResumeError, ClusterResourceError: before any trial starts.
    """
    uri = resolve_tracking_uri(tracking_uri, sweep.tracking_uri)
    check_tracking_store(uri)
    client = MlflowClient(uri)
    invocation = _resumable(client, sweep) if resume else None
    if invocation is not None and client.get_run(invocation.parent_run_id).info.status == "FINISHED":
        say(f"nothing to resume: every trial of run {invocation.parent_run_id} finished")
        return _outcome(client, sweep, invocation)

    started_ray = connect(address)
    try:
        resources = plan_resources(sweep.resources)
        if resources.note:
            say(resources.note)
        if invocation is None:
            root = storage or str(DEFAULT_STORAGE.absolute())
            tune_path = f"{root.rstrip('/')}/{sweep.name}/{time.strftime('%Y%m%d-%H%M%S')}"
            experiment_id = open_experiment(client, sweep)
            invocation = _Invocation(experiment_id, start_parent_run(client, experiment_id,
                                                                      sweep, tune_path),
                                     tune_path)
        else:
            client.update_run(invocation.parent_run_id, status="RUNNING")
        say(f"sweep {sweep.name}: {len(sweep.trials)} trials, {resources.cpu:g} CPU + "
            f"{resources.gpu:g} GPU each; MLflow {uri} run {invocation.parent_run_id}; "
            f"Tune state {invocation.tune_path}")
        tuner = _tuner(sweep, invocation, resources, uri, max_concurrent, resume)
        try:
            tuner.fit()
        except KeyboardInterrupt:
            client.set_terminated(invocation.parent_run_id, status="KILLED")
            raise
        outcome = _outcome(client, sweep, invocation)
        client.set_terminated(invocation.parent_run_id, status=outcome.status)
        return outcome
    finally:
        if started_ray:
            ray.shutdown()


def _outcome(client: MlflowClient, sweep: Sweep, invocation: _Invocation) -> SweepOutcome:
    """Counts from the child runs' statuses (they cover earlier invocations too)."""
    statuses = [run.info.status for run in child_runs(client, invocation.experiment_id,
                                                      invocation.parent_run_id).values()]
    return SweepOutcome(invocation.experiment_id, invocation.parent_run_id,
                        invocation.tune_path, len(sweep.trials),
                        finished=statuses.count("FINISHED"), failed=statuses.count("FAILED"))
