"""Which MLflow tracking store a sweep writes to, and whether it answers.

Precedence: --tracking-uri, the sweep file's tracking_uri, $MLFLOW_TRACKING_URI, then
``sqlite:///mlflow.db`` in the working directory (MLflow's own default). A relative
sqlite path is made absolute, so the driver, a resumed driver and ``mad ui`` started
in the same directory all open the same file.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from mlflow import MlflowClient

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
HEALTH_TIMEOUT_S = 5.0


class TrackingStoreError(RuntimeError):
    """The tracking store cannot be used; the message says why and what to do."""


def resolve_tracking_uri(flag: str | None, sweep_value: str | None) -> str:
    """The tracking URI a sweep uses (see the module docstring for the precedence)."""
    uri = flag or sweep_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).absolute())
    return uri


def check_tracking_store(uri: str) -> None:
    """Raise TrackingStoreError unless the store at `uri` can be reached and used.

    A tracking server must answer /health within a few seconds (MLflow's own client
    would retry for minutes); a sqlite file must be creatable; anything else must
    answer a search for experiments.
    """
    if uri.startswith(("http://", "https://")):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=HEALTH_TIMEOUT_S) as response:
                answer = response.read(100).decode(errors="replace").strip()
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise TrackingStoreError(
                f"MLflow tracking server {uri} is unreachable ({reason}). Start it (see "
                f"docs/cluster.md), or pass --tracking-uri sqlite:///mlflow.db to track "
                f"into a local file") from None
        if answer != "OK":
            raise TrackingStoreError(f"{health} answered {answer!r}, not OK: is {uri} an "
                                     f"MLflow tracking server?")
        return
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise TrackingStoreError(f"tracking URI {uri}: folder {folder} does not exist; "
                                     f"create it or choose another path")
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as error:  # MLflow raises many kinds for a store it cannot open
        raise TrackingStoreError(f"tracking URI {uri} cannot be used: {error}") from None
