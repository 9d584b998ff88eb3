"""A parquet cache of loaded sweep tables, keyed by the sweep's last update.

A cached table is reused only when the sweep has not changed since it was written. The
"last update" of a sweep is its fingerprint: the experiment's ``last_update_time`` and,
for every trial run, its id, status and end time. A new, finished, failed or deleted
trial changes it. A sweep with a trial still RUNNING is never served from the cache
(its metrics grow without changing the fingerprint); the loader decides that.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
from mlflow.entities import Experiment, Run

FORMAT_VERSION = 1  # bump when the table's layout changes: older files are then ignored


def _digest(content) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def sweep_fingerprint(tracking_uri: str, experiment: Experiment, parent_run_id: str | None,
                      trial_runs: list[Run]) -> str:
    """Hex digest that changes whenever the sweep's trial runs or their states change."""
    runs = sorted((run.info.run_id, run.info.status, run.info.end_time) for run in trial_runs)
    return _digest({"format": FORMAT_VERSION, "uri": tracking_uri,
                    "experiment": experiment.experiment_id,
                    "updated": experiment.last_update_time, "parent": parent_run_id,
                    "runs": runs})


class RecordsCache:
    """The cached table of one sweep (experiment, or one parent run) of one store:
    ``<directory>/<experiment name>-<id>-<store digest>.parquet`` and a ``.json`` beside it
    holding the fingerprint and the sweep's metadata."""

    def __init__(self, directory: Path, tracking_uri: str, experiment: Experiment,
                 parent_run_id: str | None):
        safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", experiment.name)
        store = _digest([tracking_uri, parent_run_id])[:10]
        stem = Path(directory) / f"{safe_name}-{experiment.experiment_id}-{store}"
        self.table_path = stem.with_suffix(".parquet")
        self.metadata_path = stem.with_suffix(".json")

    def read(self, fingerprint: str) -> tuple[pd.DataFrame, dict] | None:
        """(records, metadata) when the cache holds this fingerprint, else None."""
        if not (self.metadata_path.is_file() and self.table_path.is_file()):
            return None
        saved = json.loads(self.metadata_path.read_text())
        if saved.get("fingerprint") != fingerprint:
            return None
        return pd.read_parquet(self.table_path), saved["sweep"]

    def write(self, fingerprint: str, records: pd.DataFrame, metadata: dict) -> None:
        self.table_path.parent.mkdir(parents=True, exist_ok=True)
        records.to_parquet(self.table_path, index=False)
        self.metadata_path.write_text(json.dumps({"fingerprint": fingerprint,
                                                  "sweep": metadata}, indent=1))
