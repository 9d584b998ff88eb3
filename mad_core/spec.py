"""The trial spec: what one self-consuming loop run is, validated before any work.

A spec is a mapping (usually YAML). ``resolve_spec`` checks every field, reports
all problems together (each naming its field and what is allowed), fills defaults
and derived sizes, and returns a frozen ``TrialSpec``. docs/spec.md documents
every key; tests check the two agree.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

LOOPS = ("fully_synthetic", "synthetic_augmentation", "fresh_data", "bertrand")
SYNTHETIC_SOURCES = ("previous", "pool", "last_k")
SIMULATIONS = ("exact", "naive")
MODEL_NAMES = ("gaussian", "gmm")
SOURCE_NAMES = ("gaussian", "gmm_grid", "rosenbrock")

REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """One key of a spec section: its type, default and allowed values."""

    kind: type  # int, float, str or bool
    default: Any = REQUIRED
    choices: tuple | None = None
    low: float | None = None  # inclusive lower bound unless low_open
    low_open: bool = False
    high: float | None = None  # inclusive upper bound
    nullable: bool = False
    help: str = ""

    def allowed(self) -> str:
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


def _size(default=REQUIRED, low=1, help="", nullable=False) -> Field:
    return Field(int, default, low=low, nullable=nullable, help=help)


TOP_FIELDS: dict[str, Field] = {
    "name": Field(str, "", help="a label for the trial (shown in outputs)"),
    "model": Field(str, choices=MODEL_NAMES, help="the generative model"),
    "loop": Field(str, choices=LOOPS, help="how each generation's training set is built"),
    "lam": Field(float, 1.0, low=0.0, low_open=True, high=1.0,
                 help="sampling bias lambda; 1 = unbiased, lower trades diversity for quality"),
    "generations": _size(20, help="number of generations, G1 included"),
    "seed": _size(0, low=0, help="trial seed; every random draw derives from it"),
    "chains": _size(1, help="independent replicates run together, summarised per generation"),
    "n_init": _size(help="real samples G1 trains on"),
    "n_real": _size(None, nullable=True, help="real samples per generation t >= 2"),
    "n_syn": _size(None, low=0, nullable=True, help="synthetic samples per generation t >= 2"),
    "n_total": _size(None, nullable=True, help="training-set size, with real_fraction"),
    "real_fraction": Field(float, None, low=0.0, low_open=True, high=1.0, nullable=True,
                           help="fixed real fraction p of n_total"),
    "lambda_b": Field(float, None, low=0.0, nullable=True,
                      help="bertrand loop: n_synthetic / n_real"),
    "synthetic_source": Field(str, "previous", choices=SYNTHETIC_SOURCES,
                              help="which earlier generations the synthetic part comes from"),
    "last_k": _size(None, nullable=True, help="with synthetic_source last_k: K"),
    "simulation": Field(str, None, choices=SIMULATIONS, nullable=True,
                        help="exact (Gaussian sufficient statistics) or naive (draw points)"),
}
SECTIONS = ("data", "model_options", "metrics")

COMMON_DATA_FIELDS: dict[str, Field] = {
    "source": Field(str, "gaussian", choices=SOURCE_NAMES, help="the real distribution P_r"),
    "pool_size": _size(None, nullable=True,
                       help="make the real data a finite dataset of this many samples"),
    "reshuffle": Field(bool, False, help="finite dataset: start a new pass when it runs out"),
}
SOURCE_FIELDS: dict[str, dict[str, Field]] = {
    "gaussian": {
        "dim": _size(help="dimension d"),
        "mean": Field(float, 0.0, help="every coordinate of the mean"),
        "var": Field(float, 1.0, low=0.0, low_open=True, help="variance of each coordinate"),
    },
    "gmm_grid": {
        "modes_per_side": _size(5, help="grid side m (m^2 modes)"),
        "spacing": Field(float, 2.0, low=0.0, low_open=True, help="distance between modes"),
        "std": Field(float, 0.05, low=0.0, low_open=True, help="standard deviation per mode"),
    },
    "rosenbrock": {},
}
MODEL_FIELDS: dict[str, dict[str, Field]] = {
    "gaussian": {
        "covariance": Field(str, "unbiased", choices=("unbiased", "mle"),
                            help="covariance estimator (denominator n - 1 or n)"),
    },
    "gmm": {
        "n_components": _size(25, help="mixture components K"),
        "covariance_type": Field(str, "full", choices=("full", "diag", "spherical", "tied"),
                                 help="scikit-learn covariance_type"),
        "max_iter": _size(100, help="EM iterations per fit"),
        "em_restarts": _size(1, help="EM initialisations per fit"),
        "reg_covar": Field(float, 1e-6, low=0.0, help="added to covariance diagonals"),
    },
}
METRIC_FIELDS: dict[str, Field] = {
    "k": _size(5, help="k of k-NN precision/recall (MAD: 5, standard: 3)"),
    "n_eval": _size(1000, low=2, help="samples per side for sample-based metrics"),
}


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
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid {context} ({len(problems)} problem"
                         f"{'s' if len(problems) != 1 else ''}):\n{lines}")


@dataclass(frozen=True)
class TrialSpec:
    """A resolved, valid trial spec. Sizes are per chain; ``n_real`` and ``n_syn``
    are always set (derived for fully_synthetic, real_fraction and bertrand)."""

    name: str
    model: str
    loop: str
    lam: float
    generations: int
    seed: int
    chains: int
    n_init: int
    n_real: int
    n_syn: int
    n_total: int | None
    real_fraction: float | None
    lambda_b: float | None
    synthetic_source: str
    last_k: int | None
    simulation: str
    data: Mapping[str, Any]
    model_options: Mapping[str, Any]
    metrics: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON ready), key order as declared."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v)
                for f in dataclasses.fields(self)}

    def spec_hash(self) -> str:
        """12 hex digits identifying the resolved spec (the name excluded)."""
        content = {k: v for k, v in self.to_dict().items() if k != "name"}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def check_value(path: str, value: Any, field: Field, problems: list[Problem]) -> Any:
    """The value converted to the field's type, or None after recording a problem.

    Public so that other files with spec-like keys (sweep files) check and word their
    values the same way."""
    if value is None:
        if field.nullable:
            return None
        problems.append(Problem(path, f"must be {field.allowed()}, got null"))
        return None
    if field.kind is bool:
        ok = isinstance(value, bool)
    elif field.kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if isinstance(value, float) and value.is_integer():
            value, ok = int(value), True
    elif field.kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        problems.append(Problem(path, f"must be {field.allowed()}, got {value!r} "
                                      f"({type(value).__name__})"))
        return None
    if field.choices and value not in field.choices:
        hint = difflib.get_close_matches(str(value), field.choices, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        problems.append(Problem(path, f"unknown value {value!r}{suggestion}; allowed: "
                                      + ", ".join(field.choices)))
        return None
    too_low = field.low is not None and (value <= field.low if field.low_open else value < field.low)
    too_high = field.high is not None and value > field.high
    if too_low or too_high:
        problems.append(Problem(path, f"must be {field.allowed()}, got {value!r}"))
        return None
    return value


def _check_section(prefix: str, raw: Any, fields: Mapping[str, Field],
                   problems: list[Problem]) -> dict[str, Any]:
    """Values of a mapping section with defaults filled; problems recorded."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append(Problem(prefix.rstrip("."), f"must be a mapping of keys, got {raw!r}"))
        raw = {}
    for key in raw:
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            allowed = ", ".join(fields) or "none"
            problems.append(Problem(f"{prefix}{key}", f"unknown key{suggestion}; allowed "
                                                      f"keys: {allowed}"))
    values = {}
    for key, field in fields.items():
        if key not in raw or (raw[key] is None and field.default is not REQUIRED and not field.nullable):
            if field.default is REQUIRED:
                problems.append(Problem(f"{prefix}{key}", f"required: {field.help} "
                                                          f"({field.allowed()})"))
                values[key] = None
            else:
                values[key] = field.default
        else:
            values[key] = check_value(f"{prefix}{key}", raw[key], field, problems)
    return values


def _forbid(values: dict, keys: tuple[str, ...], reason: str, problems: list[Problem]) -> None:
    for key in keys:
        if values.get(key) is not None:
            problems.append(Problem(key, reason))


def _resolve_sizes(v: dict, problems: list[Problem]) -> None:
    """Check the size keys against the loop and fill v['n_real'], v['n_syn'].

    A key whose value was already rejected is not reported again as missing."""
    loop = v["loop"]
    rejected = {p.field for p in problems}
    if loop == "fully_synthetic":
        if v["n_real"]:
            problems.append(Problem("n_real", "a fully_synthetic loop trains on synthetic data "
                                              "only; remove n_real, or use loop "
                                              "synthetic_augmentation or fresh_data"))
        _forbid(v, ("n_total", "real_fraction"), "not used by a fully_synthetic loop (no real "
                "data after G1); give n_syn", problems)
        _forbid(v, ("lambda_b",), "only used by loop bertrand", problems)
        if v["n_syn"] is None and "n_syn" not in rejected:
            problems.append(Problem("n_syn", "required: synthetic samples per generation"))
        elif v["n_syn"] == 0:
            problems.append(Problem("n_syn", "must be >= 1 in a fully_synthetic loop"))
        v["n_real"] = 0
    elif loop == "bertrand":
        _forbid(v, ("n_real", "n_syn", "n_total", "real_fraction"),
                "not used by loop bertrand: all n_init real samples are kept and "
                "n_syn = round(lambda_b * n_init); remove it", problems)
        if v["lambda_b"] is None and "lambda_b" not in rejected:
            problems.append(Problem("lambda_b", "required by loop bertrand: "
                                                "n_synthetic / n_real, a number >= 0"))
        elif v["n_init"] is not None:
            v["n_real"], v["n_syn"] = v["n_init"], round(v["lambda_b"] * v["n_init"])
    else:
        _forbid(v, ("lambda_b",), "only used by loop bertrand", problems)
        by_fraction = v["n_total"] is not None or v["real_fraction"] is not None
        by_counts = v["n_real"] is not None or v["n_syn"] is not None
        if by_fraction and by_counts:
            problems.append(Problem("n_real", "give either n_real and n_syn, or n_total and "
                                              "real_fraction, not both"))
        elif by_fraction:
            for key in ("n_total", "real_fraction"):
                if v[key] is None and key not in rejected:
                    problems.append(Problem(key, "required with "
                                            + ("real_fraction" if key == "n_total" else "n_total")))
            if v["n_total"] and v["real_fraction"]:
                v["n_real"] = round(v["real_fraction"] * v["n_total"])
                v["n_syn"] = v["n_total"] - v["n_real"]
                if v["n_real"] == 0:
                    problems.append(Problem("real_fraction", f"round(real_fraction * n_total) "
                                                             f"is 0 real samples; raise either"))
        else:
            for key, what in (("n_real", "real samples per generation"),
                              ("n_syn", "synthetic samples per generation (>= 0)")):
                if v[key] is None and key not in rejected:
                    problems.append(Problem(key, f"required by loop {loop}: {what}"))


def _check_consistency(v: dict, problems: list[Problem]) -> None:
    """Cross-field rules that need every individual field to be valid."""
    if v["synthetic_source"] == "last_k" and v["last_k"] is None:
        problems.append(Problem("last_k", "required with synthetic_source: last_k (K >= 1)"))
    if v["synthetic_source"] != "last_k" and v["last_k"] is not None:
        problems.append(Problem("last_k", "only used with synthetic_source: last_k"))
    data, model = v["data"], v["model"]
    exact_possible = exact_simulation_possible(model, data)
    if v["simulation"] is None:
        v["simulation"] = "exact" if exact_possible else "naive"
    elif v["simulation"] == "exact" and not exact_possible:
        problems.append(Problem("simulation", "exact needs model gaussian on data.source "
                                              "gaussian without data.pool_size; use naive"))
    if None in (v["n_init"], v["n_real"], v["n_syn"]):
        return
    sizes = {"n_init": v["n_init"]}
    if v["generations"] and v["generations"] > 1:
        sizes["n_real + n_syn"] = v["n_real"] + v["n_syn"]
    smallest = 2 if model == "gaussian" else v["model_options"].get("n_components") or 1
    for key, size in sizes.items():
        if size < smallest:
            problems.append(Problem(key if key == "n_init" else "n_syn",
                                    f"{key} = {size} is too small to fit a {model} model "
                                    f"(needs at least {smallest} samples)"))
    pool_size = data.get("pool_size")
    if pool_size is not None and v["generations"] is not None:
        initial = initial_real_size(v["loop"], v["n_init"], v["n_real"])
        fresh_total = (v["generations"] - 1) * v["n_real"] if v["loop"] == "fresh_data" else 0
        if initial > pool_size or (fresh_total and v["n_real"] > pool_size):
            problems.append(Problem("data.pool_size", f"{pool_size} real samples cannot hold "
                                    f"a draw of {max(initial, v['n_real'])}; enlarge the pool"))
        elif initial + fresh_total > pool_size and not data.get("reshuffle"):
            problems.append(Problem("data.pool_size", f"{pool_size} real samples, but the "
                                    f"fresh_data loop draws {initial + fresh_total} without "
                                    f"replacement; enlarge the pool, use fewer generations, or "
                                    f"set data.reshuffle: true"))


def exact_simulation_possible(model: str, data: Mapping[str, Any]) -> bool:
    """Whether the exact sufficient-statistics simulator applies: a Gaussian model on a
    Gaussian source that is not a finite pool."""
    return (model == "gaussian" and data.get("source") == "gaussian"
            and data.get("pool_size") is None)


def initial_real_size(loop: str, n_init: int, n_real: int) -> int:
    """Size of the fixed initial real set: G1's n_init, and the n_real that the
    synthetic augmentation and bertrand loops reuse every generation."""
    return max(n_init, n_real) if loop in ("synthetic_augmentation", "bertrand") else n_init


def resolve_spec(raw: Mapping[str, Any]) -> TrialSpec:
    """Validate a raw spec mapping and return the resolved ``TrialSpec``.

    Raises:
        SpecError: listing every problem found, each with its field.
    """
    problems: list[Problem] = []
    if not isinstance(raw, Mapping):
        raise SpecError([Problem("spec", f"must be a mapping of keys, got {type(raw).__name__}")])
    top = {k: raw[k] for k in raw if k not in SECTIONS}
    values = _check_section("", top, TOP_FIELDS, problems)

    data_raw = raw.get("data") or {}
    source = data_raw.get("source", "gaussian") if isinstance(data_raw, Mapping) else None
    source_fields = {**COMMON_DATA_FIELDS, **SOURCE_FIELDS.get(source, {})}
    values["data"] = _check_section("data.", data_raw, source_fields, problems)

    model_fields = MODEL_FIELDS.get(values["model"], {})
    values["model_options"] = _check_section("model_options.", raw.get("model_options"),
                                             model_fields, problems)
    values["metrics"] = _check_section("metrics.", raw.get("metrics"), METRIC_FIELDS, problems)

    if values["loop"] is not None:
        _resolve_sizes(values, problems)
    if values["model"] is not None and values["data"].get("source") is not None:
        _check_consistency(values, problems)
    if problems:
        raise SpecError(problems)
    return TrialSpec(**values)
