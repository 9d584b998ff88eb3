"""`mad ui` serves the sweep store's MLflow UI on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

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
