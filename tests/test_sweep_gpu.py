"""Fractional GPUs on logical GPUs: four trials share one GPU at the same time."""

from __future__ import annotations

import json

import pytest
import ray

from sweeps.runner import run_sweep
from sweeps.sweep_file import load_sweep

# With slow_trial: 40 generations of about 50 ms, so each trial outlasts the start of
# the others.
SWEEP = {
    "name": "gpu_share",
    "generations": 40,
    "grid": {"seed": {"range": [0, 4]}},
    "resources": {"cpu": 0.5, "gpu": 0.25},
    "checkpoint_every": 10,
}


@pytest.fixture(scope="module")
def ray_with_one_gpu():
    context = ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
                       log_to_driver=False)
    yield context
    ray.shutdown()


@pytest.mark.slow  # about 30 s: four trial actors start at once on two cores
def test_four_quarter_gpu_trials_run_together(ray_with_one_gpu, write_sweep, tracking_uri,
                                              check_store, slow_trial):
    sweep = load_sweep(str(write_sweep({**SWEEP, "trial": slow_trial})))
    outcome = run_sweep(sweep, tracking_uri=tracking_uri)
    assert outcome.status == "FINISHED"
    children = check_store(tracking_uri, sweep, outcome.parent_run_id).values()
    for run in children:
        assert json.loads(run.data.tags["mad.resources"]) == {"cpu": 0.5, "gpu": 0.25}
        assert run.data.tags["mad.cuda_visible_devices"] == "0"
        assert run.data.tags["mad.device"] == "cuda"
    starts = [run.info.start_time for run in children]
    ends = [run.info.end_time for run in children]
    assert max(starts) < min(ends), "the four trials did not all run at the same time"
