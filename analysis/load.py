"""A sweep's MLflow records as one tidy table: a row per trial x generation.

    sweep = load_sweep("gaussian_fresh_demo", "sqlite:///mlflow.db")
    sweep.records      # run_id, ..., lam, n_real, data.dim, ..., generation, w2_sq_mean, ...

The layout read is the one docs/tracking.md fixes: trial runs tagged ``mad.role=trial``
under a parent run tagged ``mad.role=sweep``; parameters are the resolved trial spec with
dotted keys (cast back to the spec's types here); a trial's records are its Parquet
parts (``records/``, complete and exact), or, for a run logged before parts existed,
its metric histories (every record key at step = generation). A sweep is named by its experiment name (every trial in it)
or by a parent run id (the trials of that one ``mad sweep`` invocation). Loading is
cached (see ``analysis.cache``) and never runs a trial.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import requests
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException

from analysis.cache import RecordsCache, sweep_fingerprint
from analysis.history import fetch_histories
from analysis.params import FIELD_KINDS, ParameterError, parse_parameter
from mad_core.record_table import PARTS_FOLDER, part_range, read_parts

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
UNFINISHED_STATUSES = ("RUNNING", "SCHEDULED")
# SQL stores keep +-inf (log det of a singular covariance) as +-the largest float.
SQL_INFINITY = sys.float_info.max
IDENTITY_COLUMNS = ("run_id", "parent_run_id", "trial_id", "status", "spec_hash")
# A record key that is also a parameter (n_real: the real samples in that generation's
# training set, n_init at G1; chains) gets this suffix as a metric column.
CLASHING_METRIC_SUFFIX = "_record"
PAGE_SIZE = 10_000


class SweepLoadError(RuntimeError):
    """The sweep cannot be loaded: unreachable store, unknown sweep, or no trial runs."""


@dataclass(frozen=True)
class Sweep:
    """A loaded sweep.

    Attributes:
        records: one row per trial x generation: IDENTITY_COLUMNS, the typed trial
            parameters (dotted spec keys), ``generation`` (1-based) and every metric.
        parameters: the parameter columns of ``records``.
        metrics: the metric columns of ``records``.
        axes: the grid coordinates (keys of the trials' ``mad.coordinates`` tags).
        parent_run_ids: the sweep's parent runs, newest first.
    """

    name: str
    experiment_id: str
    tracking_uri: str
    records: pd.DataFrame
    parameters: tuple[str, ...]
    metrics: tuple[str, ...]
    axes: tuple[str, ...]
    parent_run_ids: tuple[str, ...] = field(default=())

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial: identity and parameter columns, plus ``generations_logged``."""
        logged = self.records.groupby("run_id")["generation"].max().rename("generations_logged")
        first = self.records.drop_duplicates("run_id").set_index("run_id")
        columns = [c for c in (*IDENTITY_COLUMNS, *self.parameters) if c != "run_id"]
        return first[columns].join(logged).reset_index()

    def metadata(self) -> dict:
        """Everything but the records, as JSON-ready values (for the cache)."""
        return {"name": self.name, "experiment_id": self.experiment_id,
                "tracking_uri": self.tracking_uri, "parameters": list(self.parameters),
                "metrics": list(self.metrics), "axes": list(self.axes),
                "parent_run_ids": list(self.parent_run_ids)}

    @classmethod
    def from_metadata(cls, records: pd.DataFrame, metadata: dict) -> "Sweep":
        """The inverse of ``metadata``."""
        return cls(records=records, **{key: tuple(value) if isinstance(value, list) else value
                                       for key, value in metadata.items()})


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """The URI given, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db (docs/tracking.md)."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def check_store_reachable(tracking_uri: str) -> None:
    """Fail early and clearly where MLflow would create an empty store or retry for minutes.

    Raises:
        SweepLoadError: a sqlite file or store folder that does not exist, or a tracking
            server that does not answer /health.
    """
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        path = tracking_uri.removeprefix("sqlite:///")
        if path != ":memory:" and not Path(path).is_file():
            raise SweepLoadError(f"no MLflow database at {Path(path).resolve()} (tracking URI "
                                 f"{tracking_uri}); run `mad sweep` first, or pass the store's "
                                 f"URI with --tracking-uri")
    elif parsed.scheme in ("http", "https"):
        try:
            requests.get(tracking_uri.rstrip("/") + "/health", timeout=10).raise_for_status()
        except requests.RequestException as error:
            raise SweepLoadError(f"cannot reach the MLflow tracking server at {tracking_uri}: "
                                 f"{error}; start it (`mad ui`) or fix --tracking-uri") from None
    elif parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme == "file" else tracking_uri
        if not Path(path).is_dir():
            raise SweepLoadError(f"no MLflow file store at {Path(path).resolve()} (tracking "
                                 f"URI {tracking_uri}); fix --tracking-uri")


def _search_all_runs(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, ViewType.ACTIVE_ONLY,
                                  max_results=PAGE_SIZE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _find_sweep(client: MlflowClient, sweep: str, tracking_uri: str) -> tuple:
    """(experiment, parent run id or None) for an experiment name or a parent run id."""
    experiment = client.get_experiment_by_name(sweep)
    if experiment is not None:
        return experiment, None
    if RUN_ID_PATTERN.match(sweep):
        try:
            run = client.get_run(sweep)
        except MlflowException:
            run = None
        if run is not None:
            if run.data.tags.get("mad.role") != "sweep":
                raise SweepLoadError(f"run {sweep} is not a sweep's parent run (its tag "
                                     f"mad.role is {run.data.tags.get('mad.role')!r}, not "
                                     f"'sweep'); give the parent run or the experiment name")
            return client.get_experiment(run.info.experiment_id), sweep
    names = sorted(e.name for e in client.search_experiments(max_results=100))
    listing = ", ".join(names) if names else "none"
    raise SweepLoadError(f"no experiment or parent run {sweep!r} in {tracking_uri}; "
                         f"experiments there: {listing}")


def _typed_column(key: str, values: list):
    kind = FIELD_KINDS.get(key)
    dtype = {int: "Int64", float: "float64", bool: "boolean"}.get(kind)
    if dtype is not None:
        return pd.array(values, dtype=dtype)
    return pd.Series(values, dtype=object).infer_objects()


def _trial_table(runs: list[Run]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(one row per trial run: identity + typed parameters, parameter names, grid axes)."""
    parameter_names = sorted({key for run in runs for key in run.data.params})
    columns: dict[str, list] = {name: [] for name in (*IDENTITY_COLUMNS, *parameter_names)}
    axes: dict[str, None] = {}
    for run in runs:
        tags = run.data.tags
        columns["run_id"].append(run.info.run_id)
        columns["parent_run_id"].append(tags.get("mlflow.parentRunId"))
        columns["trial_id"].append(tags.get("mad.trial_id"))
        columns["status"].append(run.info.status)
        columns["spec_hash"].append(tags.get("mad.spec_hash"))
        axes.update(dict.fromkeys(json.loads(tags.get("mad.coordinates") or "{}")))
        for name in parameter_names:
            text = run.data.params.get(name)
            try:
                columns[name].append(None if text is None else parse_parameter(name, text))
            except ParameterError as error:
                raise SweepLoadError(f"trial run {run.info.run_id}: {error}") from None
    table = pd.DataFrame({name: (_typed_column(name, values) if name in parameter_names
                                 else values) for name, values in columns.items()})
    return table, parameter_names, list(axes)


def _wide_metrics(histories: pd.DataFrame) -> pd.DataFrame:
    """Long (run_id, key, step, value, timestamp) -> wide (run_id, generation, metrics...).
    A generation logged twice (a trial re-run from a checkpoint) keeps its latest value."""
    latest = (histories.sort_values("timestamp")
              .drop_duplicates(["run_id", "key", "step"], keep="last"))
    values = latest["value"].where(latest["value"].abs() < SQL_INFINITY,
                                   np.copysign(math.inf, latest["value"]))
    wide = (latest.assign(value=values)
            .pivot(index=["run_id", "step"], columns="key", values="value")
            .rename_axis(columns=None).reset_index().rename(columns={"step": "generation"}))
    return wide


def _record_parts(client: MlflowClient, run: Run) -> pd.DataFrame | None:
    """(generation, record keys...) from a run's Parquet parts; None if it has none.
    Parts in a local artifact folder are read in place; others are downloaded."""
    location = urlparse(run.info.artifact_uri)
    if location.scheme in ("", "file"):
        folder = Path(location.path) / PARTS_FOLDER
        paths = sorted(p for p in folder.glob("*.parquet") if part_range(p.name))
        return read_parts(paths).to_pandas() if paths else None
    names = [info.path for info in client.list_artifacts(run.info.run_id, PARTS_FOLDER)
             if part_range(info.path.rsplit("/", 1)[-1])]
    if not names:
        return None
    with tempfile.TemporaryDirectory() as folder:
        local = Path(client.download_artifacts(run.info.run_id, PARTS_FOLDER, folder))
        return read_parts(local / name.rsplit("/", 1)[-1] for name in names).to_pandas()


def _wide_records(client: MlflowClient, trial_runs: list[Run], generations: int
                  ) -> pd.DataFrame:
    """(run_id, generation, record keys...) of every trial run: its parts where it has
    them, else its metric histories."""
    tables, without_parts = [], []
    for run in trial_runs:
        parts = _record_parts(client, run)
        if parts is None:
            without_parts.append(run)
        else:
            tables.append(parts.assign(run_id=run.info.run_id))
    if without_parts:
        metric_names = sorted({key for run in without_parts for key in run.data.metrics})
        histories = fetch_histories(client, [run.info.run_id for run in without_parts],
                                    metric_names, generations)
        tables.append(_wide_metrics(histories))
    tables = [table for table in tables if not table.empty]
    if not tables:
        return pd.DataFrame({"run_id": pd.Series(dtype=object),
                             "generation": pd.Series(dtype="int64")})
    return pd.concat(tables, ignore_index=True).astype({"generation": "int64"})


def fetch_sweep(client: MlflowClient, experiment, parent_run_id: str | None,
                trial_runs: list[Run], parent_runs: list[Run], tracking_uri: str) -> Sweep:
    """Read parameters and records of the trial runs (no cache)."""
    trials, parameter_names, axes = _trial_table(trial_runs)
    if "generations" not in trials or trials["generations"].isna().any():
        raise SweepLoadError(f"trial runs of {experiment.name!r} lack the parameter "
                             f"'generations' of their spec; were they logged by `mad sweep`?")
    wide = _wide_records(client, trial_runs, int(trials["generations"].max()))
    metric_names = sorted(c for c in wide.columns if c not in ("run_id", "generation"))
    clashing = {m: m + CLASHING_METRIC_SUFFIX for m in metric_names if m in trials.columns}
    metric_names = [clashing.get(m, m) for m in metric_names]
    metrics = wide.rename(columns=clashing)
    records = (trials.merge(metrics, on="run_id", how="inner")
               .sort_values(["run_id", "generation"], ignore_index=True))
    records = records[[*trials.columns, "generation",
                       *[m for m in metric_names if m in records.columns]]]
    parents = sorted(parent_runs, key=lambda run: run.info.start_time or 0, reverse=True)
    return Sweep(name=experiment.name, experiment_id=experiment.experiment_id,
                 tracking_uri=tracking_uri, records=records,
                 parameters=tuple(parameter_names),
                 metrics=tuple(m for m in metric_names if m in records.columns),
                 axes=tuple(axes),
                 parent_run_ids=(parent_run_id,) if parent_run_id else
                 tuple(run.info.run_id for run in parents))


def load_sweep(sweep: str, tracking_uri: str | None = None, *, cache_dir: Path | None = None,
               refresh: bool = False) -> Sweep:
    """Load a sweep's trial records from MLflow, through the records cache.

    Args:
        sweep: an experiment name, or the run id of a sweep's parent run.
        tracking_uri: see ``resolve_tracking_uri``.
        cache_dir: where cached tables live; None disables the cache.
        refresh: reload from MLflow even when the cache is current.
    Raises:
        SweepLoadError: with what is wrong and how to fix it.
    """
    tracking_uri = resolve_tracking_uri(tracking_uri)
    check_store_reachable(tracking_uri)
    client = MlflowClient(tracking_uri)
    try:
        experiment, parent_run_id = _find_sweep(client, sweep, tracking_uri)
        trial_filter = "tags.`mad.role` = 'trial'"
        if parent_run_id:
            trial_filter += f" and tags.`mlflow.parentRunId` = '{parent_run_id}'"
        trial_runs = _search_all_runs(client, experiment.experiment_id, trial_filter)
        parent_runs = _search_all_runs(client, experiment.experiment_id,
                                       "tags.`mad.role` = 'sweep'")
    except MlflowException as error:
        raise SweepLoadError(f"MLflow at {tracking_uri} failed: {error.message}") from None
    if not trial_runs:
        raise SweepLoadError(f"experiment {experiment.name!r} in {tracking_uri} has no trial "
                             f"runs (tag mad.role = 'trial'"
                             + (f" under parent run {parent_run_id}" if parent_run_id else "")
                             + "); is it a sweep written by `mad sweep`?")
    fingerprint = sweep_fingerprint(tracking_uri, experiment, parent_run_id, trial_runs)
    live = any(run.info.status in UNFINISHED_STATUSES for run in trial_runs)
    cache = None if cache_dir is None else RecordsCache(cache_dir, tracking_uri,
                                                        experiment, parent_run_id)
    if cache is not None and not refresh and not live:
        cached = cache.read(fingerprint)
        if cached is not None:
            return Sweep.from_metadata(*cached)
    loaded = fetch_sweep(client, experiment, parent_run_id, trial_runs, parent_runs,
                         tracking_uri)
    if cache is not None:
        cache.write(fingerprint, loaded.records, loaded.metadata())
    return loaded
