"""A worker node lost mid-trial: Tune retries the trial from its last checkpoint on
another node, and its MLflow history still holds every generation exactly once (and, for
a DDPM trial, which continues from its weights, every generation's files)."""

from __future__ import annotations

import re
import threading
import time

import pytest
import ray
from mlflow import MlflowClient
from ray.cluster_utils import Cluster

from sweeps.mlflow_runs import child_runs, last_stored_record
from sweeps.runner import run_sweep
from sweeps.sweep_file import load_sweep

# With slow_trial: 60 generations of about 50 ms, long enough to lose a node in the middle.
SWEEP = {
    "name": "node_loss",
    "generations": 60,
    "grid": {"seed": [0, 1]},
    "checkpoint_every": 3,
    "max_failures": 3,
}
MID_TRIAL_GENERATION = 10


@pytest.fixture
def two_worker_cluster():
    """A head without CPUs and two 1-CPU workers, all on 127.0.0.1."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0,
                                                             "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def sweep_losing_a_node(cluster, worker, sweep, tracking_uri: str, mid_way: range):
    """Run `sweep` in a thread, remove `worker` once every trial has logged a generation
    in `mid_way`, and return the sweep's outcome."""
    outcome = {}
    # The driver runs in a thread: nodes may only be removed from the main thread.
    driver = threading.Thread(target=lambda: outcome.update(
        result=run_sweep(sweep, tracking_uri=tracking_uri)))
    driver.start()
    client = MlflowClient(tracking_uri)

    def every_trial_mid_way() -> bool:
        experiment = client.get_experiment_by_name(sweep.name)
        if experiment is None:
            return False
        runs = client.search_runs([experiment.experiment_id], "tags.`mad.role` = 'trial'")
        return len(runs) == len(sweep.trials) and all(
            last_stored_record(client, run.info.run_id) in mid_way for run in runs)

    wait_until(every_trial_mid_way, 120, "every trial to be mid-way")
    cluster.remove_node(worker, allow_graceful=False)
    driver.join(timeout=240)
    assert not driver.is_alive() and "result" in outcome
    return outcome["result"]


@pytest.mark.slow  # about 40 s: a three-node cluster and a retried trial
def test_trial_on_a_lost_node_resumes_and_logs_each_generation_once(
        two_worker_cluster, write_sweep, tracking_uri, check_store, slow_trial, capsys):
    cluster, workers = two_worker_cluster
    sweep = load_sweep(str(write_sweep({**SWEEP, "trial": slow_trial})))
    result = sweep_losing_a_node(cluster, workers[0], sweep, tracking_uri,
                                 range(MID_TRIAL_GENERATION, 40))
    assert result.status == "FINISHED"
    # The user is told, on one line, what happened to the trial and what Tune does.
    retried = re.findall(r"^t000[01] \(seed=\d\) failed after G(\d+): (.+); retrying from "
                         r"its last checkpoint \(attempt 2\)$", capsys.readouterr().err, re.M)
    assert len(retried) == 1 and int(retried[0][0]) >= MID_TRIAL_GENERATION, retried
    children = check_store(tracking_uri, sweep, result.parent_run_id)
    assert sorted(run.data.tags.get("mad.failures", "0") for run in children.values()) == ["0", "1"]
    client = MlflowClient(tracking_uri)
    assert child_runs(client, result.experiment_id, result.parent_run_id).keys() == {0, 1}


@pytest.mark.slow  # about 60 s: a three-node cluster, two DDPM trials, one retried
def test_ddpm_trial_on_a_lost_node_resumes_from_its_weights(
        two_worker_cluster, write_sweep, tracking_uri, check_store, ddpm_trial):
    generations = 6
    cluster, workers = two_worker_cluster
    sweep = load_sweep(str(write_sweep({
        "name": "ddpm_node_loss", "trial": {**ddpm_trial, "generations": generations},
        "grid": {"seed": [0, 1]}, "checkpoint_every": 1, "max_failures": 3})))
    # A logged generation has a checkpoint (checkpoint_every: 1), so the lost trial
    # continues from a saved model and optimizer, not from scratch.
    result = sweep_losing_a_node(cluster, workers[0], sweep, tracking_uri,
                                 range(1, generations - 1))
    assert result.status == "FINISHED"
    children = check_store(tracking_uri, sweep, result.parent_run_id)
    assert sorted(run.data.tags.get("mad.failures", "0")
                  for run in children.values()) == ["0", "1"]
    client = MlflowClient(tracking_uri)
    for run in children.values():
        assert sorted(f.path for f in client.list_artifacts(run.info.run_id, "grids")) == [
            f"grids/generation_{g:04d}.png" for g in range(1, generations + 1)]


def test_a_result_outlives_the_node_that_made_it(two_worker_cluster):
    """Results (with grids and snapshots) come back inline, not through the object store
    of the trial's node: fetched after that node is gone, a result stored there would
    be lost, and Tune would then stop the whole sweep (sweeps.environment.RESULTS_INLINE)."""
    cluster, workers = two_worker_cluster

    @ray.remote(max_retries=0, num_cpus=1)
    def a_large_result() -> bytes:
        return b"x" * 2_000_000  # a snapshot-sized result

    reference = a_large_result.remote()
    ray.wait([reference], fetch_local=False)
    for worker in workers:
        cluster.remove_node(worker, allow_graceful=False)
    assert len(ray.get(reference, timeout=30)) == 2_000_000
