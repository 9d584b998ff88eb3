"""Sweep files: a name, a base trial spec, grid axes and how to run the trials.

docs/tracking.md is the contract for this format (the analysis package reads what a
sweep writes). ``load_sweep`` checks every key, expands and validates the whole grid,
and raises one ``SpecError`` listing every problem, before anything starts.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mad_core.spec import Field, Problem, SpecError, check_value, trial_metrics
from mad_core.spec_files import SpecFileError, load_yaml_mapping
from sweeps.grid import GridPoint, expand_grid, grid_hash

SHIPPED_SWEEPS = Path(__file__).parent / "grids"
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+")  # whole names only: fullmatch

# Keys of a sweep file besides name, trial and grid, checked like mad_core spec fields.
RUN_FIELDS: dict[str, Field] = {
    "description": Field(str, "", help="one line shown in the MLflow UI"),
    "generations": Field(int, None, low=1, nullable=True, help="sets trial.generations"),
    "checkpoint_every": Field(int, 1, low=1, help="generations between checkpoints"),
    "max_failures": Field(int, 3, low=0, help="retries of a failed trial from its last checkpoint"),
    "tracking_uri": Field(str, None, nullable=True, help="MLflow tracking URI"),
}
RESOURCE_FIELDS: dict[str, Field] = {
    "cpu": Field(float, 1.0, low=0.0, low_open=True, help="CPUs per trial (may be a fraction)"),
    "gpu": Field(float, 0.0, low=0.0, help="GPUs per trial: a fraction below 1 or a whole number"),
}
SWEEP_KEYS = ("name", "trial", "grid", "extra_trials", "resources", "tracked_metrics",
              *RUN_FIELDS)
# Every metric of a record is a summary over chains (mad_core.metrics.summary).
TRACKED_METRIC_PATTERN = re.compile(r"^[a-z][a-z0-9_]*_(mean|median|q05|q95|sem)$")


@dataclass(frozen=True)
class Resources:
    """What one trial asks of a node."""

    cpu: float
    gpu: float


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file.

    Attributes:
        trials: every grid point, in grid order (index 0 ..).
        axes: the keys the trials' coordinates set: the grid's, in file order, then
            those only extra_trials set.
        text: the file as given (logged as the parent run's sweep.yaml).
    """

    name: str
    description: str
    path: Path
    text: str
    axes: tuple[str, ...]
    trials: tuple[GridPoint, ...]
    resources: Resources
    checkpoint_every: int
    max_failures: int
    tracking_uri: str | None
    tracked_metrics: tuple[str, ...] | str | None = None

    @property
    def grid_hash(self) -> str:
        return grid_hash(list(self.trials))


def find_sweep_file(name_or_path: str) -> Path:
    """A path as given, or a shipped sweep of that name (``sweeps/grids/NAME.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SHIPPED_SWEEPS / f"{path.name.removesuffix('.yaml')}.yaml"
    if shipped.is_file() and path.parent == Path("."):
        return shipped
    names = ", ".join(sorted(p.stem for p in SHIPPED_SWEEPS.glob("*.yaml")))
    raise SpecFileError(f"no sweep file {name_or_path!r}; give a path to a YAML file or one "
                        f"of the shipped sweeps: {names}")


def _check_fields(prefix: str, raw: Mapping, fields: Mapping[str, Field],
                  problems: list[Problem]) -> dict[str, Any]:
    """Values of `fields` in raw, defaults filled (also for a rejected value, whose
    problem is recorded). Values are checked by mad_core's spec field checker, so sweep
    keys are worded like spec keys."""
    values = {}
    for key, field in fields.items():
        if raw.get(key) is None and not field.nullable:
            values[key] = field.default
            continue
        checked = check_value(f"{prefix}{key}", raw.get(key), field, problems)
        values[key] = field.default if checked is None else checked
    return values


def _unknown_keys(prefix: str, raw: Mapping, allowed: tuple[str, ...],
                  problems: list[Problem]) -> None:
    for key in raw:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(Problem(f"{prefix}{key}", f"unknown key{suggestion}; allowed "
                                                      f"keys: {', '.join(allowed)}"))


def _check_resources(raw: Any, problems: list[Problem]) -> Resources:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append(Problem("resources", f"must be a mapping like {{cpu: 1, gpu: 0.25}}, "
                                             f"got {raw!r}"))
        raw = {}
    _unknown_keys("resources.", raw, tuple(RESOURCE_FIELDS), problems)
    values = _check_fields("resources.", raw, RESOURCE_FIELDS, problems)
    gpu = values["gpu"]
    if gpu > 1 and not float(gpu).is_integer():
        problems.append(Problem("resources.gpu", f"Ray shares a GPU only by fractions below 1; "
                                                 f"{gpu} must be a whole number or below 1"))
    return Resources(cpu=values["cpu"], gpu=gpu)


def _check_tracked_metrics(raw: Any, problems: list[Problem]) -> tuple[str, ...] | str | None:
    """null (the default selection), "all", or a list of record keys like w2_sq_q95."""
    if raw is None or raw == "all":
        return raw
    if not isinstance(raw, list) or not raw:
        problems.append(Problem("tracked_metrics", f"must be a list of record metrics (e.g. "
                                                   f"[w2_sq_mean, w2_sq_q95]), all, or null "
                                                   f"for the default; got {raw!r}"))
        return None
    bad = [key for key in raw if not isinstance(key, str) or not TRACKED_METRIC_PATTERN.match(key)]
    if bad:
        problems.append(Problem("tracked_metrics", f"{bad!r} are not record metrics: a "
                                                   f"metric name and a summary over chains, "
                                                   f"like w2_sq_mean, precision_median, "
                                                   f"fid_q95, trace_sem"))
        return None
    if len(set(raw)) < len(raw):
        problems.append(Problem("tracked_metrics", "lists a metric twice; list each once"))
        return None
    return tuple(raw)


def _check_tracked_are_recorded(tracked: tuple[str, ...], trials: list[GridPoint],
                                problems: list[Problem]) -> None:
    """Every tracked metric is one that every trial of the grid records."""
    for point in trials:
        metrics = trial_metrics(point.spec.to_dict())
        # The summary suffix was checked by TRACKED_METRIC_PATTERN; the metric is what
        # depends on the trial.
        missing = [key for key in tracked if key.rsplit("_", 1)[0] not in metrics]
        if missing:
            problems.append(Problem("tracked_metrics", f"{missing!r} are not recorded by "
                                                       f"trial {point.label()}: its metrics "
                                                       f"are {', '.join(metrics)}"))
            return


def _check_name(raw: Mapping, path: Path, problems: list[Problem]) -> str:
    name = raw.get("name")
    if name is None:
        problems.append(Problem("name", f"required: the MLflow experiment name, e.g. "
                                        f"name: {path.stem}"))
    elif not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        problems.append(Problem("name", f"must be letters, digits, _ and - only, got {name!r}"))
    return name if isinstance(name, str) else ""


def _base_trial(raw: Mapping, generations: int | None, problems: list[Problem]) -> dict | None:
    """The base trial spec with the sweep's generations set, or None after a problem."""
    trial = raw.get("trial")
    if not isinstance(trial, Mapping):
        problems.append(Problem("trial", "required: the base trial spec, a mapping of "
                                         "mad_core spec keys (docs/spec.md)"
                                         + ("" if trial is None else f"; got {trial!r}")))
        return None
    base = dict(trial)
    if generations is not None:
        if "generations" in base:
            problems.append(Problem("generations", "given twice (here and as "
                                                   "trial.generations); keep one"))
        base["generations"] = generations
    return base


def parse_sweep(raw: Mapping[str, Any], path: Path, text: str,
                check_memory: bool = True) -> Sweep:
    """A validated Sweep from a sweep file's mapping. Raises SpecError listing every
    problem. check_memory: as for ``mad_core.spec.resolve_spec``."""
    problems: list[Problem] = []
    _unknown_keys("", raw, SWEEP_KEYS, problems)
    name = _check_name(raw, path, problems)
    values = _check_fields("", raw, RUN_FIELDS, problems)
    resources = _check_resources(raw.get("resources"), problems)
    tracked = _check_tracked_metrics(raw.get("tracked_metrics"), problems)
    base = _base_trial(raw, values["generations"], problems)
    grid = raw.get("grid") or {}
    if not isinstance(grid, Mapping):
        problems.append(Problem("grid", f"must be a mapping of axes (spec key: values), "
                                        f"got {grid!r}"))
        grid = {}
    if "generations" in grid and values["generations"] is not None:
        problems.append(Problem("grid.generations", "is also set by generations:; keep one"))
    trials: list[GridPoint] = []
    if base is not None:
        try:
            trials = expand_grid(base, grid, raw.get("extra_trials"), check_memory)
        except SpecError as error:
            problems += error.problems
    if isinstance(tracked, tuple):
        _check_tracked_are_recorded(tracked, trials, problems)
    if problems:
        raise SpecError(problems, context=f"sweep file {path}")
    return Sweep(name=name, description=values["description"], path=path, text=text,
                 axes=tuple(dict.fromkeys(key for point in trials for key in point.coordinates)),
                 trials=tuple(trials), resources=resources,
                 checkpoint_every=values["checkpoint_every"],
                 max_failures=values["max_failures"], tracking_uri=values["tracking_uri"],
                 tracked_metrics=tracked)


def load_sweep(name_or_path: str, check_memory: bool = True) -> Sweep:
    """Read and validate a sweep file (a path or a shipped sweep's name).

    check_memory: each trial's dominant arrays must fit half of this machine's memory;
        False for a sweep on a cluster, whose nodes run_sweep checks instead.

    Raises:
        SpecFileError: the file is missing or not a YAML mapping.
        SpecError: every problem of the sweep keys, the axes and the trial specs.
    """
    path = find_sweep_file(name_or_path)
    raw = load_yaml_mapping(path)
    return parse_sweep(raw, path, path.read_text(), check_memory)
