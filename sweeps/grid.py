"""Grid axes of a sweep file and their expansion into validated trial specs.

An axis is a (dotted) spec key and its values, written as a list, a ``range`` of
integers or a ``logspace`` of integers. Every combination of the axes' values is one
trial; each trial's spec is the base spec with that combination set, validated by
mad_core. Problems of all trials are reported together, grouped by field and message,
each with the grid coordinates of the trials it hits.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mad_core.spec import Problem, SpecError, TrialSpec, resolve_spec
from mad_core.spec_files import SpecFileError, set_dotted

AXIS_FORMS = ("a list of values, {range: [start, stop]} or {range: [start, stop, step]} "
              "(integers, stop excluded), or {logspace: [low, high, count]} (count "
              "log-spaced values rounded to integers)")
TRIALS_SHOWN = 3  # coordinates listed per problem before "and N more"


def coordinates_label(coordinates: Mapping[str, Any]) -> str:
    """'lam=0.85 seed=2' (or 'base spec' for a sweep without axes)."""
    return " ".join(f"{k}={v}" for k, v in coordinates.items()) or "base spec"


@dataclass(frozen=True)
class GridPoint:
    """One trial of a sweep.

    Attributes:
        index: position in the grid (0-based; row of grid.csv, tag mad.trial_index).
        coordinates: {axis key: value} of this trial, in axis order.
        raw_spec: the base trial spec with the coordinates set (what mad_core resolves).
        spec: the resolved, valid spec.
    """

    index: int
    coordinates: Mapping[str, Any]
    raw_spec: Mapping[str, Any]
    spec: TrialSpec

    def label(self) -> str:
        return coordinates_label(self.coordinates)


def _integers(values: Any) -> bool:
    return isinstance(values, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in values)


def _range_values(args: Any) -> tuple[list | None, str | None]:
    if not _integers(args) or len(args) not in (2, 3):
        return None, f"range takes [start, stop] or [start, stop, step] integers, got {args!r}"
    if len(args) == 3 and args[2] == 0:
        return None, "range step must not be 0"
    values = list(range(*args))
    if not values:
        return None, f"range {args} is empty (stop is excluded; use a negative step to count down)"
    return values, None


def _logspace_values(args: Any) -> tuple[list | None, str | None]:
    numeric = isinstance(args, list) and len(args) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in args)
    if not numeric or not isinstance(args[2], int) or args[2] < 1:
        return None, f"logspace takes [low, high, count] with count an integer >= 1, got {args!r}"
    low, high, count = args
    if low <= 0 or high <= 0:
        return None, f"logspace bounds must be > 0, got {low} and {high}"
    values = [int(round(v)) for v in np.geomspace(low, high, count)]
    if len(set(values)) < len(values):
        return None, (f"logspace {args} rounds to repeated integers {values}; use fewer "
                      f"points or a wider range")
    return values, None


AXIS_GENERATORS = {"range": _range_values, "logspace": _logspace_values}


def axis_values(key: str, raw: Any) -> tuple[list, list[Problem]]:
    """The values of one grid axis, or problems naming ``grid.<key>``."""
    field = f"grid.{key}"
    if isinstance(raw, Mapping):
        if len(raw) != 1 or next(iter(raw)) not in AXIS_GENERATORS:
            return [], [Problem(field, f"a mapping axis must be exactly one of "
                                       f"{', '.join(AXIS_GENERATORS)}; got keys "
                                       f"{', '.join(map(str, raw)) or 'none'}. Write {AXIS_FORMS}")]
        form, args = next(iter(raw.items()))
        values, error = AXIS_GENERATORS[form](args)
        return (values, []) if error is None else ([], [Problem(field, error)])
    if not isinstance(raw, list):
        return [], [Problem(field, f"a single value {raw!r} is not an axis: write [{raw!r}], "
                                   f"or set {key}: {raw!r} under trial:")]
    if not raw:
        return [], [Problem(field, "empty list: an axis needs at least one value")]
    encoded = [json.dumps(v, sort_keys=True, default=str) for v in raw]
    repeated = sorted({v for v in encoded if encoded.count(v) > 1})
    if repeated:
        return [], [Problem(field, f"repeated value(s) {', '.join(repeated)}: every trial of "
                                   f"a grid must differ; remove the repeats")]
    return list(raw), []


def _overlapping_axes(keys: list[str]) -> list[Problem]:
    """Axes where one key is a section of another (data and data.dim) would overwrite each other."""
    return [Problem(f"grid.{inner}", f"overlaps axis {outer!r}: a trial would set both; "
                                     f"keep one of them")
            for outer, inner in itertools.permutations(keys, 2) if inner.startswith(outer + ".")]


def _where(field: str, axes: list[str], extra_keys: list[str]) -> str:
    """The sweep-file place of a spec field: extra_trials.<field> when the trial is an
    extra one that sets it, grid.<field> when an axis sets it, else trial.<field>."""
    if _under(field, extra_keys):
        return f"extra_trials.{field}"
    if _under(field, axes):
        return f"grid.{field}"
    return field if field == "generations" else f"trial.{field}"


def _group(failures: list[tuple[dict, Problem]], total: int) -> list[Problem]:
    """One problem per (field, message), naming the trials (by coordinates) it hits;
    failures' fields are already sweep-file places (``_where``)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for coordinates, problem in failures:
        grouped.setdefault((problem.field, problem.message), []).append(
            coordinates_label(coordinates))
    problems = []
    for (field, message), labels in grouped.items():
        if len(labels) == total:
            where = "every trial" if total > 1 else "the trial"
        else:
            shown = "; ".join(labels[:TRIALS_SHOWN])
            more = f"; and {len(labels) - TRIALS_SHOWN} more" if len(labels) > TRIALS_SHOWN else ""
            where = f"{len(labels)} of {total} trials: {shown}{more}"
        problems.append(Problem(field, f"{message} [{where}]"))
    return problems


def _under(field: str, keys: list[str]) -> bool:
    return any(field == key or field.startswith(key + ".") for key in keys)


def _extra_coordinates(extra: Any, values_by_key: dict[str, list],
                       problems: list[Problem]) -> list[tuple[dict, list[str]]]:
    """(coordinates, keys the entry sets) of the extra trials: each entry's settings
    crossed with the values of the grid axes it does not set (a control run per seed)."""
    if not isinstance(extra, list) or not all(isinstance(e, Mapping) and e for e in extra):
        problems.append(Problem("extra_trials", f"must be a list of non-empty mappings of "
                                                f"spec keys to values, got {extra!r}"))
        return []
    trials = []
    for settings in extra:
        settings = {str(k): v for k, v in settings.items()}
        free = {k: v for k, v in values_by_key.items() if not _under(k, list(settings))}
        for values in itertools.product(*free.values()):
            trials.append(({**dict(zip(free, values)), **settings}, list(settings)))
    return trials


def expand_grid(base: Mapping[str, Any], grid: Mapping[str, Any],
                extra: list | None = None, check_memory: bool = True) -> list[GridPoint]:
    """Every combination of the grid's axes applied to the base spec, resolved, then the
    ``extra`` trials (see ``_extra_coordinates``): points a product cannot express, such
    as a fully synthetic control beside a bertrand loop's lambda_B axis.

    The last axis varies fastest. Raises SpecError with every problem of the axes and
    of every trial's spec (fields as they appear in the sweep file). A broken axis is
    left out of the product, and spec problems of the field it sets are not reported
    twice. check_memory: as for ``resolve_spec``.
    """
    keys = [str(k) for k in grid]
    problems = _overlapping_axes(keys)
    values_by_key: dict[str, list] = {}
    for key in keys:
        values, axis_problems = axis_values(key, grid[key])
        problems += axis_problems
        if not axis_problems:
            values_by_key[key] = values
    broken = [key for key in keys if key not in values_by_key]

    trials = [(dict(zip(values_by_key, values)), [])
              for values in itertools.product(*values_by_key.values())]
    if extra is not None:
        trials += _extra_coordinates(extra, values_by_key, problems)
    points, failures = [], []
    for index, (coordinates, extra_keys) in enumerate(trials):
        raw = copy.deepcopy(dict(base))
        try:
            for key, value in coordinates.items():
                set_dotted(raw, key, copy.deepcopy(value))
            points.append(GridPoint(index, coordinates, raw, resolve_spec(raw, check_memory)))
        except SpecFileError as error:
            failures.append((coordinates, Problem(_where(key, keys, extra_keys),
                                                  str(error).removeprefix(f"--set {key}: "))))
        except SpecError as error:
            failures += [(coordinates, Problem(_where(p.field, keys, extra_keys), p.message))
                         for p in error.problems if not _under(p.field, broken)]
    problems += _group(failures, len(trials))
    problems += _identical_trials(points)
    if problems:
        raise SpecError(problems, context="sweep grid")
    return points


def _identical_trials(points: list[GridPoint]) -> list[Problem]:
    """Trials whose specs resolve the same (lam: [1.0, 1], or an extra trial the grid
    already has) would run one experiment twice under two coordinates."""
    first: dict[str, GridPoint] = {}
    problems = []
    for point in points:
        same = first.setdefault(point.spec.spec_hash(), point)
        if same is not point:
            problems.append(Problem("grid", f"trials {same.label()} and {point.label()} "
                                            f"resolve to the same spec; give each value once"))
    return problems


def grid_hash(points: list[GridPoint]) -> str:
    """12 hex digits identifying the resolved grid (coordinates and spec of every trial)."""
    content = [[p.coordinates, p.spec.spec_hash()] for p in points]
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:12]
