"""benchmarks/tracking_store.py: the pure parts (no store is started here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "tracking_store.py"


@pytest.fixture(scope="module")
def bench():
    """The script as a module (registered while it runs: its dataclass looks itself up)."""
    spec = importlib.util.spec_from_file_location("tracking_store", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_postgres_uri_names_the_psycopg2_driver(bench):
    assert bench.postgres_uri(5432) == "postgresql+psycopg2://mad@127.0.0.1:5432/mlflow"
    assert (bench.postgres_uri(5433, host="db", user="u", database="d", password="p")
            == "postgresql+psycopg2://u:p@db:5433/d")


def test_workloads_fit_one_log_batch_call(bench):
    for workload in bench.WORKLOADS:
        assert workload.metrics * workload.generations_per_call <= 1000
        assert len(set(workload.keys)) == workload.metrics
    with pytest.raises(ValueError, match="at most 1,000 metrics"):
        bench.Workload("too_big", metrics=30, generations_per_call=34)


def test_report_gives_medians_against_direct_sqlite_with_one_writer(bench):
    stores = ["direct sqlite", "server postgres"]
    results = {}
    for workload in bench.WORKLOADS:
        for writers, factor in ((1, 1.0), (4, 3.0)):
            results[("direct sqlite", workload.name, writers)] = {
                "metrics_per_s": [900.0, 1000.0, 5000.0], "generations_per_s": [1.0],
                "cpu_ms_per_1k": [{"writers": 700.0}]}
            results[("server postgres", workload.name, writers)] = {
                "metrics_per_s": [500.0 * factor, 500.0 * factor, 400.0 * factor],
                "generations_per_s": [1.0],
                "cpu_ms_per_1k": [{"writers": 1.0, "server": 3.0, "postgres": 5.0},
                                  {"writers": 2.0, "server": 4.0, "postgres": 6.0},
                                  {"writers": 9.0, "server": 9.0, "postgres": 9.0}]}
    lines = bench.report(results, stores, [1, 4])
    rows = {(row[0], row[1], " ".join(row[2:4])): row[4:]
            for row in (line.split() for line in lines[2:])}
    assert len(rows) == len(lines) - 2 == 2 * len(bench.WORKLOADS) * len(stores)
    name = bench.WORKLOADS[0].name
    # ratio, then CPU of writers, server, postgres ("-": not a part of that store)
    assert rows[(name, "1", "direct sqlite")][-4:] == ["1.00x", "700", "-", "-"]
    assert rows[(name, "1", "server postgres")][-4:] == ["0.50x", "2", "4", "6"]
    assert rows[(name, "4", "server postgres")][-4] == "1.50x"
