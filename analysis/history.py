"""Metric histories of many runs, fetched in bulk where the tracking store allows it.

MLflow's public client reads one (run, metric) history per call: a sweep of 300 trials
with 30 metrics is 9,000 calls. Two store types answer many runs at once:

- SQL stores (sqlite, postgresql, mysql, mssql): one query for every metric of a chunk of
  runs, on the store's own table model (``SqlMetric``) and session, selecting plain columns.
  The store's ``get_metric_history_bulk`` does one query per metric but builds an ORM
  object per value, which costs as much as the per-history calls (benchmarks/analyze.py);
- MLflow tracking servers (http, https): the server's ``get-history-bulk`` endpoint (the
  one its UI uses), up to 100 runs and 25,000 values per request.

Any other store (a file store, Databricks) falls back to one call per history.
Every fetcher returns a long table with columns run_id, key, step, value, timestamp.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.store.tracking.dbmodels.models import SqlMetric
from mlflow.store.tracking.rest_store import RestStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.rest_utils import http_request, verify_rest_response

COLUMNS = ("run_id", "key", "step", "value", "timestamp")
SQL_RUNS_PER_QUERY = 500  # keeps the IN (...) list far below every database's limit
SERVER_RUNS_PER_REQUEST = 100  # the server's limits for get-history-bulk
SERVER_VALUES_PER_REQUEST = 25_000
SERVER_BULK_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
# Room per run for values beyond one per generation in server answers, should a
# generation be logged twice (docs/tracking.md promises once; the loader keeps the latest).
RELOGGED_ROOM = 2


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _frame(rows: Iterable[tuple]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(COLUMNS))


def per_history(client: MlflowClient, run_ids: list[str], keys: list[str]) -> pd.DataFrame:
    """One ``get_metric_history`` call per (run, key): works with every store."""
    return _frame((run_id, m.key, m.step, m.value, m.timestamp)
                  for run_id in run_ids for key in keys
                  for m in client.get_metric_history(run_id, key))


def sql_bulk(store: SqlAlchemyStore, run_ids: list[str], keys: list[str]) -> pd.DataFrame:
    """One SQL query per chunk of runs, every key at once, read straight into columns."""
    frames = []
    with store.ManagedSessionMaker() as session:
        for chunk in chunks(run_ids, SQL_RUNS_PER_QUERY):
            query = (session.query(SqlMetric.run_uuid.label("run_id"), SqlMetric.key,
                                   SqlMetric.step, SqlMetric.value, SqlMetric.timestamp,
                                   SqlMetric.is_nan)
                     .filter(SqlMetric.run_uuid.in_(chunk), SqlMetric.key.in_(keys)))
            frames.append(pd.read_sql(query.statement, session.connection()))
    table = pd.concat(frames, ignore_index=True)
    # The SQL stores keep nan as value 0 with is_nan set.
    table["value"] = table["value"].where(~table.pop("is_nan").astype(bool), np.nan)
    return table


def server_bulk(store: RestStore, run_ids: list[str], keys: list[str],
                generations: int) -> pd.DataFrame:
    """One request per (key, chunk of runs) to an MLflow tracking server."""
    values_per_run = generations * RELOGGED_ROOM
    runs_per_request = max(1, min(SERVER_RUNS_PER_REQUEST,
                                  SERVER_VALUES_PER_REQUEST // values_per_run))
    rows = []
    for key in keys:
        for chunk in chunks(run_ids, runs_per_request):
            params = [("run_id", run_id) for run_id in chunk]
            params += [("metric_key", key), ("max_results", SERVER_VALUES_PER_REQUEST)]
            response = http_request(store.get_host_creds(), SERVER_BULK_ENDPOINT, "GET",
                                    params=params)
            metrics = verify_rest_response(response, SERVER_BULK_ENDPOINT).json().get("metrics", [])
            if len(metrics) >= SERVER_VALUES_PER_REQUEST:
                raise RuntimeError(f"metric {key}: the server capped its answer at "
                                   f"{SERVER_VALUES_PER_REQUEST} values: more than {RELOGGED_ROOM} "
                                   f"values per generation in runs of {generations} generations")
            rows.extend((m["run_id"], m["key"], int(m.get("step", 0)), float(m["value"]),
                         int(m["timestamp"])) for m in metrics)
    return _frame(rows)


def fetch_histories(client: MlflowClient, run_ids: list[str], keys: list[str],
                    generations: int) -> pd.DataFrame:
    """Every value of every key for the runs, by the fastest way the store offers.

    Args:
        generations: the most generations any of the runs has (from its spec), used to
            size requests and to detect truncated answers.
    Returns:
        Long table (run_id, key, step, value, timestamp), one row per logged value.
    """
    store = client._tracking_client.store  # the client's own store object (no public accessor)
    if isinstance(store, SqlAlchemyStore):
        return sql_bulk(store, run_ids, keys)
    if isinstance(store, RestStore):
        return server_bulk(store, run_ids, keys, generations)
    return per_history(client, run_ids, keys)
