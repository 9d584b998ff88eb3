"""Sweeps of neural models: DDPM trials on 8x8 digits log their metrics, sample grids and
model snapshots to MLflow and checkpoint their weights without pickles; a checkpoint
holding code is refused. (A DDPM trial on a lost node: test_sweep_fault_tolerance.py.)"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

import mad_cli
from mad_core.checkpoint import load_state
from mad_core.record_table import read_parts
from mad_core.snapshots import load_snapshot
from sweeps.runner import run_sweep
from sweeps.sweep_file import load_sweep
from sweeps.trial import STATE_FILE, restored_state

IMAGE_METRICS = ("fid_mean", "kid_mean", "precision_mean", "recall_mean", "density_mean",
                 "coverage_mean", "class_fidelity_mean")
# Logged per generation for the UI by default: the primary metrics' means and medians.
TRACKED = {f"{metric}_{summary}" for metric in ("fid", "precision", "recall")
           for summary in ("mean", "median")}


def artifact_paths(client: MlflowClient, run_id: str, folder: str) -> list[str]:
    return sorted(info.path for info in client.list_artifacts(run_id, folder))


def test_ddpm_sweep_logs_metrics_grids_and_snapshots(local_ray, write_sweep, tracking_uri,
                                                     check_store, ddpm_trial, tmp_path):
    sweep = load_sweep(str(write_sweep({
        "name": "ddpm_digits", "trial": {**ddpm_trial, "generations": 3},
        "grid": {"lam": [1.0, 0.5]}, "checkpoint_every": 2})))
    outcome = run_sweep(sweep, tracking_uri=tracking_uri)
    assert outcome.status == "FINISHED"

    # Every record at generations 1..3 once, with the values of an uninterrupted run.
    children = check_store(tracking_uri, sweep, outcome.parent_run_id)
    client = MlflowClient(tracking_uri)
    for point in sweep.trials:
        run = children[point.index]
        parts = client.download_artifacts(run.info.run_id, "records", str(tmp_path / "parts"))
        assert set(IMAGE_METRICS) <= set(read_parts(Path(parts).glob("*.parquet")).column_names)
        assert run.data.metrics.keys() == TRACKED
        assert run.data.tags["mad.device"] == "cpu"
        assert "mad.cuda_visible_devices" not in run.data.tags

        run_id = run.info.run_id
        # A grid every generation; snapshots at G1, every 2nd and the last.
        assert artifact_paths(client, run_id, "grids") == [
            f"grids/generation_{g:04d}.png" for g in (1, 2, 3)]
        assert artifact_paths(client, run_id, "snapshots") == [
            f"snapshots/generation_{g:04d}.pt" for g in (1, 2, 3)]
        downloads = tmp_path / f"downloads{point.index}"
        downloads.mkdir()
        for g in (1, 2, 3):
            with Image.open(client.download_artifacts(
                    run_id, f"grids/generation_{g:04d}.png", str(downloads))) as grid:
                assert grid.format == "PNG"
                grid.verify()
        snapshot = client.download_artifacts(run_id, "snapshots/generation_0003.pt",
                                             str(downloads))
        model = load_snapshot(snapshot)
        assert model.sample(4, 1.0, np.random.default_rng(0)).x.shape == (4, 1, 8, 8)

        # The resume point run_trial wrote: tensors and arrays only.
        state_file = Path(run.data.tags["mad.checkpoint"], STATE_FILE)
        torch.load(state_file, weights_only=True)
        state = load_state(state_file)
        assert (state["spec_hash"], state["generation"]) == (point.spec.spec_hash(), 3)

    # mad analyze draws the image metrics against generation per lambda, from MLflow.
    assert mad_cli.main(["analyze", "ddpm_digits", "--tracking-uri", tracking_uri]) == 0
    out = tmp_path / "mad_output" / "analysis" / "ddpm_digits"
    with Image.open(out / "generations" / "generations_all.png") as figure:
        assert figure.width > 1500  # the image metrics' panels, four to a row
    asymptotes = pd.read_csv(out / "asymptotes.csv")
    assert {"fid", "kid", "precision", "recall", "class_fidelity"} <= set(asymptotes["metric"])


class RunsACommand:
    """Unpickling this runs a shell command: what a doctored checkpoint could hold."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def torch_saved(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def torch_loaded_unrestricted(content: bytes):
    return torch.load(io.BytesIO(content), weights_only=False)


@pytest.mark.filterwarnings("ignore:`get_checkpoint` is meant")  # no Tune session here
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("dump, unrestricted_load",
                         [(pickle.dumps, pickle.loads), (torch_saved, torch_loaded_unrestricted)],
                         ids=["pickle", "torch.save"])
def test_a_checkpoint_holding_code_is_refused(tmp_path, dump, unrestricted_load):
    marker = tmp_path / "executed"
    payload = dump(RunsACommand(f"touch {marker}"))
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / STATE_FILE).write_bytes(payload)

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        restored_state(str(folder))  # what run_trial does with resume_from
    assert not marker.exists()

    # The payload is live: an unrestricted load runs it.
    unrestricted_load(payload)
    assert marker.exists()
