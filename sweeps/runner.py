"""Running a validated sweep: Ray Tune trials, tracked in MLflow, resumable.

Order of work, so that bad input and unusable infrastructure fail before anything is
recorded: tracking store reachable -> Ray connected -> trial resources fit a node ->
experiment and parent run -> Tune.

Resuming reads MLflow, not Tune's saved experiment state: a child run marked FINISHED
is done; every other trial of the grid runs again from the checkpoint its child run's
``mad.checkpoint`` tag names (from scratch if none), in a new Tune experiment under the
same parent run. Tune's own snapshot can lag behind a killed driver (it then re-runs
trials that had finished and looks for checkpoints it had already deleted); the MLflow
tags are written before Tune acts on a result or a checkpoint, so they never lag.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import ray
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from ray import tune

from sweeps.driver_lock import DRIVER_TAG, check_not_driven, driver_tag
from sweeps.environment import apply_tune_settings
from sweeps.grid import GridPoint
from sweeps.mlflow_callback import MlflowTrialLogger
from sweeps.mlflow_runs import (child_runs, latest_parent_run, open_experiment, provenance_tags,
                                start_parent_run)
from sweeps.progress import SweepProgress, quiet_tune_logging
from sweeps.ray_cluster import (TrialResources, alive_nodes, connect, plan_resources,
                                session_folder)
from sweeps.sweep_file import Sweep
from sweeps.tracking_store import check_tracking_store, resolve_tracking_uri
from sweeps.trial import run_trial, trial_config
from sweeps.ui_view import refresh_sweep_view

logger = logging.getLogger(__name__)

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
class PendingTrial:
    """A grid point to run, and the checkpoint an earlier invocation left it (if any)."""

    point: GridPoint
    resume_from: str | None = None


def trial_name(trial) -> str:
    """Tune's name and folder for a trial: t0003 for grid point 3 (also the progress row)."""
    return f"t{trial.config['trial']['index']:04d}"


def new_tune_path(root: str, sweep: Sweep) -> str:
    """<root>/<sweep name>/<time stamp>-<random>: one Tune experiment per invocation."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{root.rstrip('/')}/{sweep.name}/{stamp}-{uuid.uuid4().hex[:6]}"


def _previous_invocation(client: MlflowClient, sweep: Sweep) -> Run:
    """The latest parent run of this sweep, checked to be of the same grid."""
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
    check_not_driven(parent)
    return parent


def _unfinished(client: MlflowClient, sweep: Sweep, parent: Run) -> list[PendingTrial]:
    children = child_runs(client, parent.info.experiment_id, parent.info.run_id)
    pending = []
    for point in sweep.trials:
        child = children.get(point.index)
        if child is None:
            pending.append(PendingTrial(point))
        elif child.info.status != "FINISHED":
            pending.append(PendingTrial(point, child.data.tags.get("mad.checkpoint")))
    return pending


def _open_invocation(client: MlflowClient, sweep: Sweep, parent: Run | None,
                     storage: str | None, provenance: dict[str, str]) -> tuple[str, str, str]:
    """(experiment id, parent run id, Tune path): a new parent run, or the resumed one
    pointed at a new Tune experiment (by default next to its previous one)."""
    if storage is not None and "://" not in storage:
        storage = str(Path(storage).absolute())  # pyarrow, under Tune, rejects relative ones
    if parent is None:
        tune_path = new_tune_path(storage or str(DEFAULT_STORAGE.absolute()), sweep)
        experiment_id = open_experiment(client, sweep)
        return (experiment_id,
                start_parent_run(client, experiment_id, sweep, tune_path, provenance),
                tune_path)
    previous_root = parent.data.tags["mad.tune_path"].rsplit("/", 2)[0]
    tune_path = new_tune_path(storage or previous_root, sweep)
    client.set_tag(parent.info.run_id, DRIVER_TAG, driver_tag())
    client.set_tag(parent.info.run_id, "mad.tune_path", tune_path)
    client.update_run(parent.info.run_id, status="RUNNING")
    return parent.info.experiment_id, parent.info.run_id, tune_path


def _tuner(sweep: Sweep, pending: list[PendingTrial], callbacks: list[tune.Callback],
           resources: TrialResources, tune_path: str, max_concurrent: int | None) -> tune.Tuner:
    storage, name = tune_path.rsplit("/", 1)
    configs = [trial_config(p.point, sweep.checkpoint_every, p.resume_from) for p in pending]
    return tune.Tuner(
        tune.with_resources(run_trial, resources.as_tune()),
        param_space={"trial": tune.grid_search(configs)},
        # Reusing a trial's actor for the next trial saves a worker process start (seconds).
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True,
                                    trial_name_creator=trial_name,
                                    trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0, callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT)),
    )


def run_sweep(sweep: Sweep, *, address: str | None = None, tracking_uri: str | None = None,
              resume: bool = False, max_concurrent: int | None = None,
              storage: str | None = None, say: Callable[[str], None] = print,
              progress: bool = True) -> SweepOutcome:
    """Run a sweep (or, with resume=True, its latest invocation's unfinished trials) and
    wait for it.

    Args:
        address: a Ray cluster address; None starts a local Ray (or uses the Ray this
            process has joined).
        tracking_uri: overrides the sweep file's tracking_uri (docs/tracking.md).
        storage: folder or URI for Tune's experiment state and checkpoints (default
            mad_output/sweeps, or where the resumed invocation kept them); on a multi-node
            cluster, storage every node reaches.
        say: where the start line, notes and the final table of trials go.
        progress: False leaves out the start line, the status line (stderr) and the
            final table; failed trials are still reported on stderr.
    Raises:
        TrackingStoreError, ResumeError, DriverLockError (another driver runs the
        invocation to resume), ClusterResourceError: before any trial starts.
    """
    uri = resolve_tracking_uri(tracking_uri, sweep.tracking_uri)
    check_tracking_store(uri)
    client = MlflowClient(uri)
    parent = _previous_invocation(client, sweep) if resume else None
    pending = ([PendingTrial(point) for point in sweep.trials] if parent is None
               else _unfinished(client, sweep, parent))
    if not pending:
        say(f"nothing to resume: every trial of run {parent.info.run_id} finished")
        client.set_terminated(parent.info.run_id, status="FINISHED")
        return _outcome(client, sweep, parent.info.experiment_id, parent.info.run_id,
                        parent.data.tags["mad.tune_path"])

    started_ray = connect(address)
    # A local Ray this call starts leaves its session folder (logs, sockets) behind;
    # removed below when every trial finished, kept for its logs otherwise.
    local_session = session_folder() if started_ray and address is None else None
    outcome = None
    try:
        resources = plan_resources(sweep.resources, [p.point for p in pending])
        if resources.note:
            say(resources.note)
        provenance = provenance_tags()
        experiment_id, parent_run_id, tune_path = _open_invocation(client, sweep, parent,
                                                                   storage, provenance)
        nodes = alive_nodes()
        if nodes > 1 and "://" not in tune_path:
            say(f"note: {nodes} nodes and a local --storage: a trial retried on "
                f"another node finds its checkpoints only if {tune_path} is on a shared "
                f"filesystem; otherwise pass --storage s3://BUCKET/PREFIX")
        if progress:
            say(f"sweep {sweep.name}: {len(pending)} of {len(sweep.trials)} trials to run, "
                f"{resources.cpu:g} CPU + {resources.gpu:g} GPU each\n  MLflow {uri}, run "
                f"{parent_run_id}\n  Tune state and checkpoints {tune_path}")
        run_tags = {"mad.sweep": sweep.name, **provenance,
                    "mad.resources": json.dumps(resources.as_tune())}
        logger = MlflowTrialLogger(uri, experiment_id, parent_run_id, run_tags,
                                   sweep.tracked_metrics,
                                   specs={point.index: point.spec for point in sweep.trials})
        display = SweepProgress(sweep.name, [p.point for p in pending], len(sweep.trials),
                                status_line=progress)
        quiet_tune_logging()
        apply_tune_settings()
        try:
            _tuner(sweep, pending, [logger, display], resources, tune_path,
                   max_concurrent).fit()
        finally:  # also on a second Ctrl-C, which Tune lets through as KeyboardInterrupt
            display.close()
            logger.flush_all()
            outcome = _close_invocation(client, sweep, experiment_id, parent_run_id, tune_path)
            if progress:
                say(display.table())
        return outcome
    finally:
        if started_ray:
            ray.shutdown()
        if local_session is not None:
            if outcome is not None and outcome.finished == outcome.trials:
                _remove_session(local_session)
            else:
                say(f"Ray's logs of this sweep: {local_session / 'logs'}")


def _remove_session(folder: Path) -> None:
    """Delete a Ray session folder, and Ray's session_latest link if it points there."""
    shutil.rmtree(folder, ignore_errors=True)
    latest = folder.parent / "session_latest"
    if latest.is_symlink() and Path(os.readlink(latest)).name == folder.name:
        latest.unlink()


def _outcome(client: MlflowClient, sweep: Sweep, experiment_id: str, parent_run_id: str,
             tune_path: str) -> SweepOutcome:
    """Counts from the child runs' statuses (they cover earlier invocations too)."""
    statuses = [run.info.status for run in child_runs(client, experiment_id,
                                                      parent_run_id).values()]
    return SweepOutcome(experiment_id, parent_run_id, tune_path, len(sweep.trials),
                        finished=statuses.count("FINISHED"), failed=statuses.count("FAILED"))


def _close_invocation(client: MlflowClient, sweep: Sweep, experiment_id: str,
                      parent_run_id: str, tune_path: str) -> SweepOutcome:
    """After Tune returned (or was interrupted): trials still RUNNING were stopped, so
    their child runs and the parent get their final MLflow status; the experiment's
    saved view in the UI is brought up to date (sweeps.ui_view)."""
    for run in child_runs(client, experiment_id, parent_run_id).values():
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status="KILLED")
    outcome = _outcome(client, sweep, experiment_id, parent_run_id, tune_path)
    try:
        refresh_sweep_view(client, experiment_id)
    except MlflowException as error:  # a convenience: the sweep's results are stored
        logger.warning("the sweep's view in the MLflow UI was not written: %s", error)
    client.delete_tag(parent_run_id, DRIVER_TAG)
    client.set_terminated(parent_run_id, status=outcome.status)
    return outcome
