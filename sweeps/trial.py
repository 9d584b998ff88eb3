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
from pathlib import Path
from typing import Any

import ray
from ray import tune

from mad_core.loop import SelfConsumingLoop
from mad_core.spec import resolve_spec

STATE_FILE = "loop_state.pkl"


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

    Reports {"record": mad_core record, "cuda_visible_devices": str (only with GPUs)}
    once per generation.
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
    for record in loop:
        metrics = {"record": record, **device}
        if loop.done or record["generation"] % every == 0:
            with tempfile.TemporaryDirectory() as folder:
                Path(folder, STATE_FILE).write_bytes(pickle.dumps(loop.state_dict()))
                # report copies the folder to the run's storage before it returns.
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)
