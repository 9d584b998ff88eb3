"""Declarative spec fields: one key's type, default and allowed values, and the checks
that turn raw YAML values into typed ones with every problem named.

Models, data sources and sweep files declare their keys with ``Field``; the trial
spec (``mad_core.spec``) and sweep files check them with ``check_section`` and
``check_value``, so every file words its errors the same way.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping

REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """One key of a spec section: its type, default and allowed values.

    ``kind`` is int, float, str, bool or list; a list's elements are of ``item`` (int,
    float or str) and each must satisfy ``low``/``high``/``choices``; ``length`` bounds
    its size (min, max).
    """

    kind: type
    default: Any = REQUIRED
    choices: tuple | None = None
    low: float | None = None  # inclusive lower bound unless low_open
    low_open: bool = False
    high: float | None = None  # inclusive upper bound
    nullable: bool = False
    help: str = ""
    item: type | None = None  # element type of a list
    length: tuple[int, int] = (1, 64)

    def allowed(self) -> str:
        if self.kind is list:
            element = Field(self.item, choices=self.choices, low=self.low,
                            low_open=self.low_open, high=self.high)
            low, high = self.length
            return f"a list of {low} to {high} values, each {element.allowed()}"
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind is bool:
            return "true or false"
        noun = "an integer" if self.kind is int else "a number" if self.kind is float else "a string"
        if self.low is not None and self.high is not None:
            return f"{noun} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
        return noun


def size_field(default=REQUIRED, low=1, help="", nullable=False) -> Field:
    """An integer count >= low."""
    return Field(int, default, low=low, nullable=nullable, help=help)


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(ValueError):
    """A spec has problems; ``problems`` lists every one of them."""

    def __init__(self, problems: list[Problem], context: str = "trial spec"):
        self.problems = problems
        self.context = context
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid {context} ({len(problems)} problem"
                         f"{'s' if len(problems) != 1 else ''}):\n{lines}")

    def __reduce__(self):
        # Raised in a Ray worker, the error is pickled to the driver; the default would
        # rebuild it from the message, as if each character were a problem.
        return type(self), (self.problems, self.context)


def did_you_mean(value: Any, candidates) -> str:
    """' (did you mean 'x'?)' for the closest candidate, or ''."""
    hint = difflib.get_close_matches(str(value), [str(c) for c in candidates], n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _check_scalar(path: str, value: Any, field: Field, kind: type,
                  problems: list[Problem]) -> Any:
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if isinstance(value, float) and value.is_integer():
            value, ok = int(value), True
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        if ok and not math.isfinite(value):
            problems.append(Problem(path, f"must be a finite number, got {value!r}"))
            return None
    else:
        ok = isinstance(value, str)
    if not ok:
        problems.append(Problem(path, f"must be {field.allowed()}, got {value!r} "
                                      f"({type(value).__name__})"))
        return None
    if field.choices and value not in field.choices:
        problems.append(Problem(path, f"unknown value {value!r}"
                                      f"{did_you_mean(value, field.choices)}; allowed: "
                                      + ", ".join(map(str, field.choices))))
        return None
    too_low = field.low is not None and (value <= field.low if field.low_open else value < field.low)
    too_high = field.high is not None and value > field.high
    if too_low or too_high:
        problems.append(Problem(path, f"must be {field.allowed()}, got {value!r}"))
        return None
    return value


def check_value(path: str, value: Any, field: Field, problems: list[Problem]) -> Any:
    """The value converted to the field's type, or None after recording a problem."""
    if value is None:
        if field.nullable:
            return None
        problems.append(Problem(path, f"must be {field.allowed()}, got null"))
        return None
    if field.kind is not list:
        return _check_scalar(path, value, field, field.kind, problems)
    low, high = field.length
    if not isinstance(value, (list, tuple)) or not low <= len(value) <= high:
        problems.append(Problem(path, f"must be {field.allowed()}, got {value!r}"))
        return None
    before = len(problems)
    items = [_check_scalar(f"{path}[{i}]", v, field, field.item, problems)
             for i, v in enumerate(value)]
    return items if len(problems) == before else None


def check_section(prefix: str, raw: Any, fields: Mapping[str, Field],
                  problems: list[Problem]) -> dict[str, Any]:
    """Values of a mapping section with defaults filled; problems recorded."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append(Problem(prefix.rstrip("."), f"must be a mapping of keys, got {raw!r}"))
        raw = {}
    for key in raw:
        if key not in fields:
            allowed = ", ".join(fields) or "none"
            problems.append(Problem(f"{prefix}{key}", f"unknown key{did_you_mean(key, fields)}; "
                                                      f"allowed keys: {allowed}"))
    values = {}
    for key, field in fields.items():
        if key not in raw or (raw[key] is None and field.default is not REQUIRED and not field.nullable):
            if field.default is REQUIRED:
                problems.append(Problem(f"{prefix}{key}", f"required: {field.help} "
                                                          f"({field.allowed()})"))
                values[key] = None
            else:
                default = field.default
                values[key] = list(default) if isinstance(default, tuple) else default
        else:
            values[key] = check_value(f"{prefix}{key}", raw[key], field, problems)
    return values
