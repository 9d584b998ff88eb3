"""Driver-side MLflow logging of trial results, each generation exactly once.

Only the driver writes to MLflow: one writer for a sqlite store, no MLflow set-up in
every trial process, and workers of a cluster need no access to the store.

Exactly once: Tune calls ``on_trial_result`` before it registers the checkpoint that
came with the result, so every generation at or below a trial's latest registered
checkpoint has been logged; a trial restored from a checkpoint therefore re-reports only
generations whose records may already be stored. Each child run's highest stored
generation is read back from MLflow when its trial (re)starts and kept up to date here;
a record at or below it is skipped (records are deterministic, so the stored one equals
it bar the timing key ``seconds``). A generation's metrics go in one batch with
``n_train`` last (see ``mlflow_runs.MARKER_KEY``), so "stored" means "stored whole".
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities import Param, Run
from ray import tune

from mad_core.spec import resolve_spec
from sweeps.mlflow_runs import (RUN_NAME_LENGTH, child_runs, last_logged_generation,
                                record_metrics, spec_params)


def checkpoint_uri(checkpoint: tune.Checkpoint) -> str:
    """A local path, or scheme://path on remote storage (what tune.Checkpoint(uri) reads)."""
    scheme = checkpoint.filesystem.type_name
    return checkpoint.path if scheme == "local" else f"{scheme}://{checkpoint.path}"

logger = logging.getLogger(__name__)


@dataclass
class ChildRun:
    run_id: str
    last_logged: int  # highest generation stored whole
    cuda_visible_devices: str | None = None
    failures: int = 0  # failed attempts Tune retried from a checkpoint (this driver)


class MlflowTrialLogger(tune.Callback):
    """Opens (or reopens) a trial's child run when it starts and logs its records.

    Args:
        tracking_uri: the store (absolute sqlite path or server URL).
        experiment_id, parent_run_id: where the child runs go.
        run_tags: tags every child run gets (mad.sweep, mad.version, mad.commit, ...).
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 run_tags: dict[str, str]):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.run_tags = run_tags
        self._reset()

    def _reset(self) -> None:
        self._client: MlflowClient | None = None
        self._existing: dict[int, Run] | None = None  # child runs found at first use
        self._children: dict[int, ChildRun] = {}

    def __getstate__(self) -> dict:
        # Tune pickles the callback with the experiment; a restored one reads MLflow afresh.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _open(self, trial) -> ChildRun:
        """Create the trial's child run, or reopen the one an earlier attempt made."""
        config = trial.config["trial"]
        index = config["index"]
        if self._existing is None:
            self._existing = child_runs(self.client, self.experiment_id, self.parent_run_id)
        spec = resolve_spec(config["spec"])
        existing = self._existing.get(index)
        if existing is None:
            label = " ".join(f"{k}={v}" for k, v in config["coordinates"].items())
            tags = {**self.run_tags, "mlflow.parentRunId": self.parent_run_id,
                    "mad.role": "trial", "mad.model": spec.model, "mad.loop": spec.loop,
                    "mad.spec_hash": spec.spec_hash(), "mad.trial_index": str(index),
                    "mad.coordinates": json.dumps(config["coordinates"]),
                    "mad.trial_id": trial.trial_id}
            run = self.client.create_run(self.experiment_id, tags=tags,
                                         run_name=f"t{index:04d} {label}"[:RUN_NAME_LENGTH])
            child = ChildRun(run.info.run_id, last_logged=0)
        else:
            child = ChildRun(existing.info.run_id,
                             last_logged_generation(self.client, existing.info.run_id),
                             failures=int(existing.data.tags.get("mad.failures", 0)))
            self.client.set_tag(child.run_id, "mad.trial_id", trial.trial_id)
            self.client.update_run(child.run_id, status="RUNNING")
        # Idempotent (same values), so a run created by a driver that died right after
        # create_run still gets its params.
        self.client.log_batch(child.run_id, params=[Param(k, v) for k, v in
                                                    spec_params(spec).items()])
        self._children[index] = child
        return child

    def _child(self, trial) -> ChildRun:
        """The trial's child run; opened on the trial's first start under this driver
        (a retry after a failure keeps it, with its count of stored generations)."""
        return self._children.get(trial.config["trial"]["index"]) or self._open(trial)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._child(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        record = result.get("record")
        if record is None:
            return
        child = self._child(trial)
        devices = result.get("cuda_visible_devices")
        if devices is not None and devices != child.cuda_visible_devices:
            self.client.set_tag(child.run_id, "mad.cuda_visible_devices", devices)
            child.cuda_visible_devices = devices
        generation = record["generation"]
        if generation <= child.last_logged:
            return  # re-run after a restore from an earlier checkpoint: already stored
        if generation != child.last_logged + 1:
            logger.warning("trial %s: generation %d follows %d in MLflow; the history has a gap",
                           trial.trial_id, generation, child.last_logged)
        self.client.log_batch(child.run_id, metrics=record_metrics(
            record, step=generation, timestamp_ms=int(time.time() * 1000)))
        child.last_logged = generation

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        # Called before Tune registers the checkpoint (and deletes older ones beyond
        # num_to_keep), so the tag always names a checkpoint that exists.
        self.client.set_tag(self._child(trial).run_id, "mad.checkpoint", checkpoint_uri(checkpoint))

    def on_trial_recover(self, iteration, trials, trial, **info):
        child = self._child(trial)
        child.failures += 1
        self.client.set_tag(child.run_id, "mad.failures", str(child.failures))

    def _close(self, trial, status: str) -> None:
        self.client.set_terminated(self._child(trial).run_id, status=status)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._close(trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._close(trial, "FAILED")
