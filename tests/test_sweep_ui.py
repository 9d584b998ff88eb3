"""`mad ui` serves the sweep store's MLflow UI on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from mlflow import MlflowClient


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def test_ui_serves_the_store_on_loopback(tracking_uri, tmp_path):
    experiment_id = MlflowClient(tracking_uri).create_experiment("shown_in_ui")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mad_cli", "ui", "shown_in_ui",
                               "--tracking-uri", tracking_uri, "--port", str(port)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while get(f"http://127.0.0.1:{port}/health") != "OK":
            assert server.poll() is None and time.monotonic() < deadline, "mad ui did not start"
            time.sleep(0.5)
        found = json.loads(get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/"
                               f"get-by-name?experiment_name=shown_in_ui"))
        assert found["experiment"]["name"] == "shown_in_ui"
        # The address it prints opens the experiment's runs in the model-training view.
        assert (f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs"
                f"?workflowType=machine_learning") in server.stdout.readline()
        sockets = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                                 text=True).stdout.splitlines()
        assert sockets and all(line.split()[3] == f"127.0.0.1:{port}" for line in sockets)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers: its own group
        server.wait(timeout=30)


# --- The sweep's saved view (sweeps/ui_view.py) ---------------------------------------

from sweeps.ui_view import (VIEW_ID, VIEW_TAG, SweepColumns, refresh_sweep_view,  # noqa: E402
                            sweep_columns, trial_runs, ui_page, view_state, write_view)

GRID = [{"lam": lam, "data.dim": dim} for lam in (0.7, 1.0) for dim in (10, 100)]


def sweep_store(client: MlflowClient, name: str = "grid_in_ui", grid=GRID,
                tracked=("fid_mean", "fid_median", "precision_mean")) -> tuple[str, str]:
    """An experiment laid out as a sweep writes it (docs/tracking.md): a parent run and
    one child run per grid point, with params, mad.coordinates, mad.tracked_metrics and
    tracked metrics; (experiment id, parent run id)."""
    experiment_id = client.create_experiment(name)
    parent = client.create_run(experiment_id, run_name=f"{name} invocation",
                               tags={"mad.role": "sweep"}).info.run_id
    for index, coordinates in enumerate(grid):
        label = " ".join(f"{k}={v}" for k, v in coordinates.items())
        child = client.create_run(experiment_id, run_name=f"{label} (t{index:04d})", tags={
            "mlflow.parentRunId": parent, "mad.role": "trial", "mad.trial_index": str(index),
            "mad.coordinates": json.dumps(coordinates),
            "mad.tracked_metrics": json.dumps(list(tracked))}).info.run_id
        params = {"model": "wgan", "lam": "1.0", "data.source": "gmm", "data.dim": "2"}
        for key, value in coordinates.items():
            if isinstance(value, dict):  # a section axis
                params.update({f"{key}.{inner}": str(v) for inner, v in value.items()})
            else:
                params[key] = str(value)
        for key, value in params.items():
            client.log_param(child, key, value)
        for step in (1, 2):
            for position, key in enumerate(tracked):
                client.log_metric(child, key, index + position + step / 10, step=step)
    return experiment_id, parent


def stored_view(client: MlflowClient, experiment_id: str) -> tuple[dict, dict]:
    """(envelope, state) of the view as the UI reads it: the envelope's name (string),
    createdAt (number) and state (a string holding JSON)."""
    envelope = json.loads(client.get_experiment(experiment_id).tags[VIEW_TAG])
    assert isinstance(envelope["name"], str) and isinstance(envelope["createdAt"], int)
    assert isinstance(envelope["updatedAt"], int) and isinstance(envelope["state"], str)
    return envelope, json.loads(envelope["state"])


def test_view_names_the_axes_and_tracked_metrics_as_columns(tracking_uri):
    client = MlflowClient(tracking_uri)
    experiment_id, _ = sweep_store(client)
    page = ui_page(client, "grid_in_ui")
    assert page == (f"#/experiments/{experiment_id}/runs"
                    f"?workflowType=machine_learning&viewStateShareKey={VIEW_ID}")
    envelope, state = stored_view(client, experiment_id)
    assert envelope["name"] == "grid: lam × data.dim"
    columns = ["params.`lam`", "params.`data.dim`", "metrics.`fid_mean`",
               "metrics.`fid_median`", "metrics.`precision_mean`"]
    assert state["selectedColumns"] == columns
    assert state["columnOrder"] == ["attributes.`Run Name`", *columns]
    assert state["columnWidths"]["attributes.`Run Name`"] >= 160
    # Sorted by the key metric (FID: lower is better), which also lists every trial as
    # a row of its own instead of under a collapsed parent.
    assert state["orderByKey"] == "metrics.`fid_mean`" and state["orderByAsc"] is True
    # Neither runsExpanded nor other per-browser state: the UI ignores them in a view.
    assert set(state) == {"selectedColumns", "columnOrder", "columnWidths", "orderByKey",
                          "orderByAsc"}


def test_view_is_rewritten_only_when_it_changes(tracking_uri):
    client = MlflowClient(tracking_uri)
    experiment_id, _ = sweep_store(client)
    refresh_sweep_view(client, experiment_id)
    first, _ = stored_view(client, experiment_id)
    time.sleep(0.01)
    assert not write_view(client, experiment_id, sweep_columns(trial_runs(client, experiment_id)))
    assert stored_view(client, experiment_id)[0] == first
    # A later invocation with another axis: the view follows, its creation time stays.
    other = client.create_run(experiment_id, tags={"mad.role": "trial", "mad.coordinates":
                                                   json.dumps({"seed": 3}),
                                                   "mad.tracked_metrics": '["fid_mean"]'})
    client.log_param(other.info.run_id, "seed", "3")
    refresh_sweep_view(client, experiment_id)
    envelope, state = stored_view(client, experiment_id)
    assert envelope["createdAt"] == first["createdAt"] and envelope["updatedAt"] > first["updatedAt"]
    assert state["selectedColumns"][:3] == ["params.`seed`", "params.`lam`", "params.`data.dim`"]


def test_view_of_section_axes_and_many_metrics(tracking_uri):
    client = MlflowClient(tracking_uri)
    grid = [{"data": {"source": "gmm", "dim": dim, "modes": 8}} for dim in (2, 4)]
    tracked = [f"{m}_{s}" for m in ("precision", "recall", "modes_covered", "seconds")
               for s in ("mean", "median")]
    experiment_id, _ = sweep_store(client, grid=grid, tracked=tracked)
    columns = sweep_columns(trial_runs(client, experiment_id))
    # A section axis shows the section's params that differ between trials.
    assert columns.axes == ("data",) and columns.params == ("data.dim",)
    # More than 6 tracked metrics: the means of the primary ones.
    assert columns.metrics == ("precision_mean", "recall_mean", "modes_covered_mean")
    assert view_state(columns)["orderByAsc"] is False  # precision: higher is better


def test_key_metric_is_the_stop_rules(tracking_uri):
    client = MlflowClient(tracking_uri)
    experiment_id, _ = sweep_store(client)
    for run in trial_runs(client, experiment_id):
        client.log_param(run.info.run_id, "stop.metric", "precision_mean")
    columns = sweep_columns(trial_runs(client, experiment_id))
    assert columns.metrics == ("precision_mean", "fid_mean", "fid_median")
    state = view_state(columns)
    assert state["orderByKey"] == "metrics.`precision_mean`" and state["orderByAsc"] is False


def test_ui_page_without_trials_or_experiment(tracking_uri):
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("empty_sweep")
    assert ui_page(client, "empty_sweep") == (f"#/experiments/{experiment_id}/runs"
                                              f"?workflowType=machine_learning")
    assert VIEW_TAG not in client.get_experiment(experiment_id).tags
    assert ui_page(client, "no_such_sweep") is None
    assert ui_page(client, None) == "#/experiments?workflowType=machine_learning"
    # Trials that logged nothing yet: axes only, MLflow's default order.
    assert "orderByKey" not in view_state(SweepColumns(("lam",), ("lam",), ()))


def test_mad_ui_prints_the_sweep_view(tracking_uri, tmp_path):
    experiment_id, _ = sweep_store(MlflowClient(tracking_uri), name="printed_view")
    ui = subprocess.Popen([sys.executable, "-m", "mad_cli", "ui", "printed_view",
                           "--tracking-uri", tracking_uri, "--port", str(free_port())],
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, start_new_session=True)
    try:
        line = ui.stdout.readline()
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
    assert (f"/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
            f"&viewStateShareKey={VIEW_ID}") in line


CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome"))), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium to render the UI")
def test_browser_shows_the_view(tracking_uri, tmp_path):
    """The real UI, in headless chromium: the view's columns, and every trial a row (a
    collapsed parent would keep its children out of the page)."""
    client = MlflowClient(tracking_uri)
    experiment_id, _ = sweep_store(client, name="rendered_view")
    page = refresh_sweep_view(client, experiment_id)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], cwd=tmp_path,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while get(f"http://127.0.0.1:{port}/health") != "OK":
            assert server.poll() is None and time.monotonic() < deadline, "no MLflow server"
            time.sleep(0.3)
        # Wide enough for every column beside the assistant panel MLflow opens on
        # localhost (the table renders only the columns in sight).
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=2400,1000",
             f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=15000",
             "--dump-dom", f"http://127.0.0.1:{port}/{page}"],
            capture_output=True, text=True, timeout=90).stdout
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert "grid: lam × data.dim" in dom  # the view's name, on the Views button
    shown = set(re.findall(r'role="gridcell" col-id="([^"]+)"', dom))
    assert {"params.`lam`", "params.`data.dim`", "metrics.`fid_mean`",
            "metrics.`fid_median`", "metrics.`precision_mean`"} <= shown
    for coordinates in GRID:
        assert " ".join(f"{k}={v}" for k, v in coordinates.items()) in dom
