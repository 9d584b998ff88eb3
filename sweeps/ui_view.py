"""The sweep's saved view in the MLflow UI: its grid axes and key metrics as columns.

MLflow 3.17's runs page keeps its layout (columns, their order and widths, sort) in the
browser's localStorage; the only layout it reads from the store is a *saved view*: an
experiment tag ``mlflow.sharedViewState.<id>`` holding
``{"name", "createdAt", "updatedAt", "state"}`` (``state``: a JSON string of the page's
search facets and UI state). The page lists saved views under "Views" and opens one from
``#/experiments/<id>/runs?viewStateShareKey=<id>``; that is what "Save view" in the UI
writes, and what this module writes for a sweep, under the fixed id VIEW_ID.

The view shows one column per grid axis (the trial param of the axis), the tracked
metrics, the trials sorted by the key metric (the stop rule's metric where the trials
track it, else the first tracked one) and so every trial as a row of its own: the page nests child runs under a collapsed parent only while it
sorts by start time. A view cannot expand a parent instead: the page restores
``runsExpanded`` (like pinned and hidden runs) only from localStorage, never from a
saved view.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlencode

from mlflow import MlflowClient
from mlflow.entities import Run

from sweeps.mlflow_runs import PRIMARY_METRICS, TRACKED_TAG

VIEW_ID = "mad-sweep-grid"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_ID}"  # the UI's prefix for saved views
SHARE_KEY_PARAM = "viewStateShareKey"  # the runs page's query parameter naming a view
# Without it MLflow 3 may open an experiment in its GenAI view (see EXPERIMENT_KIND in
# mlflow_runs).
TRAINING_VIEW = {"workflowType": "machine_learning"}
# Summaries of these metrics are better when higher: the view sorts them descending.
HIGHER_IS_BETTER = ("precision", "recall", "modes_covered")
MAX_METRIC_COLUMNS = 6
MAX_PARAM_COLUMNS = 30
RUNS_SCANNED = 1000  # the newest trial runs the columns are taken from
RUN_NAME_COLUMN = "attributes.`Run Name`"


def column(kind: str, key: str) -> str:
    """The UI's id of a runs-table column: ``params.`lam```, ``metrics.`w2_sq_mean```."""
    return f"{kind}.`{key}`"


@dataclass(frozen=True)
class SweepColumns:
    """What the view shows.

    Attributes:
        axes: the grid axes, in grid order.
        params: the trial params of the axes (``data.dim`` for axis ``data.dim``; for an
            axis whose values are whole sections, such as ``data``, the section's params
            that differ between trials).
        metrics: the tracked metrics shown (at most MAX_METRIC_COLUMNS), the key metric
            (the one the view sorts by) first.
        run_name_width: pixels for the run names (the trials' coordinates).
    """

    axes: tuple[str, ...]
    params: tuple[str, ...]
    metrics: tuple[str, ...]
    run_name_width: int = 260

    @property
    def key_metric(self) -> str | None:
        return self.metrics[0] if self.metrics else None

    def name(self) -> str:
        """The view's name in the UI's "Views" list."""
        return "grid: " + (" × ".join(self.axes) or "one trial")


def view_state(columns: SweepColumns) -> dict:
    """The runs page's state the view sets (the keys of MLflow's search facets and UI
    state; the page fills in defaults for the rest)."""
    shown = ([column("params", p) for p in columns.params]
             + [column("metrics", m) for m in columns.metrics])
    state = {"selectedColumns": shown,
             "columnOrder": [RUN_NAME_COLUMN, *shown],
             "columnWidths": {RUN_NAME_COLUMN: columns.run_name_width}}
    if columns.key_metric:
        state["orderByKey"] = column("metrics", columns.key_metric)
        state["orderByAsc"] = not columns.key_metric.startswith(HIGHER_IS_BETTER)
    return state


def _ordered_union(groups: Iterable[Iterable[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for group in groups:
        seen.update((key, None) for key in group if key not in seen)
    return list(seen)


def _axis_params(axis: str, runs: list[Run]) -> list[str]:
    if any(axis in run.data.params for run in runs):
        return [axis]
    # A section axis (data: [{...}, {...}]): the section's params that differ.
    section = sorted({key for run in runs for key in run.data.params
                      if key.startswith(f"{axis}.")})
    varying = [key for key in section
               if len({run.data.params.get(key) for run in runs}) > 1]
    return varying or section


def _tracked(run: Run) -> list[str]:
    try:
        return list(json.loads(run.data.tags[TRACKED_TAG]))
    except (KeyError, ValueError, TypeError):
        return sorted(run.data.metrics)


def _metric_columns(tracked: list[str], stop_metrics: list[str]) -> tuple[str, ...]:
    """The tracked metrics shown, the key metric first: the trials' stop rule metric
    where they track it, else the first tracked one."""
    key = next((metric for metric in stop_metrics if metric in tracked), None)
    if len(tracked) > MAX_METRIC_COLUMNS:
        means = [f"{metric}_mean" for metric in PRIMARY_METRICS if f"{metric}_mean" in tracked]
        tracked = means or tracked
    shown = [key] if key else []
    shown += [metric for metric in tracked if metric != key]
    return tuple(shown[:MAX_METRIC_COLUMNS])


def trial_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """The experiment's newest trial runs (child runs tagged mad.role=trial), newest
    first; at most RUNS_SCANNED."""
    return list(client.search_runs([experiment_id], filter_string="tags.`mad.role` = 'trial'",
                                   order_by=["attributes.start_time DESC"],
                                   max_results=RUNS_SCANNED))


def sweep_columns(runs: list[Run]) -> SweepColumns:
    """The columns of a sweep's trial runs: the axes of their mad.coordinates tags and
    the metrics of their mad.tracked_metrics tags (their logged metrics where a run has
    no such tag), each in order of first appearance, but the key metric first (see
    ``_metric_columns``)."""
    coordinates = []
    for run in runs:
        try:
            coordinates.append(list(json.loads(run.data.tags.get("mad.coordinates", "{}"))))
        except ValueError:
            continue
    axes = _ordered_union(coordinates)
    params = _ordered_union(_axis_params(axis, runs) for axis in axes)[:MAX_PARAM_COLUMNS]
    stop_metrics = [run.data.params["stop.metric"] for run in runs
                    if "stop.metric" in run.data.params]
    metrics = _metric_columns(_ordered_union(_tracked(run) for run in runs),
                              [m for m, _ in Counter(stop_metrics).most_common()])
    longest = max((len(run.info.run_name or "") for run in runs), default=0)
    return SweepColumns(tuple(axes), tuple(params), metrics,
                        run_name_width=min(480, max(160, 6 * longest + 40)))


def write_view(client: MlflowClient, experiment_id: str, columns: SweepColumns) -> bool:
    """Store the view as the experiment's tag VIEW_TAG, unless it holds this view
    already; True when written. A view edited in the UI and saved under its name is
    replaced; views saved under other names are left alone."""
    state = json.dumps(view_state(columns), separators=(",", ":"))
    name = columns.name()
    current = client.get_experiment(experiment_id).tags.get(VIEW_TAG)
    created = None
    if current is not None:
        try:
            envelope = json.loads(current)
            if envelope.get("state") == state and envelope.get("name") == name:
                return False
            created = int(envelope["createdAt"])
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    now = int(time.time() * 1000)
    envelope = {"name": name, "createdAt": created or now, "updatedAt": now, "state": state}
    client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(envelope))
    return True


def runs_page(experiment_id: str, share_key: str | None = None) -> str:
    """The UI's address (after host and port) of the experiment's runs in the
    model-training view, opened in saved view `share_key` when given."""
    query = {**TRAINING_VIEW, **({SHARE_KEY_PARAM: share_key} if share_key else {})}
    return f"#/experiments/{experiment_id}/runs?{urlencode(query)}"


def refresh_sweep_view(client: MlflowClient, experiment_id: str) -> str:
    """Write (or update) the sweep's view from its trial runs in the store and return
    the runs page to open (``runs_page``): in the view once the experiment has trial
    runs, plain before that."""
    runs = trial_runs(client, experiment_id)
    if not runs:
        return runs_page(experiment_id)
    write_view(client, experiment_id, sweep_columns(runs))
    return runs_page(experiment_id, VIEW_ID)


def ui_page(client: MlflowClient, experiment_name: str | None) -> str | None:
    """What `mad ui [NAME]` opens: the runs page of experiment NAME in the sweep's view
    (refreshed from the store), the experiment list without a name; None when there is
    no experiment NAME. A store that refuses the write (a read-only tracking server)
    gets the runs page without the view."""
    from mlflow.exceptions import MlflowException

    if not experiment_name:
        return f"#/experiments?{urlencode(TRAINING_VIEW)}"
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    try:
        return refresh_sweep_view(client, experiment.experiment_id)
    except MlflowException:
        return runs_page(experiment.experiment_id)
