"""`mad sweep --resume` after the driver was killed mid-sweep: finished trials are not
redone, unfinished ones continue from their checkpoints into the same MLflow runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

import mad_cli
from sweeps.mlflow_runs import child_runs, last_stored_record, latest_parent_run
from sweeps.sweep_file import load_sweep

# With slow_trial: four trials, two at a time, about 3 s each (60 generations of 50 ms).
SWEEP = {
    "name": "resumable",
    "generations": 60,
    "grid": {"seed": {"range": [0, 4]}},
    "checkpoint_every": 4,
}


def sweep_children(client: MlflowClient) -> dict:
    parent = latest_parent_run(client, "resumable")
    if parent is None:
        return {}
    return child_runs(client, parent.info.experiment_id, parent.info.run_id)


@pytest.mark.slow  # about 30 s: a driver process started, killed and resumed
def test_resume_after_the_driver_was_killed(local_ray, write_sweep, tracking_uri, tmp_path,
                                            check_store, capsys, slow_trial):
    path = write_sweep({**SWEEP, "trial": slow_trial})
    driver = subprocess.Popen(
        [sys.executable, "-m", "mad_cli", "sweep", str(path), "--tracking-uri", tracking_uri,
         "--address", local_ray.address_info["gcs_address"]],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = MlflowClient(tracking_uri)

    def some_finished_some_mid_way() -> bool:
        statuses = [(run.info.status, last_stored_record(client, run.info.run_id))
                    for run in sweep_children(client).values()]
        return any(s == "FINISHED" for s, _ in statuses) and any(
            s == "RUNNING" and 4 <= logged < 50 for s, logged in statuses)

    deadline = time.monotonic() + 120
    while not some_finished_some_mid_way():
        assert driver.poll() is None and time.monotonic() < deadline, "sweep never got mid-way"
        time.sleep(0.1)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()

    before = sweep_children(client)
    finished_before = {i: run for i, run in before.items() if run.info.status == "FINISHED"}
    assert 0 < len(finished_before) < 4

    capsys.readouterr()
    assert mad_cli.main(["sweep", str(path), "--resume", "--tracking-uri", tracking_uri]) == 0
    assert "4 of 4 trials finished" in capsys.readouterr().out

    sweep = load_sweep(str(path))
    (parent,) = client.search_runs([before[0].info.experiment_id], "tags.`mad.role` = 'sweep'")
    assert parent.info.status == "FINISHED"
    after = check_store(tracking_uri, sweep, parent.info.run_id)
    for index, run in before.items():
        assert after[index].info.run_id == run.info.run_id
    for index, run in finished_before.items():  # not redone: not even reopened
        assert after[index].info.end_time == run.info.end_time
