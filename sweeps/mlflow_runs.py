"""The MLflow layout of a sweep (the contract in docs/tracking.md).

One experiment per sweep name; one parent run per ``mad sweep`` invocation (reused by
``--resume``); one child run per trial, nested under the parent, found again by its
``mad.trial_index`` tag. Every function takes an explicit ``MlflowClient``: nothing
here touches MLflow's global "active run" state.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import math
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric, Run

from mad_core.record_table import PARTS_FOLDER, part_range
from mad_core.spec import TrialSpec
from sweeps.driver_lock import DRIVER_TAG, driver_tag
from sweeps.sweep_file import TRACKED_METRIC_PATTERN, Sweep
from sweeps.tracking_store import TrackingStoreError

# MLflow's SQL stores cannot hold an infinite float and store +-inf as +-float max; we do
# the same on the client so every store reads back the same value.
INFINITY_STAND_IN = sys.float_info.max
RUN_NAME_LENGTH = 200
# What a person compares in the UI: metrics logged at every generation unless a sweep
# file's tracked_metrics says otherwise. Complete records go to Parquet parts.
PRIMARY_METRICS = ("w2_sq", "fid", "precision", "recall", "modes_covered")
DEFAULT_SUMMARIES = ("mean", "median")
TRACKED_TAG = "mad.tracked_metrics"  # JSON list: the keys logged per generation, in order


def provenance_tags() -> dict[str, str]:
    """mad.version (installed package) and mad.commit (git HEAD, +dirty when the tree has
    uncommitted changes; 'unknown' outside a git checkout)."""
    try:
        version = importlib.metadata.version("mad-sweep")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    source = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        if git("status", "--porcelain", "--untracked-files=no"):
            commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"mad.version": version, "mad.commit": commit}


def encode_metric(value: float) -> float:
    """A record value as logged: +-inf become +-float max (see INFINITY_STAND_IN); nan stays."""
    value = float(value)
    return math.copysign(INFINITY_STAND_IN, value) if math.isinf(value) else value


def tracked_keys(record: Mapping[str, Any], selection: tuple[str, ...] | str | None
                 ) -> tuple[str, ...]:
    """The record metrics logged at every generation, in logging order.

    selection: a sweep's ``tracked_metrics``: None for DEFAULT_SUMMARIES of the
    PRIMARY_METRICS the record has (every ``_mean`` if it has none of them), "all" for
    every summary, or the keys themselves (those the record lacks are left out).
    """
    summaries = [key for key in record if TRACKED_METRIC_PATTERN.match(key)]
    if selection == "all":
        return tuple(summaries)
    if selection is None:
        chosen = [f"{metric}_{summary}" for metric in PRIMARY_METRICS
                  for summary in DEFAULT_SUMMARIES if f"{metric}_{summary}" in record]
        return tuple(chosen or [key for key in summaries if key.endswith("_mean")])
    return tuple(key for key in selection if key in record)


def tracked_values(record: Mapping[str, Any], keys: tuple[str, ...], timestamp_ms: int
                   ) -> list[Metric]:
    """The tracked metrics of one record at step = its generation (keys[-1] last: the
    marker of a stored generation, see ``last_logged_generation``)."""
    step = int(record["generation"])
    return [Metric(key, encode_metric(record[key]), timestamp_ms, step) for key in keys]


def spec_params(spec: TrialSpec) -> dict[str, str]:
    """The resolved spec flattened with dotted keys (data.dim, ...), values as strings;
    null values (a key the spec leaves unset, such as n_total beside n_real and n_syn)
    are left out, so the UI's columns hold only what a trial set."""
    flat = {}
    for key, value in spec.to_dict().items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            flat[key] = value
    return {key: str(value) for key, value in flat.items() if value is not None}


def grid_csv(sweep: Sweep) -> str:
    """grid.csv: trial_index, one column per axis (non-scalar values as JSON; empty where
    an extra trial leaves the axis unset), spec_hash."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial_index", *sweep.axes, "spec_hash"])
    for point in sweep.trials:
        values = [point.coordinates.get(axis, "") for axis in sweep.axes]
        cells = [v if isinstance(v, (str, int, float)) else json.dumps(v) for v in values]
        writer.writerow([point.index, *cells, point.spec.spec_hash()])
    return out.getvalue()


# MLflow 3's UI opens an experiment in its GenAI view unless this tag says otherwise; a
# sweep's runs are model-training runs, compared by their params and metrics.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def open_experiment(client: MlflowClient, sweep: Sweep) -> str:
    """The id of the sweep's experiment, created on first use (tagged to open in the
    UI's model-training view).

    With a sqlite store its artifacts go to mlruns/<name> beside the database file
    (MLflow's default, ./mlruns, would follow the folder the driver happens to run in).
    """
    experiment = client.get_experiment_by_name(sweep.name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise TrackingStoreError(f"MLflow experiment {sweep.name!r} is deleted: restore "
                                     f"it (mlflow experiments restore) or rename the sweep")
        for key, value in EXPERIMENT_KIND.items():
            if experiment.tags.get(key) != value:  # made by an earlier version
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    artifacts = None
    if client.tracking_uri.startswith("sqlite:///"):
        database = Path(client.tracking_uri.removeprefix("sqlite:///"))
        artifacts = str(database.parent / "mlruns" / sweep.name)
    return client.create_experiment(sweep.name, artifact_location=artifacts,
                                    tags={"mad.sweep": sweep.name, **EXPERIMENT_KIND})


def start_parent_run(client: MlflowClient, experiment_id: str, sweep: Sweep,
                     tune_path: str, provenance: dict[str, str]) -> str:
    """A new parent run for one invocation, with sweep.yaml and grid.csv; its run id.

    provenance: provenance_tags()."""
    tags = {"mad.role": "sweep", "mad.sweep": sweep.name, **provenance,
            DRIVER_TAG: driver_tag(),
            "mad.grid_hash": sweep.grid_hash, "mad.trials": str(len(sweep.trials)),
            "mad.tune_path": tune_path}
    if sweep.description:
        tags["mlflow.note.content"] = sweep.description
    run = client.create_run(experiment_id, run_name=f"{sweep.name} "
                            f"{time.strftime('%Y-%m-%d %H:%M:%S')}", tags=tags)
    run_id = run.info.run_id
    client.log_text(run_id, sweep.text, "sweep.yaml")
    client.log_text(run_id, grid_csv(sweep), "grid.csv")
    return run_id


def latest_parent_run(client: MlflowClient, experiment_name: str) -> Run | None:
    """The most recently started parent run of a sweep, or None."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id],
                              filter_string="tags.`mad.role` = 'sweep'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> dict[int, Run]:
    """{trial_index: run} of the parent's child runs."""
    found, token = {}, None
    while True:
        page = client.search_runs([experiment_id], page_token=token, max_results=1000,
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
        found.update({int(run.data.tags["mad.trial_index"]): run for run in page})
        token = page.token
        if not token:
            return found


def last_logged_generation(client: MlflowClient, run_id: str, marker: str) -> int:
    """The highest generation whose tracked metrics the run holds whole (0 for none).

    marker: the last tracked key. MLflow writes a batch's metrics in order (on a SQL
    store in one transaction) and every batch holds whole generations, so a generation
    whose marker is stored is stored whole."""
    return max((m.step for m in client.get_metric_history(run_id, marker)), default=0)


def last_stored_record(client: MlflowClient, run_id: str) -> int:
    """The highest generation of the run's record parts (0 for none)."""
    ranges = [part_range(PurePosixPath(info.path).name)
              for info in client.list_artifacts(run_id, PARTS_FOLDER)]
    return max((last for _, last in filter(None, ranges)), default=0)
