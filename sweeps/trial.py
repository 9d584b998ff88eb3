"""The Ray Tune trainable: one grid point's whole self-consuming loop.

Records go to ``tune.report`` in chunks: one result per CHUNK_S of work or per
checkpoint, carrying the chunk's records and the files the loop produced for them
(sample grids, model snapshots). Every ``checkpoint_every`` generations (and after the
last) the result carries a checkpoint of the loop state and ends its chunk. A trial
continues from a checkpoint -- Tune's own after a lost worker, else the one
``mad sweep --resume`` names in ``resume_from`` -- and yields the records an
uninterrupted run would.

A checkpoint is one file, STATE_FILE, written by ``mad_core.checkpoint`` (tensors and
arrays) and read with ``torch.load(weights_only=True)``: a checkpoint folder on shared
storage cannot run code in the trial that restores from it.
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ray
from ray import tune

from mad_core.checkpoint import load_state, state_bytes
from mad_core.loop import SelfConsumingLoop
from mad_core.spec import resolve_spec

STATE_FILE = "loop_state.pt"
CHECKPOINT_FLAG = "checkpointed"  # set in a result that carries a checkpoint
ARTIFACTS_KEY = "artifacts"  # {relative path: bytes} in a result, when its generations have files
RECORDS_KEY = "records"  # the chunk's records, in generation order
STOP_KEY = "stop_status"  # in the last result of a trial with a stop rule: why it ended
# Longest stretch of work one result holds (seconds): fast generations reach the driver
# a few per second in all instead of one result each.
CHUNK_S = 1.0


class SpecDriftError(RuntimeError):
    """A worker resolves a trial spec differently from the driver (different versions)."""


def trial_config(point, checkpoint_every: int, resume_from: str | None = None) -> dict[str, Any]:
    """What Tune passes to ``run_trial`` for one GridPoint (plain, picklable values).

    resume_from: URI of a checkpoint an earlier invocation wrote for this trial.
    """
    return {"index": point.index, "coordinates": dict(point.coordinates),
            "spec": point.raw_spec, "spec_hash": point.spec.spec_hash(),
            "checkpoint_every": checkpoint_every, "resume_from": resume_from}


def restored_state(resume_from: str | None) -> dict | None:
    """The loop state to continue from: Tune's latest checkpoint of this invocation (a
    retry after a failure), else the earlier invocation's, else None (a fresh start)."""
    checkpoint = tune.get_checkpoint() or (resume_from and tune.Checkpoint(resume_from))
    if not checkpoint:
        return None
    with checkpoint.as_directory() as folder:
        return load_state(Path(folder, STATE_FILE))


def run_trial(config: dict[str, Any]) -> None:
    """Tune function trainable. config["trial"] is a ``trial_config`` dict.

    Reports, once per chunk: {RECORDS_KEY: [mad_core record, ...], "record": the
    chunk's last record (progress columns), ARTIFACTS_KEY: {relative path: bytes} (only
    when the chunk's generations have files),
    "device": where the models run (only in the first report of a run_trial call),
    "cuda_visible_devices": str (only with GPUs),
    CHECKPOINT_FLAG: True (only with a checkpoint),
    STOP_KEY: the loop's stop_status (only in the last result, with a stop rule)}.
    """
    trial = config["trial"]
    spec = resolve_spec(trial["spec"])
    if spec.spec_hash() != trial["spec_hash"]:
        raise SpecDriftError(
            f"this worker resolves trial {trial['index']} to spec {spec.spec_hash()}, the "
            f"driver to {trial['spec_hash']}: install the same mad-sweep version on every node")
    # Ray limits CUDA_VISIBLE_DEVICES to the trial's GPU, so inside it that GPU is cuda:0.
    gpus = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")} \
        if ray.get_gpu_ids() else {}
    device = "cuda" if gpus else "cpu"
    loop = SelfConsumingLoop(spec, state=restored_state(trial["resume_from"]), device=device)
    every = trial["checkpoint_every"]

    def next_generation() -> tuple[dict, dict[str, bytes], bytes | None, str] | None:
        """(record, its files, the serialized loop state when this generation is
        checkpointed, the stop status after the last generation), or None. All are taken
        here because the next call, which runs while the current result is reported,
        changes the loop."""
        if loop.done:
            return None
        record = loop.step()
        checkpointed = loop.done or record["generation"] % every == 0
        return (record, dict(loop.artifacts),
                state_bytes(loop.state_dict()) if checkpointed else None,
                loop.stop_status if loop.done else "")

    # tune.report blocks until the driver has taken the result (Tune's function
    # trainables report synchronously); computing the next generation meanwhile keeps
    # that wait off the trial's time. The loop is only touched by the one worker thread.
    announce = {"device": device}  # once: the driver tags the child run with it
    chunk: list[dict] = []
    files: dict[str, bytes] = {}
    chunk_started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="generation") as ahead:
        upcoming = ahead.submit(next_generation)
        while (generation := upcoming.result()) is not None:
            upcoming = ahead.submit(next_generation)
            record, artifacts, state, stop_status = generation
            chunk.append(record)
            files.update(artifacts)
            if state is None and time.monotonic() - chunk_started < CHUNK_S:
                continue
            metrics = {RECORDS_KEY: chunk, "record": record, **gpus, **announce}
            if files:
                metrics[ARTIFACTS_KEY] = files
            if stop_status:
                metrics[STOP_KEY] = stop_status
            announce, chunk, files = {}, [], {}
            if state is None:
                tune.report(metrics)
            else:
                with tempfile.TemporaryDirectory() as folder:
                    Path(folder, STATE_FILE).write_bytes(state)
                    # report copies the folder to the run's storage before it returns.
                    tune.report({**metrics, CHECKPOINT_FLAG: True},
                                checkpoint=tune.Checkpoint.from_directory(folder))
            chunk_started = time.monotonic()
