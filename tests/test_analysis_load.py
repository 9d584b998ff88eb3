"""Loading a sweep from MLflow: a real sqlite store filled with real mad_core records in
the layout of docs/tracking.md, read back as a typed table; the cache; every error path.

``log_sweep`` (the writer, with the sweeps package's own encoders of parameters and
records) is also the fixture of the other analysis tests and of benchmarks/analyze.py.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from analysis import load as load_module
from analysis.history import fetch_histories, per_history
from analysis.load import SweepLoadError, load_sweep
from mad_core.loop import SelfConsumingLoop
from mad_core.spec import resolve_spec
from mad_core.record_table import PARTS_FOLDER, encode_part, part_name
from sweeps.mlflow_runs import encode_metric, spec_params, tracked_keys, tracked_values


def legacy_metrics(record: dict, timestamp_ms: int) -> list[Metric]:
    """Every numeric record key at step = generation: how runs were logged before
    record parts existed (the loader's fallback)."""
    return [Metric(key, encode_metric(value), timestamp_ms, record["generation"])
            for key, value in record.items() if key != "generation"]


def log_trial(client: MlflowClient, experiment_id: str, parent_id: str, sweep_name: str,
              spec, coordinates: dict, records: list[dict], status: str = "FINISHED",
              legacy: bool = False) -> str:
    """One trial run as docs/tracking.md lays it out (legacy: metric histories only, no
    record parts); its run id."""
    tags = {"mlflow.parentRunId": parent_id, "mad.role": "trial", "mad.sweep": sweep_name,
            "mad.model": spec.model, "mad.loop": spec.loop, "mad.spec_hash": spec.spec_hash(),
            "mad.trial_id": f"trial_{spec.spec_hash()[:5]}_{spec.seed}",
            "mad.coordinates": json.dumps(coordinates), "mad.version": "test",
            "mad.commit": "test"}
    run = client.create_run(experiment_id, tags=tags)
    now = int(time.time() * 1000)
    if legacy:
        metrics = [metric for record in records for metric in legacy_metrics(record, now)]
    else:
        keys = tracked_keys(records[0], None) if records else ()
        metrics = [metric for record in records for metric in tracked_values(record, keys, now)]
    params = [Param(key, value) for key, value in spec_params(spec).items()]
    for start in range(0, max(len(metrics), 1), 1000):
        client.log_batch(run.info.run_id, metrics=metrics[start:start + 1000],
                         params=params if start == 0 else [])
    if records and not legacy:
        # Two parts, as a trial checkpointed mid-way writes them.
        with tempfile.TemporaryDirectory() as folder:
            middle = max(1, len(records) // 2)
            for chunk in (records[:middle], records[middle:]):
                if chunk:
                    path = Path(folder, part_name(chunk[0]["generation"],
                                                  chunk[-1]["generation"]))
                    path.write_bytes(encode_part(chunk))
                    client.log_artifact(run.info.run_id, str(path), PARTS_FOLDER)
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def log_sweep(tracking_uri: str, name: str, base: dict, grid: dict[str, list],
              artifact_location: str | None = None, records_of=None,
              legacy: bool = False) -> str:
    """Run every grid point of a base trial spec with mad_core and log it; the parent
    run id. ``records_of(spec)`` replaces running the loop (e.g. to truncate a trial);
    legacy logs metric histories only (see ``log_trial``)."""
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(name, artifact_location=artifact_location)
    parent = client.create_run(experiment_id, tags={"mad.role": "sweep", "mad.sweep": name,
                                                    "mad.version": "test",
                                                    "mad.commit": "test"})
    for values in itertools.product(*grid.values()):
        coordinates = dict(zip(grid, values))
        raw = json.loads(json.dumps(base))
        for key, value in coordinates.items():
            *sections, last = key.split(".")
            target = raw
            for section in sections:
                target = target.setdefault(section, {})
            target[last] = value
        spec = resolve_spec(raw)
        records = records_of(spec) if records_of else list(SelfConsumingLoop(spec))
        log_trial(client, experiment_id, parent.info.run_id, name, spec, coordinates, records,
                  legacy=legacy)
    client.set_terminated(parent.info.run_id)
    return parent.info.run_id


SMALL_BASE = {"model": "gaussian", "loop": "fresh_data", "n_init": 30, "generations": 12,
              "chains": 8, "data": {"dim": 3}}
SMALL_GRID = {"lam": [0.7, 1.0], "n_syn": [20, 60], "seed": [0, 1]}


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """A sqlite store holding one small real sweep (8 trials x 12 generations)."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    parent = log_sweep(uri, "small", {**SMALL_BASE, "n_real": 10}, SMALL_GRID,
                       artifact_location=(root / "artifacts").as_uri())
    return uri, parent, root


def test_records_are_one_typed_row_per_trial_and_generation(small_store, tmp_path):
    uri, parent, _ = small_store
    sweep = load_sweep("small", uri, cache_dir=tmp_path)
    records = sweep.records
    assert len(records) == 8 * 12 and records["run_id"].nunique() == 8
    assert sorted(records["generation"].unique()) == list(range(1, 13))
    assert records["lam"].dtype == "float64" and records["n_syn"].dtype == "Int64"
    assert records["data.dim"].dtype == "Int64" and records["loop"].iloc[0] == "fresh_data"
    assert "n_total" not in records  # null spec values are not logged
    assert set(sweep.axes) == set(SMALL_GRID) and sweep.parent_run_ids == (parent,)
    assert {"w2_sq_mean", "w2_sq_sem", "trace_q95", "n_train"} <= set(sweep.metrics)
    # Values are the mad_core records, read back exactly.
    one = records[(records["lam"] == 0.7) & (records["n_syn"] == 60) & (records["seed"] == 1)]
    spec = resolve_spec({**SMALL_BASE, "n_real": 10, "lam": 0.7, "n_syn": 60, "seed": 1})
    expected = list(SelfConsumingLoop(spec))
    assert np.allclose(one["w2_sq_mean"], [r["w2_sq_mean"] for r in expected], rtol=1e-12)
    assert (one["n_train"] == 70).iloc[1:].all()


def test_record_parts_and_legacy_histories_load_the_same_table(small_store, tmp_path):
    uri, _, root = small_store
    log_sweep(uri, "small_legacy", {**SMALL_BASE, "n_real": 10}, SMALL_GRID,
              artifact_location=(root / "legacy").as_uri(), legacy=True)
    from_parts = load_sweep("small", uri).records
    from_histories = load_sweep("small_legacy", uri).records
    assert from_histories["run_id"].nunique() == 8
    assert set(from_parts.columns) == set(from_histories.columns)
    key = ["lam", "n_syn", "seed", "generation"]
    columns = [c for c in from_parts.columns
               if c not in ("run_id", "parent_run_id", "trial_id", "seconds")]
    ordered = [frame.sort_values(key, ignore_index=True)[columns]
               for frame in (from_parts, from_histories)]
    # Parts keep integers as integers; histories hold floats.
    pd.testing.assert_frame_equal(*ordered, check_dtype=False)


def test_singular_logdet_reads_back_as_minus_infinity(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # n_init = 3 points in d = 5: a singular covariance at G1, log det = -inf.
    log_sweep(uri, "singular", {**SMALL_BASE, "n_init": 3, "n_real": 10, "generations": 2,
                                "data": {"dim": 5}}, {"n_syn": [10]})
    records = load_sweep("singular", uri).records
    assert records.loc[records["generation"] == 1, "logdet_mean"].iloc[0] == -np.inf


def test_a_parent_run_id_selects_that_invocation(small_store):
    uri, parent, _ = small_store
    sweep = load_sweep(parent, uri)
    assert sweep.name == "small" and sweep.records["run_id"].nunique() == 8


def test_cache_is_reused_until_the_sweep_changes(small_store, tmp_path, monkeypatch):
    uri, parent, _ = small_store
    first = load_sweep("small", uri, cache_dir=tmp_path)
    fetches = []
    original = load_module.fetch_sweep
    monkeypatch.setattr(load_module, "fetch_sweep",
                        lambda *args: fetches.append(1) or original(*args))
    again = load_sweep("small", uri, cache_dir=tmp_path)
    assert not fetches  # served from the parquet file
    pd.testing.assert_frame_equal(first.records, again.records)
    assert again.axes == first.axes and again.parent_run_ids == first.parent_run_ids
    load_sweep("small", uri, cache_dir=tmp_path, refresh=True)
    assert len(fetches) == 1

    # A new trial (here, a running one) changes the sweep: the cache is not used.
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("small")
    spec = resolve_spec({**SMALL_BASE, "n_real": 10, "n_syn": 5, "generations": 2})
    log_trial(client, experiment.experiment_id, parent, "small", spec, {"n_syn": 5},
              list(SelfConsumingLoop(spec)), status="RUNNING")
    grown = load_sweep("small", uri, cache_dir=tmp_path)
    assert len(fetches) == 2 and grown.records["run_id"].nunique() == 9
    assert set(grown.records["status"]) == {"FINISHED", "RUNNING"}


def test_bulk_loading_equals_one_call_per_history(small_store):
    uri, _, _ = small_store
    client = MlflowClient(uri)
    run_ids = [r.info.run_id for r in client.search_runs(
        [client.get_experiment_by_name("small").experiment_id], "tags.`mad.role` = 'trial'")]
    keys = ["w2_sq_mean", "trace_median", "n_train"]
    bulk = fetch_histories(client, run_ids, keys, generations=12)
    single = per_history(client, run_ids, keys)
    order = ["run_id", "key", "step"]
    pd.testing.assert_frame_equal(bulk.sort_values(order, ignore_index=True),
                                  single.sort_values(order, ignore_index=True))


def test_missing_database_is_a_clear_error_and_creates_nothing(tmp_path):
    path = tmp_path / "nowhere.db"
    with pytest.raises(SweepLoadError, match="no MLflow database at .*nowhere.db"):
        load_sweep("small", f"sqlite:///{path}")
    assert not path.exists()


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(SweepLoadError, match="cannot reach the MLflow tracking server"):
        load_sweep("small", "http://127.0.0.1:9")  # the discard port: nothing listens


def test_unknown_sweep_lists_the_experiments_there(small_store):
    uri, _, _ = small_store
    with pytest.raises(SweepLoadError, match=r"no experiment or parent run 'smal'.*small"):
        load_sweep("smal", uri)


def test_a_trial_run_id_is_not_a_sweep(small_store):
    uri, _, _ = small_store
    client = MlflowClient(uri)
    trial = client.search_runs([client.get_experiment_by_name("small").experiment_id],
                               "tags.`mad.role` = 'trial'", max_results=1)[0]
    with pytest.raises(SweepLoadError, match="not a sweep's parent run"):
        load_sweep(trial.info.run_id, uri)


def test_an_experiment_without_trials_is_a_clear_error(small_store):
    uri, _, _ = small_store
    MlflowClient(uri).create_experiment("empty")
    with pytest.raises(SweepLoadError, match="has no trial runs"):
        load_sweep("empty", uri)


@pytest.fixture
def tracking_server(small_store):
    """An MLflow tracking server on 127.0.0.1 over the small store (its own process group,
    stopped after the test)."""
    uri, _, root = small_store
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
         "--default-artifact-root", (root / "artifacts").as_uri(), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(address + "/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        yield address
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_tracking_server_gives_the_same_table_in_bulk(small_store, tracking_server):
    uri, _, _ = small_store
    direct = load_sweep("small", uri).records
    served = load_sweep("small", tracking_server).records
    pd.testing.assert_frame_equal(direct, served)
