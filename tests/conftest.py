"""Shared fixtures: a quiet, loopback-only environment for Ray and MLflow, a local Ray,
a temporary sqlite MLflow store, and sweep files written from mappings.

The environment is set at import, before any test module imports ray (Ray reads part
of it at import).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from mad_core.loop import TIMING_KEYS, SelfConsumingLoop
from sweeps.environment import configure_local_ray

# Ray's session folders hold unix sockets, whose paths must stay short.
RAY_TMPDIR = tempfile.mkdtemp(prefix="ray", dir="/tmp")
# One BLAS/OpenMP thread per process: Ray's workers run beside the test process on few
# cores, and OpenMP threads that spin-wait for a busy core make torch up to 20x slower.
# Trained feature networks and reference features go to a cache of the session's own,
# not the user's ~/.cache/mad-sweep: the suite proves they are built from scratch.
MAD_CACHE_DIR = tempfile.mkdtemp(prefix="mad-cache")
os.environ.update({"RAY_AUTH_MODE": "disabled", "MLFLOW_DISABLE_TELEMETRY": "true",
                   "RAY_TMPDIR": RAY_TMPDIR, "OMP_NUM_THREADS": "1",
                   "MAD_CACHE_DIR": MAD_CACHE_DIR})
configure_local_ray()


@pytest.fixture(scope="session", autouse=True)
def ray_tmpdir():
    yield RAY_TMPDIR
    shutil.rmtree(RAY_TMPDIR, ignore_errors=True)
    shutil.rmtree(MAD_CACHE_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU Ray on 127.0.0.1 shared by a test module; stopped after it."""
    import ray

    context = ray.init(address="local", num_cpus=2, include_dashboard=False,
                       log_to_driver=False)
    yield context
    ray.shutdown()


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh sqlite MLflow store; the test runs in tmp_path (where mlruns/ and
    mad_output/ then go)."""
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def slow_trial() -> dict:
    """A Gaussian trial spec of about 50 ms per generation (exact simulation, d = 60,
    100 chains): slow enough to act on a trial mid-way, without sleeping in the trial."""
    return {"model": "gaussian", "loop": "fresh_data", "n_init": 200, "n_real": 100,
            "n_syn": 100, "chains": 100, "data": {"source": "gaussian", "dim": 60},
            "simulation": "exact"}


@pytest.fixture
def ddpm_trial() -> dict:
    """A class-conditional DDPM trial spec on 8x8 digits, small enough for tests: a few
    seconds of set-up (data, feature network), then about 1 s per generation on one core.
    Keeps a sample grid every generation and a model snapshot at G1, every 2nd
    generation and the last; `generations` is for the test to set."""
    return {"model": "ddpm", "loop": "fully_synthetic", "n_init": 200, "n_syn": 200,
            "grid_every": 1, "snapshot_every": 2, "data": {"source": "digits"},
            "metrics": {"n_eval": 100, "k": 3},
            "model_options": {"base_channels": 8, "channel_multipliers": [1, 2], "steps": 15,
                              "batch_size": 64, "sampler": "ddim", "sampler_steps": 4,
                              "timesteps": 100, "ema_decay": 0.0}}


@pytest.fixture
def write_sweep(tmp_path):
    """write_sweep(mapping, name="sweep.yaml") -> path of the YAML file in tmp_path."""

    def write(content: dict, name: str = "sweep.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(content, sort_keys=False))
        return path

    return write


@pytest.fixture
def check_store():
    """check_store(tracking_uri, sweep, parent_run_id) -> {trial_index: child Run}.

    Asserts the parent run has one FINISHED child run per trial whose record parts hold
    every generation exactly once (1..G, no overlap) with the records mad_core's loop
    produces for that trial's spec (timing keys: present, values not compared), and
    whose tracked metrics' histories hold every generation once with the same values.
    """
    from mlflow import MlflowClient

    from mad_core.record_table import PARTS_FOLDER, part_range, read_parts
    from sweeps.mlflow_runs import child_runs, encode_metric

    def same(value: float, expected: float) -> bool:
        return (value == expected or math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12)
                or (math.isnan(value) and math.isnan(expected)))

    def check(tracking_uri: str, sweep, parent_run_id: str) -> dict:
        client = MlflowClient(tracking_uri)
        experiment_id = client.get_run(parent_run_id).info.experiment_id
        children = child_runs(client, experiment_id, parent_run_id)
        assert sorted(children) == [p.index for p in sweep.trials]
        for point in sweep.trials:
            run = children[point.index]
            assert run.info.status == "FINISHED", (point.label(), run.info.status)
            records = list(SelfConsumingLoop(point.spec))
            generations = list(range(1, len(records) + 1))
            parts = sorted(client.list_artifacts(run.info.run_id, PARTS_FOLDER),
                           key=lambda info: info.path)
            covered = [g for info in parts
                       for g in range(*(lambda r: (r[0], r[1] + 1))(
                           part_range(info.path.rsplit("/", 1)[1])))]
            assert covered == generations, (point.label(), [info.path for info in parts])
            table = read_parts(client.download_artifacts(run.info.run_id, info.path)
                               for info in parts).to_pylist()
            assert [row["generation"] for row in table] == generations
            for row, record in zip(table, records):
                assert set(row) == set(record), point.label()
                for key, expected in record.items():
                    if key not in TIMING_KEYS:
                        assert same(row[key], expected), (point.label(), key, row, record)
            tracked = json.loads(run.data.tags["mad.tracked_metrics"])
            assert tracked and set(run.data.metrics) == set(tracked), point.label()
            for key in tracked:
                history = sorted(client.get_metric_history(run.info.run_id, key),
                                 key=lambda m: m.step)
                assert [m.step for m in history] == generations, (point.label(), key)
                for metric, record in zip(history, records):
                    assert same(metric.value, encode_metric(record[key])), \
                        (point.label(), key, metric.step, metric.value, record[key])
        return children

    return check


@pytest.fixture(scope="session")
def mnist_folder(tmp_path_factory) -> Path:
    """A folder with data/MNIST/raw/ holding MNIST-sized IDX files of blank images (sparse
    files: 60,000 + 10,000 images without writing 55 MB), for shipped MNIST specs and
    sweeps, whose data.root is the relative folder "data"; and data/ffhq64/ with 70,000
    empty .png names, FFHQ's count, for the image-folder specs (their facts count files
    without decoding them)."""
    folder = tmp_path_factory.mktemp("mnist")
    thumbnails = folder / "data" / "ffhq64"
    thumbnails.mkdir(parents=True)
    for index in range(70_000):
        (thumbnails / f"{index:05d}.png").touch()
    raw = folder / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", 60_000), ("t10k", 10_000)):
        for kind, shape in (("images-idx3-ubyte", (count, 28, 28)), ("labels-idx1-ubyte", (count,))):
            header = bytes([0, 0, 8, len(shape)]) + b"".join(s.to_bytes(4, "big") for s in shape)
            with open(raw / f"{prefix}-{kind}", "wb") as file:
                file.write(header)
                file.truncate(len(header) + math.prod(shape))
    return folder


@pytest.fixture
def call_counter():
    """call_counter(network) -> a module calling `network` (x, t, labels) that records
    the batch size of every call in ``.batches``: how many network passes a sampler makes."""
    import torch

    class CallCounter(torch.nn.Module):
        def __init__(self, network):
            super().__init__()
            self.network, self.batches = network, []

        def forward(self, x, t, labels):
            self.batches.append(len(x))
            return self.network(x, t, labels)

    return CallCounter
