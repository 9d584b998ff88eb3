"""The Ray Tune trainable: one grid point's whole self-consuming loop.

Each generation's record goes to ``tune.report``; every ``checkpoint_every``
generations (and after the last) the report carries a checkpoint of the loop state.
A trial continues from a checkpoint -- Tune's own after a lost worker, else the one
``mad sweep --resume`` names in ``resume_from`` -- and yields the records an
uninterrupted run would.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ray
from ray import tune

from mad_core.loop import SelfConsumingLoop
from mad_core.spec import resolve_spec

STATE_FILE = "loop_state.pkl"
CHECKPOINT_FLAG = "checkpointed"  # set in a result that carries a checkpoint


class SpecDriftError(RuntimeError):
    """A worker resolves a trial spec differently from the driver (different versions)."""


def trial_config(point, checkpoint_every: int, resume_from: str | None = None) -> dict[str, Any]:
    """What Tune passes to ``run_trial`` for one GridPoint (plain, picklable values).

    resume_from: URI of a checkpoint an earlier invocation wrote for this trial.
    """
    return {"index": point.index, "coordinates": dict(point.coordinates),
            "spec": point.raw_spec, "spec_hash": point.spec.spec_hash(),
            "checkpoint_every": checkpoint_every, "resume_from": resume_from}


def _restored_state(resume_from: str | None) -> dict | None:
    """The loop state to continue from: Tune's latest checkpoint of this invocation (a
    retry after a failure), else the earlier invocation's, else None (a fresh start)."""
    checkpoint = tune.get_checkpoint() or (resume_from and tune.Checkpoint(resume_from))
    if not checkpoint:
        return None
    with checkpoint.as_directory() as folder:
        return pickle.loads(Path(folder, STATE_FILE).read_bytes())


def run_trial(config: dict[str, Any]) -> None:
    """Tune function trainable. config["trial"] is a ``trial_config`` dict.

    Reports {"record": mad_core record, "cuda_visible_devices": str (only with GPUs),
    CHECKPOINT_FLAG: True (only with a checkpoint)} once per generation.
    """
    trial = config["trial"]
    spec = resolve_spec(trial["spec"])
    if spec.spec_hash() != trial["spec_hash"]:
        raise SpecDriftError(
            f"this worker resolves trial {trial['index']} to spec {spec.spec_hash()}, the "
            f"driver to {trial['spec_hash']}: install the same mad-sweep version on every node")
    loop = SelfConsumingLoop(spec, state=_restored_state(trial["resume_from"]))
    device = {}
    if ray.get_gpu_ids():
        device["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    every = trial["checkpoint_every"]

    def next_generation() -> tuple[dict, bytes | None] | None:
        """(record, pickled loop state when this generation is checkpointed), or None."""
        if loop.done:
            return None
        record = loop.step()
        checkpointed = loop.done or record["generation"] % every == 0
        return record, pickle.dumps(loop.state_dict()) if checkpointed else None

    # tune.report blocks until the driver has taken the result (Tune's function
    # trainables report synchronously); computing the next generation meanwhile keeps
    # that wait off the trial's time. The loop is only touched by the one worker thread.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="generation") as ahead:
        upcoming = ahead.submit(next_generation)
        while (generation := upcoming.result()) is not None:
            upcoming = ahead.submit(next_generation)
            record, state = generation
            metrics = {"record": record, **device}
            if state is None:
                tune.report(metrics)
                continue
            with tempfile.TemporaryDirectory() as folder:
                Path(folder, STATE_FILE).write_bytes(state)
                # report copies the folder to the run's storage before it returns.
                tune.report({**metrics, CHECKPOINT_FLAG: True},
                            checkpoint=tune.Checkpoint.from_directory(folder))
