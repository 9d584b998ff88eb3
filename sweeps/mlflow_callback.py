"""Driver-side MLflow logging of trial results: every generation exactly once, in batches.

Only the driver writes to MLflow: one writer for a sqlite store, no MLflow set-up in
every trial process, and workers of a cluster need no access to the store.

Exactly once. Records are buffered per trial and written in one batch when a result
carries a checkpoint (``run_trial`` marks it), when the oldest buffered record is
FLUSH_S old, and when the trial stops. Tune calls ``on_trial_result`` before it
registers the checkpoint that came with the result, and ``on_checkpoint`` (which tags
the child run with ``mad.checkpoint``, the resume point of ``mad sweep --resume``)
before that too; so every generation up to any checkpoint a trial can be restored from
is stored. A restored trial re-reports generations after its checkpoint, some of which
may be stored or buffered already: a record at or below the highest generation seen for
the trial is dropped (records are deterministic; only ``seconds`` would differ). That
highest generation is read back from MLflow when a driver first opens a trial's child
run, so it survives the driver. A generation's files (``run_trial``'s artifacts) are
logged before its metrics, and its metrics sit in one batch with ``n_train`` last (see
``mlflow_runs.MARKER_KEY``): "stored" means "stored whole", files included.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mlflow import MlflowClient
from mlflow.entities import Param, Run
from ray import tune

from mad_core.spec import resolve_spec
from sweeps.grid import coordinates_label
from sweeps.mlflow_runs import (RUN_NAME_LENGTH, child_runs, last_logged_generation,
                                record_metrics, spec_params)
from sweeps.trial import ARTIFACTS_KEY, CHECKPOINT_FLAG

logger = logging.getLogger(__name__)

# Longest a record waits in the buffer (seconds): how far the MLflow UI may lag a trial.
FLUSH_S = 2.0

def checkpoint_uri(checkpoint: tune.Checkpoint) -> str:
    """A local path, or scheme://path on remote storage (what tune.Checkpoint(uri) reads)."""
    scheme = checkpoint.filesystem.type_name
    return checkpoint.path if scheme == "local" else f"{scheme}://{checkpoint.path}"


@dataclass
class Pending:
    """A generation waiting to be written: its record and its files."""

    record: dict
    artifacts: dict[str, bytes]  # {relative path: content}


@dataclass
class ChildRun:
    """A trial's child run as this driver knows it."""

    run_id: str
    last_seen: int  # highest generation stored or buffered
    pending: list[Pending] = field(default_factory=list)  # buffered, in generation order
    pending_since: float = 0.0  # time.monotonic() of the oldest buffered record
    device: str | None = None
    cuda_visible_devices: str | None = None
    failures: int = 0  # failed attempts Tune retried from a checkpoint


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
        # Tune pickles its callbacks with the experiment; only the settings travel.
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
        """Create the trial's child run, or reopen the one an earlier invocation made."""
        config = trial.config["trial"]
        index = config["index"]
        if self._existing is None:
            self._existing = child_runs(self.client, self.experiment_id, self.parent_run_id)
        spec = resolve_spec(config["spec"])
        existing = self._existing.get(index)
        if existing is None:
            label = coordinates_label(config["coordinates"])
            tags = {**self.run_tags, "mlflow.parentRunId": self.parent_run_id,
                    "mad.role": "trial", "mad.model": spec.model, "mad.loop": spec.loop,
                    "mad.spec_hash": spec.spec_hash(), "mad.trial_index": str(index),
                    "mad.coordinates": json.dumps(config["coordinates"]),
                    "mad.trial_id": trial.trial_id}
            run = self.client.create_run(self.experiment_id, tags=tags,
                                         run_name=f"t{index:04d} {label}"[:RUN_NAME_LENGTH])
            child = ChildRun(run.info.run_id, last_seen=0)
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
        (a retry after a failure keeps it, with its buffer and highest generation)."""
        return self._children.get(trial.config["trial"]["index"]) or self._open(trial)

    def _flush(self, child: ChildRun) -> None:
        if not child.pending:
            return
        # Files first: a generation whose n_train is stored has its files stored too.
        # Logging a file again overwrites it with the same content, so files of a
        # generation whose metrics never made it are simply logged again on its re-run.
        files = {path: content for item in child.pending
                 for path, content in item.artifacts.items()}
        if files:
            self._log_files(child.run_id, files)
        timestamp_ms = int(time.time() * 1000)
        metrics = [metric for item in child.pending for metric in
                   record_metrics(item.record, item.record["generation"], timestamp_ms)]
        self.client.log_batch(child.run_id, metrics=metrics)
        child.pending = []

    def _log_files(self, run_id: str, files: dict[str, bytes]) -> None:
        """Log each file under its relative path's folder, with its own name."""
        with tempfile.TemporaryDirectory() as folder:
            for path, content in files.items():
                relative = PurePosixPath(path)
                local = Path(folder, relative)
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(content)
                parent = str(relative.parent)
                self.client.log_artifact(run_id, str(local),
                                         artifact_path=None if parent == "." else parent)

    def flush_all(self) -> None:
        """Write every buffered record (the sweep is ending or was interrupted)."""
        for child in self._children.values():
            self._flush(child)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._child(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        record = result.get("record")
        if record is None:
            return
        # Tune lets callbacks change a result in place: taken out, the files do not stay
        # in the trial's last result, which Tune keeps in memory and in its snapshots.
        artifacts = result.pop(ARTIFACTS_KEY, {})
        child = self._child(trial)
        device = result.get("device")
        if device is not None and device != child.device:
            self.client.set_tag(child.run_id, "mad.device", device)
            child.device = device
        devices = result.get("cuda_visible_devices")
        if devices is not None and devices != child.cuda_visible_devices:
            self.client.set_tag(child.run_id, "mad.cuda_visible_devices", devices)
            child.cuda_visible_devices = devices
        generation = record["generation"]
        if generation > child.last_seen:  # else: re-run after a restore, already seen
            if generation != child.last_seen + 1:
                logger.warning("trial %s: generation %d follows %d; the MLflow history "
                               "has a gap", trial.trial_id, generation, child.last_seen)
            if not child.pending:
                child.pending_since = time.monotonic()
            child.pending.append(Pending(record, artifacts))
            child.last_seen = generation
        if result.get(CHECKPOINT_FLAG) or time.monotonic() - child.pending_since >= FLUSH_S:
            self._flush(child)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        # Before Tune registers the checkpoint (and deletes older ones beyond
        # num_to_keep): the tag always names a checkpoint that exists, and every
        # generation up to it is stored (flushed by on_trial_result).
        child = self._child(trial)
        self._flush(child)
        self.client.set_tag(child.run_id, "mad.checkpoint", checkpoint_uri(checkpoint))

    def on_trial_recover(self, iteration, trials, trial, **info):
        child = self._child(trial)
        self._flush(child)
        child.failures += 1
        self.client.set_tag(child.run_id, "mad.failures", str(child.failures))

    def _close(self, trial, status: str) -> None:
        child = self._child(trial)
        self._flush(child)
        self.client.set_terminated(child.run_id, status=status)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._close(trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._close(trial, "FAILED")

    def on_experiment_end(self, trials, **info):
        self.flush_all()
