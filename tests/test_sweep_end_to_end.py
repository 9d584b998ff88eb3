"""A real sweep on a local 2-CPU Ray into a sqlite MLflow store: layout, histories, reruns."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mad_core.loop import SelfConsumingLoop
from mad_core.spec import SpecError, trial_memories
from sweeps.environment import LOOPBACK_RAY, RESULTS_INLINE
from sweeps.mlflow_runs import open_experiment, provenance_tags, spec_params, start_parent_run
from sweeps.ray_cluster import ClusterResourceError
from sweeps.runner import ResumeError, run_sweep
from sweeps.sweep_file import load_sweep

# n_syn = 3 points in 4 dimensions: singular covariances, so logdet records are -inf.
SWEEP = {
    "name": "e2e_gaussian",
    "description": "end-to-end test grid",
    "trial": {"model": "gaussian", "loop": "fully_synthetic", "n_init": 20, "chains": 8,
              "data": {"source": "gaussian", "dim": 4}, "simulation": "exact"},
    "generations": 4,
    "grid": {"n_syn": [3, 40], "seed": {"range": [0, 2]}},
    "checkpoint_every": 2,
}


@pytest.fixture
def sweep(write_sweep, tracking_uri):
    return load_sweep(str(write_sweep({**SWEEP, "tracked_metrics": ["w2_sq_mean",
                                                                     "logdet_median"]})))


def test_store_holds_parent_and_every_trial_history(local_ray, sweep, tracking_uri, check_store):
    outcome = run_sweep(sweep, tracking_uri=tracking_uri)
    assert (outcome.finished, outcome.failed, outcome.status) == (4, 0, "FINISHED")

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("e2e_gaussian")
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.experiment_id == experiment.experiment_id
    db_folder = tracking_uri.removeprefix("sqlite:///").rsplit("/", 1)[0]
    assert experiment.artifact_location == f"{db_folder}/mlruns/e2e_gaussian"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert (tags["mad.role"], tags["mad.sweep"], tags["mad.trials"]) == ("sweep", "e2e_gaussian", "4")
    assert tags["mad.version"] and tags["mad.commit"]
    assert tags["mlflow.note.content"] == "end-to-end test grid"
    assert client.download_artifacts(parent.info.run_id, "sweep.yaml") and \
        open(client.download_artifacts(parent.info.run_id, "sweep.yaml")).read() == sweep.text
    grid_rows = list(csv.DictReader(io.StringIO(
        open(client.download_artifacts(parent.info.run_id, "grid.csv")).read())))
    assert [(r["trial_index"], r["n_syn"], r["seed"], r["spec_hash"]) for r in grid_rows] == [
        (str(p.index), str(p.coordinates["n_syn"]), str(p.coordinates["seed"]),
         p.spec.spec_hash()) for p in sweep.trials]

    children = check_store(tracking_uri, sweep, outcome.parent_run_id)
    for point in sweep.trials:
        run = children[point.index]
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == outcome.parent_run_id
        assert (tags["mad.role"], tags["mad.sweep"], tags["mad.model"], tags["mad.loop"]) == (
            "trial", "e2e_gaussian", "gaussian", "fully_synthetic")
        assert tags["mad.spec_hash"] == point.spec.spec_hash()
        assert json.loads(tags["mad.coordinates"]) == dict(point.coordinates)
        assert tags["mad.trial_id"] and tags["mad.commit"] == parent.data.tags["mad.commit"]
        assert json.loads(tags["mad.resources"]) == {"cpu": 1, "gpu": 0}
        assert run.data.params == spec_params(point.spec)
        assert json.loads(tags["mad.tracked_metrics"]) == ["w2_sq_mean", "logdet_median"]
        assert run.info.run_name == (f"n_syn={point.coordinates['n_syn']} "
                                     f"seed={point.coordinates['seed']} (t{point.index:04d})")

    singular = next(p for p in sweep.trials if p.coordinates["n_syn"] == 3)
    assert list(SelfConsumingLoop(singular.spec))[-1]["logdet_median"] == float("-inf")
    history = client.get_metric_history(children[singular.index].info.run_id, "logdet_median")
    assert history[-1].value == -sys.float_info.max  # the documented stand-in for -inf


def test_second_invocation_adds_a_parent_run_and_keeps_the_first(local_ray, write_sweep,
                                                                 tracking_uri):
    sweep = load_sweep(str(write_sweep({**SWEEP, "grid": {"n_syn": [40]}})))
    first = run_sweep(sweep, tracking_uri=tracking_uri)
    second = run_sweep(sweep, tracking_uri=tracking_uri)
    assert first.parent_run_id != second.parent_run_id
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([first.experiment_id])
    parents = [r for r in runs if r.data.tags["mad.role"] == "sweep"]
    assert len(parents) == 2 and len(runs) == 2 + 2 * len(sweep.trials)
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_gpu_fraction_on_a_cluster_without_gpus_runs_on_cpu(local_ray, write_sweep, tracking_uri,
                                                            capsys):
    sweep = load_sweep(str(write_sweep({**SWEEP, "grid": {"n_syn": [40]},
                                        "resources": {"cpu": 1, "gpu": 0.25}})))
    outcome = run_sweep(sweep, tracking_uri=tracking_uri)
    assert outcome.status == "FINISHED"
    assert "resources.gpu = 0.25 ignored: the cluster has no GPUs" in capsys.readouterr().out
    (child,) = [r for r in MlflowClient(tracking_uri).search_runs([outcome.experiment_id])
                if r.data.tags["mad.role"] == "trial"]
    assert json.loads(child.data.tags["mad.resources"]) == {"cpu": 1, "gpu": 0}
    assert "mad.cuda_visible_devices" not in child.data.tags


def test_trials_larger_than_any_node_fail_before_anything_is_recorded(local_ray, write_sweep,
                                                                      tracking_uri):
    sweep = load_sweep(str(write_sweep({**SWEEP, "resources": {"cpu": 4}})))
    with pytest.raises(ClusterResourceError, match="no node can hold a trial asking for 4 CPU"):
        run_sweep(sweep, tracking_uri=tracking_uri)
    assert MlflowClient(tracking_uri).get_experiment_by_name("e2e_gaussian") is None


def test_trials_whose_arrays_exceed_every_nodes_memory_fail_before_anything_is_recorded(
        local_ray, write_sweep, tracking_uri):
    """A sweep on a cluster validates without this machine's memory (the trials run on
    the nodes) and checks the most demanding trial against the nodes' memory for tasks."""
    path = write_sweep({**SWEEP, "grid": {"n_syn": [3], "chains": [10, 10**8]}})  # 84 GiB for the second
    with pytest.raises(SpecError, match="chains: 100,000,000 chains of 7 matrices"):
        load_sweep(str(path))  # on this machine
    sweep = load_sweep(str(path), check_memory=False)
    small, large = trial_memories(point.spec for point in sweep.trials)
    matrix = 8 * SWEEP["trial"]["data"]["dim"] ** 2  # bytes of one d x d matrix
    assert (small.bytes, large.bytes) == (10 * 7 * matrix, 10**8 * 7 * matrix)
    with pytest.raises(ClusterResourceError, match=r"trial 1 \(n_syn=3 chains=100000000\), chains: "
                                                   r"100,000,000 chains of 7 matrices .* more "
                                                   r"than the memory Ray gives tasks"):
        run_sweep(sweep, tracking_uri=tracking_uri)
    assert MlflowClient(tracking_uri).get_experiment_by_name("e2e_gaussian") is None


def test_resume_refuses_a_missing_or_different_invocation(write_sweep, tracking_uri):
    sweep = load_sweep(str(write_sweep({**SWEEP, "grid": {"n_syn": [40]}})))
    with pytest.raises(ResumeError, match="no earlier invocation"):
        run_sweep(sweep, tracking_uri=tracking_uri, resume=True)
    client = MlflowClient(tracking_uri)
    start_parent_run(client, open_experiment(client, sweep), sweep, "unused", provenance_tags())
    changed = load_sweep(str(write_sweep({**SWEEP, "grid": {"n_syn": [40, 50]}})))
    with pytest.raises(ResumeError, match="resolves to a different grid"):
        run_sweep(changed, tracking_uri=tracking_uri, resume=True)


def test_resume_of_a_finished_sweep_runs_nothing(local_ray, write_sweep, tracking_uri, capsys):
    sweep = load_sweep(str(write_sweep({**SWEEP, "grid": {"n_syn": [40]}})))
    first = run_sweep(sweep, tracking_uri=tracking_uri)
    capsys.readouterr()
    again = run_sweep(sweep, tracking_uri=tracking_uri, resume=True)
    assert "nothing to resume" in capsys.readouterr().out
    assert (again.parent_run_id, again.status) == (first.parent_run_id, "FINISHED")


def test_trials_with_a_stop_rule_end_where_their_loop_stops(local_ray, write_sweep,
                                                            tracking_uri, check_store):
    """A trial whose limit is known early ends there (every record stored once, the
    reason tagged); one that is not ends at its cap, tagged as not converged."""
    sweep = load_sweep(str(write_sweep({
        **SWEEP, "generations": 150, "checkpoint_every": 40,
        "trial": {**SWEEP["trial"], "loop": "fresh_data", "n_real": 20, "n_syn": 20,
                  "stop": {"metric": "w2_sq_mean", "min_generations": 30}},
        "grid": {"stop.rel_precision": [0.05, 0.0001]}})))
    outcome = run_sweep(sweep, tracking_uri=tracking_uri)
    assert outcome.status == "FINISHED"
    children = check_store(tracking_uri, sweep, outcome.parent_run_id)
    loose, strict = (children[point.index] for point in sweep.trials)
    loose_loop = SelfConsumingLoop(sweep.trials[0].spec)
    stopped_at = len(list(loose_loop))
    assert stopped_at < 150 and loose_loop.stopped_early
    assert loose.data.tags["mad.stop_status"].startswith(f"converged at G{stopped_at}")
    assert strict.data.tags["mad.stop_status"].startswith("not converged at G150")


def test_mad_sweep_reaches_a_loopback_ray_by_its_address(local_ray, write_sweep, tmp_path):
    """The command as a user runs it, in a process without the test session's Ray
    settings: `--address 127.0.0.1:PORT` of a Ray listening on loopback only."""
    path = write_sweep({**SWEEP, "grid": {"n_syn": [40]}, "generations": 2})
    environment = {k: v for k, v in os.environ.items()
                   if k not in (*LOOPBACK_RAY, *RESULTS_INLINE)}
    done = subprocess.run(
        [sys.executable, "-m", "mad_cli", "sweep", str(path), "--address",
         local_ray.address_info["gcs_address"], "--tracking-uri",
         f"sqlite:///{tmp_path}/loopback.db"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 of 1 trials finished" in done.stdout


def test_a_local_sweep_removes_the_ray_session_it_started(write_sweep, tmp_path):
    """`mad sweep` without --address starts a local Ray; once every trial finished, its
    session folder under $RAY_TMPDIR is gone."""
    path = write_sweep({**SWEEP, "grid": {"n_syn": [40]}, "generations": 2})
    ray_tmpdir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # sockets need short paths
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mad_cli", "sweep", str(path), "--tracking-uri",
             f"sqlite:///{tmp_path}/local.db"], cwd=tmp_path, capture_output=True, text=True,
            env={**os.environ, "RAY_TMPDIR": ray_tmpdir}, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
        assert not list(Path(ray_tmpdir).glob("ray/session_*"))
    finally:
        shutil.rmtree(ray_tmpdir, ignore_errors=True)


def test_resume_refuses_an_invocation_another_driver_is_running(write_sweep, tracking_uri):
    """A live driver's lock (a sleeping process stands in for it) stops a second driver
    before it touches anything; once that process is gone, the lock is free."""
    from sweeps.driver_lock import DRIVER_TAG, DriverLockError
    from sweeps.runner import _previous_invocation

    sweep = load_sweep(str(write_sweep({**SWEEP, "grid": {"n_syn": [40]}})))
    client = MlflowClient(tracking_uri)
    experiment_id = open_experiment(client, sweep)
    parent = start_parent_run(client, experiment_id, sweep, "unused/a/b", provenance_tags())
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tag = json.loads(client.get_run(parent).data.tags[DRIVER_TAG])
        client.set_tag(parent, DRIVER_TAG, json.dumps({**tag, "pid": other.pid}))
        with pytest.raises(DriverLockError, match=f"process {other.pid} on this machine"):
            run_sweep(sweep, tracking_uri=tracking_uri, resume=True)
    finally:
        other.kill()
        other.wait()
    assert _previous_invocation(client, sweep).info.run_id == parent
