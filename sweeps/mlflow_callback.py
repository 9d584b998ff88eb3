"""Driver-side MLflow logging of trial results: every generation exactly once.

Only the driver writes to MLflow: one writer for a sqlite store, no MLflow set-up in
every trial process, and workers of a cluster need no access to the store. The writes
themselves run on a background thread (``mlflow_writer``), off Tune's event loop.

What is written for a trial (docs/tracking.md):
- its complete records, as Parquet parts under ``records/`` (``mad_core.record_table``),
  one part per stretch between checkpoints: written when a result carries a checkpoint
  (``run_trial`` marks it), and when the trial stops or the sweep ends;
- its tracked metrics (a few per generation, for the UI) and its files, in batches when
  the oldest buffered generation is FLUSH_S old, at checkpoints and at the end.

Exactly once. Tune calls ``on_trial_result`` before it registers the checkpoint that
came with the result, and ``on_checkpoint`` (which waits for every queued write, then
tags the child run with ``mad.checkpoint``, the resume point of ``mad sweep --resume``)
before that too; so every generation up to any checkpoint a trial can be restored from
is stored. A restored trial re-reports generations after its checkpoint, some of which
may be stored or buffered already: a record at or below the highest generation seen for
the trial is dropped (records are deterministic; only ``seconds`` would differ). Parts
and tracked metrics keep one such mark each, read back from MLflow (part names, the
last tracked key's history) when a driver first opens a trial's child run, so they
survive the driver. A generation's files are logged before its tracked metrics, and
its metrics sit in one batch with the last tracked key last: "logged" means "logged
whole", files included.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Mapping

from mlflow import MlflowClient
from mlflow.entities import Param, Run
from ray import tune

from mad_core.record_table import PARTS_FOLDER, encode_part, part_name
from mad_core.spec import TrialSpec, resolve_spec
from sweeps.grid import coordinates_label
from sweeps.mlflow_runs import (RUN_NAME_LENGTH, TRACKED_TAG, child_runs,
                                last_logged_generation, last_stored_record, spec_params,
                                tracked_keys, tracked_values)
from sweeps.driver_lock import DRIVER_TAG, HEARTBEAT_S, driver_tag
from sweeps.mlflow_writer import BackgroundWriter
from sweeps.trial import ARTIFACTS_KEY, CHECKPOINT_FLAG, RECORDS_KEY, STOP_KEY

logger = logging.getLogger(__name__)

# Longest a generation's tracked metrics wait in the buffer (seconds): how far the MLflow
# UI lags a trial when the store keeps up.
FLUSH_S = 2.0

def checkpoint_uri(checkpoint: tune.Checkpoint) -> str:
    """A local path, or scheme://path on remote storage (what tune.Checkpoint(uri) reads)."""
    scheme = checkpoint.filesystem.type_name
    return checkpoint.path if scheme == "local" else f"{scheme}://{checkpoint.path}"


@dataclass
class ChildRun:
    """A trial's child run as this driver knows it."""

    run_id: str
    stored: int  # highest generation in the record parts, written or queued
    logged: int  # highest generation whose tracked metrics are written or queued
    tracked: tuple[str, ...] | None  # keys logged per generation; None before a record
    records: list[dict] = field(default_factory=list)  # after `stored`, for the next part
    metrics: list = field(default_factory=list)  # tracked values after `logged`, buffered
    files: dict[str, bytes] = field(default_factory=dict)  # buffered with the metrics
    pending_since: float = 0.0  # time.monotonic() of the oldest buffered metrics
    device: str | None = None
    cuda_visible_devices: str | None = None
    failures: int = 0  # failed attempts Tune retried from a checkpoint


class MlflowTrialLogger(tune.Callback):
    """Opens (or reopens) a trial's child run when it starts and logs its records.

    Args:
        tracking_uri: the store (absolute sqlite path or server URL).
        experiment_id, parent_run_id: where the child runs go.
        run_tags: tags every child run gets (mad.sweep, mad.version, mad.commit, ...).
        tracked_metrics: the sweep file's ``tracked_metrics`` (see
            ``mlflow_runs.tracked_keys``).
        specs: the grid's resolved specs by trial index, as validated before the sweep;
            without them a trial's spec is resolved again when its run opens, which
            raises in the driver (ending the sweep) if its data went away meanwhile.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 run_tags: dict[str, str], tracked_metrics: tuple[str, ...] | str | None = None,
                 specs: Mapping[int, TrialSpec] | None = None):
        self.tracking_uri = tracking_uri
        self.specs = specs
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.run_tags = run_tags
        self.tracked_metrics = tracked_metrics
        self._reset()

    def _reset(self) -> None:
        self._client: MlflowClient | None = None
        self._writer: BackgroundWriter | None = None
        self._existing: dict[int, Run] | None = None  # child runs found at first use
        self._children: dict[int, ChildRun] = {}
        self._last_beat = time.monotonic()  # the driver lock's renewal (driver_lock)

    @property
    def writer(self) -> BackgroundWriter:
        if self._writer is None:
            self._writer = BackgroundWriter()
        return self._writer

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
        """Create the trial's child run, or reopen the one an earlier invocation made.

        Writes here run on this thread, after the writer is idle (only this thread
        gives it work), so the two never write at once."""
        self.writer.flush()
        config = trial.config["trial"]
        index = config["index"]
        if self._existing is None:
            self._existing = child_runs(self.client, self.experiment_id, self.parent_run_id)
        spec = self.specs[index] if self.specs else resolve_spec(config["spec"])
        existing = self._existing.get(index)
        if existing is None:
            label = coordinates_label(config["coordinates"])
            tags = {**self.run_tags, "mlflow.parentRunId": self.parent_run_id,
                    "mad.role": "trial", "mad.model": spec.model, "mad.loop": spec.loop,
                    "mad.spec_hash": spec.spec_hash(), "mad.trial_index": str(index),
                    "mad.coordinates": json.dumps(config["coordinates"]),
                    "mad.trial_id": trial.trial_id}
            run = self.client.create_run(self.experiment_id, tags=tags,
                                         run_name=f"{label} (t{index:04d})"[:RUN_NAME_LENGTH])
            child = ChildRun(run.info.run_id, stored=0, logged=0, tracked=None)
        else:
            run_id, tags = existing.info.run_id, existing.data.tags
            tracked = tuple(json.loads(tags[TRACKED_TAG])) if TRACKED_TAG in tags else None
            child = ChildRun(run_id, stored=last_stored_record(self.client, run_id),
                             logged=(last_logged_generation(self.client, run_id, tracked[-1])
                                     if tracked else 0),
                             tracked=tracked, failures=int(tags.get("mad.failures", 0)))
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

    def _log_metrics(self, child: ChildRun) -> None:
        """Queue the buffered files, then the buffered tracked metrics."""
        if child.files:
            files, child.files = child.files, {}
            self.writer.submit(lambda: self._log_files(child.run_id, files))
        if child.metrics:  # (never without tracked keys: tracked_values gives none)
            metrics, child.metrics = child.metrics, []
            # log_batch takes at most 1,000 metrics; each batch holds whole generations.
            per_batch = 1000 // len(child.tracked) * len(child.tracked)
            for start in range(0, len(metrics), per_batch):
                batch = metrics[start:start + per_batch]
                self.writer.submit(lambda batch=batch: self.client.log_batch(child.run_id,
                                                                             metrics=batch))

    def _write_part(self, child: ChildRun) -> None:
        """Queue the buffered records as one Parquet part."""
        if child.records:
            records, child.records = child.records, []
            name = f"{PARTS_FOLDER}/{part_name(records[0]['generation'], child.stored)}"
            self.writer.submit(lambda: self._log_files(child.run_id,
                                                       {name: encode_part(records)}))

    def _flush(self, child: ChildRun) -> None:
        """Queue everything buffered for the trial (no waiting)."""
        self._write_part(child)
        self._log_metrics(child)

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
        """Write everything buffered and wait for it (the sweep is ending or was
        interrupted)."""
        for child in self._children.values():
            self._flush(child)
        if self._writer is not None:
            self._writer.flush()

    def _take(self, child: ChildRun, record: dict, trial_id: str) -> None:
        """Buffer one reported record where it is not stored or buffered yet."""
        generation = record["generation"]
        if child.tracked is None:
            child.tracked = tracked_keys(record, self.tracked_metrics)
            self.writer.submit(lambda tags=json.dumps(child.tracked): self.client.set_tag(
                child.run_id, TRACKED_TAG, tags))
        if generation > child.stored:
            if generation != child.stored + 1:
                logger.warning("trial %s: generation %d follows %d; the records have a gap",
                               trial_id, generation, child.stored)
            child.records.append(record)
            child.stored = generation
        if generation > child.logged:
            if not child.metrics:
                child.pending_since = time.monotonic()
            child.metrics += tracked_values(record, child.tracked, int(time.time() * 1000))
            child.logged = generation

    def on_step_begin(self, iteration, trials, **info):
        # Tune calls this every turn of its event loop: renew the driver lock.
        if time.monotonic() - self._last_beat >= HEARTBEAT_S:
            self._last_beat = time.monotonic()
            self.writer.submit(lambda tag=driver_tag(): self.client.set_tag(
                self.parent_run_id, DRIVER_TAG, tag))

    def on_trial_start(self, iteration, trials, trial, **info):
        self._child(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        records = result.pop(RECORDS_KEY, None)
        if not records:
            return
        # Tune lets callbacks change a result in place: taken out, the records and files
        # do not stay in the trial's last result, which Tune keeps in memory and in its
        # snapshots.
        artifacts = result.pop(ARTIFACTS_KEY, {})
        child = self._child(trial)
        device = result.get("device")
        if device is not None and device != child.device:
            self.writer.submit(lambda: self.client.set_tag(child.run_id, "mad.device", device))
            child.device = device
        devices = result.get("cuda_visible_devices")
        if devices is not None and devices != child.cuda_visible_devices:
            self.writer.submit(lambda: self.client.set_tag(
                child.run_id, "mad.cuda_visible_devices", devices))
            child.cuda_visible_devices = devices
        if STOP_KEY in result:
            self.writer.submit(lambda status=result[STOP_KEY]: self.client.set_tag(
                child.run_id, "mad.stop_status", status))
        newest_logged = child.logged
        for record in records:
            self._take(child, record, trial.trial_id)
        if child.logged > newest_logged:  # else: re-run after a restore, files logged
            child.files.update(artifacts)
        if result.get(CHECKPOINT_FLAG):
            self._flush(child)
        elif child.metrics and time.monotonic() - child.pending_since >= FLUSH_S:
            self._log_metrics(child)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        # Before Tune registers the checkpoint (and deletes older ones beyond
        # num_to_keep): the tag always names a checkpoint that exists, and every
        # generation up to it is stored (queued by on_trial_result, waited for here).
        child = self._child(trial)
        self._flush(child)
        self.writer.flush()
        self.client.set_tag(child.run_id, "mad.checkpoint", checkpoint_uri(checkpoint))

    def on_trial_recover(self, iteration, trials, trial, **info):
        child = self._child(trial)
        self._flush(child)
        child.failures += 1
        self.writer.submit(lambda failures=str(child.failures): self.client.set_tag(
            child.run_id, "mad.failures", failures))

    def _close(self, trial, status: str) -> None:
        child = self._child(trial)
        self._flush(child)
        self.writer.flush()
        self.client.set_terminated(child.run_id, status=status)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._close(trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._close(trial, "FAILED")

    def on_experiment_end(self, trials, **info):
        self.flush_all()
