"""The trial spec: what one self-consuming loop run is, validated before any work.

A spec is a mapping (usually YAML). ``resolve_spec`` checks every field, reports
all problems together (each naming its field and what is allowed), fills defaults
and derived sizes, and returns a frozen ``TrialSpec``. docs/spec.md documents
every key; tests check the two agree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from mad_core.convergence import FEWEST_STOP_GENERATIONS
# Re-exported: sweep files and analysis check and type their keys with the same fields.
from mad_core.fields import (REQUIRED, Field, Problem, SpecError, check_section, check_value,
                             did_you_mean, size_field)
from mad_core.images.sources import (IMAGE_SOURCE_FIELDS, LABELLED_SOURCES, ImageFacts,
                                     image_facts)
from mad_core.metrics.summary import QUANTILES
from mad_core.models import MODELS

__all__ = ["REQUIRED", "Field", "Problem", "SpecError", "TrialSpec", "check_value",
           "resolve_spec"]

LOOPS = ("fully_synthetic", "synthetic_augmentation", "fresh_data", "bertrand")
SYNTHETIC_SOURCES = ("previous", "pool", "last_k")
SIMULATIONS = ("exact", "naive")
MODEL_NAMES = tuple(MODELS)
VECTOR_SOURCES = ("gaussian", "gmm_grid", "rosenbrock")
IMAGE_SOURCES = tuple(IMAGE_SOURCE_FIELDS)
SOURCE_NAMES = VECTOR_SOURCES + IMAGE_SOURCES
# A trial's dominant arrays may take at most this share of the machine's memory.
MEMORY_SHARE = 0.5
# The exact Gaussian path's d x d arrays per chain beyond the kept models: the training
# scatter, the fit, its factor and the products of a draw.
EXACT_WORKING_MATRICES = 6
# Generations a spec may ask for unless MAD_MAX_GENERATIONS allows more: 10 million at
# ~1 ms each is ~3 h of one trial.
MAX_GENERATIONS = 10_000_000
# mad_core.metrics.evaluators.EXACT_EMD_MAX (importing it here would import torch):
# point-cloud trials record the exact W2 only up to this n_eval. tests/test_loop_stop.py
# checks the record keys predicted here against real records.
EXACT_EMD_MAX = 2000
# Summaries over chains that a stop rule can follow (_sem is a spread, not a level).
STOP_SUMMARIES = ("mean", *QUANTILES)

_size = size_field

TOP_FIELDS: dict[str, Field] = {
    "name": Field(str, "", help="a label for the trial (shown in outputs)"),
    "model": Field(str, choices=MODEL_NAMES, help="the generative model"),
    "loop": Field(str, choices=LOOPS, help="how each generation's training set is built"),
    "lam": Field(float, 1.0, low=0.0, low_open=True, high=1.0,
                 help="sampling bias lambda; 1 = unbiased, lower trades diversity for quality"),
    "generations": _size(20, help="number of generations, G1 included; with a stop rule, "
                                  "the most the trial runs"),
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
    "grid_every": _size(None, nullable=True,
                        help="image sources: a grid of samples (fixed noise and labels) every "
                             "this many generations (null: none)"),
    "snapshot_every": _size(None, nullable=True,
                            help="keep the fitted model of every this many generations (and the "
                                 "last) as a snapshot file (null: none)"),
}
SECTIONS = ("data", "model_options", "metrics", "stop")

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
    **IMAGE_SOURCE_FIELDS,
}
# Declared beside each model's class (mad_core.models).
MODEL_FIELDS: dict[str, dict[str, Field]] = {name: dict(entry.options)
                                             for name, entry in MODELS.items()}
METRIC_FIELDS: dict[str, Field] = {
    "k": _size(5, help="k of k-NN precision/recall (MAD: 5, standard: 3)"),
    "n_eval": _size(1000, low=2, help="generated samples per chain and generation for the "
                                      "sample-based metrics"),
    "inception": Field(bool, False, help="image sources: also FID on clean-fid's Inception "
                                         "features (needs its weights file on this machine)"),
}
# The section `stop` (null by default: run all `generations`); mad_core.convergence.StopRule.
STOP_FIELDS: dict[str, Field] = {
    "metric": Field(str, "w2_sq_mean", help="the record key whose limit decides: a metric of "
                                             "the trial with _mean, _median, _q05 or _q95"),
    "rel_precision": Field(float, 0.005, low=0.0, low_open=True,
                           help="stop once the 95 % interval of the limit is within +- this "
                                "share of it (below 1)"),
    # 50: the estimator needs G1 + 20 kept generations; the rest leaves room for burn-in.
    "min_generations": _size(50, low=FEWEST_STOP_GENERATIONS,
                             help="the first check (G1 and the estimator's 20 kept "
                                  "generations at least); later checks every max(10, 5 % of "
                                  "the generations so far)"),
}


@dataclass(frozen=True)
class TrialSpec:
    """A resolved, valid trial spec. Sizes are per chain; ``n_real`` and ``n_syn``
    are always set (derived for fully_synthetic, real_fraction and bertrand); ``stop``
    is None (run all generations) or the stop rule's STOP_FIELDS."""

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
    grid_every: int | None
    snapshot_every: int | None
    data: Mapping[str, Any]
    model_options: Mapping[str, Any]
    metrics: Mapping[str, Any]
    stop: Mapping[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON ready), key order as declared."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v)
                for f in dataclasses.fields(self)}

    def spec_hash(self) -> str:
        """12 hex digits identifying the resolved spec (the name excluded; and a null
        stop, so that specs from before the stop rule keep their hash)."""
        content = {k: v for k, v in self.to_dict().items()
                   if k != "name" and not (k == "stop" and v is None)}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


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


def _check_consistency(v: dict, problems: list[Problem], check_memory: bool) -> None:
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
    facts = _check_model_and_source(v, problems)
    metrics = v["metrics"]
    closed_form = model == "gaussian" and data.get("source") == "gaussian"  # no sampling
    if not closed_form and metrics["n_eval"] <= metrics["k"]:
        problems.append(Problem("metrics.n_eval", f"{metrics['n_eval']} samples cannot give a "
                                                  f"k-th nearest neighbour with metrics.k = "
                                                  f"{metrics['k']}; use n_eval > k"))
    if None in (v["n_init"], v["n_real"], v["n_syn"]):
        return
    sizes = {"n_init": v["n_init"]}
    if v["generations"] and v["generations"] > 1:
        sizes["n_real + n_syn"] = v["n_real"] + v["n_syn"]
    smallest = {"gaussian": 2, "gmm": v["model_options"].get("n_components") or 1}.get(model, 2)
    for key, size in sizes.items():
        if size < smallest:
            problems.append(Problem(key if key == "n_init" else "n_syn",
                                    f"{key} = {size} is too small to fit a {model} model "
                                    f"(needs at least {smallest} samples)"))
    if v["generations"] is None:
        return
    _check_generation_cap(v, problems)
    if check_memory:
        _check_memory(v, facts, problems)
    if facts is not None:
        _check_finite_real_data(v, facts.train_size, f"data.source {data['source']}",
                                "n_real", problems)
    elif data.get("pool_size") is not None:
        _check_finite_real_data(v, data["pool_size"], "data.pool_size", "data.pool_size",
                                problems)


def _check_model_and_source(v: dict, problems: list[Problem]) -> ImageFacts | None:
    """The model trains on the source's kind of data, its own cross-key rules hold, and an
    image source is there (its facts, or None for vector sources or a missing folder)."""
    data, model = v["data"], v["model"]
    entry, images = MODELS[model], data["source"] in IMAGE_SOURCES
    if "vectors" not in entry.inputs and not images:
        problems.append(Problem("data.source", f"model {model} trains on images: use one of "
                                               f"{', '.join(IMAGE_SOURCES)}"))
    if "images" not in entry.inputs and images:
        problems.append(Problem("data.source", f"model {model} trains on vectors: use one of "
                                               f"{', '.join(VECTOR_SOURCES)}"))
    facts = None
    data_valid = not any(p.field.startswith("data.") for p in problems)
    if images and data_valid:
        if data.get("pool_size") is not None:
            problems.append(Problem("data.pool_size", f"{data['source']} is a finite dataset "
                                                      f"already; remove pool_size"))
        try:
            facts = image_facts(data)
        except (OSError, ValueError) as error:
            problems.append(Problem("data.root", str(error)))
        else:
            _check_image_facts(v, facts, problems)
    elif not images:
        if v["grid_every"] is not None:
            problems.append(Problem("grid_every", f"sample grids are drawn for image sources "
                                                  f"({', '.join(IMAGE_SOURCES)}); remove it"))
        if v["metrics"]["inception"]:
            problems.append(Problem("metrics.inception", "Inception FID needs an image source"))
    options_valid = not any(p.field.startswith("model_options.") for p in problems)
    if entry.check is not None and options_valid:
        problems.extend(entry.check(v, facts))
    if v["metrics"]["inception"] and images:
        from mad_core.features.inception import InceptionWeightsMissingError, find_inception_weights

        try:
            find_inception_weights()
        except InceptionWeightsMissingError as error:
            problems.append(Problem("metrics.inception", str(error)))
    return facts


def _check_image_facts(v: dict, facts: ImageFacts, problems: list[Problem]) -> None:
    """A conditional model has labels to train on; the held-out split can serve as the
    k-NN metrics' reference."""
    data, model = v["data"], v["model"]
    if MODELS[model].conditional and facts.num_classes is None:
        unconditional = [name for name, entry in MODELS.items() if "images" in entry.inputs
                         and not entry.conditional]
        problems.append(Problem("data.source", (
            f"model {model} is class-conditional and data.source {data['source']} has no "
            f"labels; use a labelled source ({', '.join(LABELLED_SOURCES)}) or an "
            f"unconditional image model ({', '.join(unconditional) or 'none yet'})")))
    k = v["metrics"]["k"]
    if k is not None and facts.test_size <= k:
        field = "data.test_fraction" if "test_fraction" in data else "data.root"
        problems.append(Problem(field, f"the held-out split has {facts.test_size} images, too "
                                       f"few for the image metrics' k-NN with metrics.k = {k} "
                                       f"(needs more than k); hold out more images or lower "
                                       f"metrics.k"))


def _check_finite_real_data(v: dict, size: int, what: str, field: str,
                            problems: list[Problem]) -> None:
    """The loop's real draws fit a finite dataset of `size` samples."""
    initial = initial_real_size(v["loop"], v["n_init"], v["n_real"])
    fresh_total = (v["generations"] - 1) * v["n_real"] if v["loop"] == "fresh_data" else 0
    if initial > size or (fresh_total and v["n_real"] > size):
        problems.append(Problem(field, f"{what} holds {size} real samples, which cannot hold "
                                       f"a draw of {max(initial, v['n_real'])}; "
                                       f"{'enlarge the pool' if field == 'data.pool_size' else 'draw fewer'}"))
    elif initial + fresh_total > size and not v["data"].get("reshuffle"):
        problems.append(Problem(field, f"{what} holds {size} real samples, but the fresh_data "
                                       f"loop draws {initial + fresh_total} without replacement; "
                                       f"use a larger dataset, fewer generations or a smaller "
                                       f"n_real, or set data.reshuffle: true"))


def _available_memory() -> int:
    """This machine's physical memory, in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class MemoryNeed:
    """What a trial's dominant arrays take: the largest training set (float32 images,
    float64 points), or on the exact Gaussian path the chains' d x d matrices."""

    field: str  # the spec key to lower first
    bytes: int
    what: str  # "the largest training set, 1,000 points of 16 bytes"
    fix: str

    def problem(self, available: int, where: str) -> Problem | None:
        """A problem when the need exceeds `available` bytes of `where`."""
        if self.bytes <= available:
            return None
        return Problem(self.field, f"{self.what} would take {self.bytes / 2**30:,.1f} GiB, "
                                   f"more than {where} ({available / 2**30:,.1f} GiB); {self.fix}")


def memory_need(v: Mapping[str, Any], facts: ImageFacts | None) -> MemoryNeed | None:
    """The dominant arrays of a trial of resolved values `v` (None where sizes are
    missing, as in a spec rejected for them already)."""
    chains = v["chains"]
    if not isinstance(chains, int):
        return None
    if v["simulation"] == "exact":
        dim = v["data"].get("dim")
        if not isinstance(dim, int):
            return None
        matrices = (v["last_k"] or 1) + EXACT_WORKING_MATRICES
        return MemoryNeed("chains" if chains > dim else "data.dim",
                          8 * chains * dim * dim * matrices,
                          f"{chains:,} chains of {matrices} matrices {dim:,} x {dim:,}",
                          "lower data.dim or chains")
    pooled = v["synthetic_source"] == "pool"
    synthetic = v["n_syn"] * ((v["generations"] - 1) if pooled else 1)
    largest = max(v["n_init"], v["n_real"] + synthetic) * chains
    if facts is not None:
        item, noun = 4 * facts.shape[0] * facts.shape[1] * facts.shape[2], "images"
    else:
        dim = v["data"].get("dim", 2)
        if not isinstance(dim, int):
            return None
        item, noun = 8 * dim, "points"
    return MemoryNeed("n_syn", largest * item,
                      f"the largest training set, {largest:,} {noun} of {item:,} bytes",
                      f"lower n_syn, chains or generations"
                      f"{' (the pool grows every generation)' if pooled else ''}")


def trial_memories(specs: Iterable[TrialSpec]) -> list[MemoryNeed | None]:
    """``memory_need`` of each resolved spec. An image source's facts are read again,
    once per distinct data section (a folder's files are counted); None where they
    cannot be now: the trial itself then fails, saying why."""
    facts_by_data: dict[str, ImageFacts | None] = {}
    needs = []
    for spec in specs:
        if spec.data["source"] not in IMAGE_SOURCES:
            needs.append(memory_need(spec.to_dict(), None))
            continue
        key = json.dumps(spec.data, sort_keys=True)
        if key not in facts_by_data:
            try:
                facts_by_data[key] = image_facts(spec.data)
            except (OSError, ValueError):
                facts_by_data[key] = None
        facts = facts_by_data[key]
        needs.append(None if facts is None else memory_need(spec.to_dict(), facts))
    return needs


def _check_memory(v: dict, facts: ImageFacts | None, problems: list[Problem]) -> None:
    """The trial's dominant arrays fit MEMORY_SHARE of this machine's memory."""
    need = memory_need(v, facts)
    available = _available_memory()
    problem = need and need.problem(int(MEMORY_SHARE * available),
                                    f"half of this machine's {available / 2**30:.0f} GiB")
    if problem:
        problems.append(problem)


def _check_generation_cap(v: dict, problems: list[Problem]) -> None:
    """Far more generations than any study needs is a typo, not a plan."""
    cap = int(os.environ.get("MAD_MAX_GENERATIONS", MAX_GENERATIONS))
    if v["generations"] is not None and v["generations"] > cap:
        problems.append(Problem("generations", f"{v['generations']:,} is more than "
                                               f"{cap:,} generations; a stop rule ends a "
                                               f"trial when its limit is known (stop:), or "
                                               f"set MAD_MAX_GENERATIONS to allow more"))


def trial_metrics(v: dict) -> tuple[str, ...]:
    """The per-chain metrics a trial's records summarise, as mad_core.factory's
    ``make_evaluator`` chooses them from the (valid) model, source and metric settings."""
    data, model = v["data"], v["model"]
    if model == "gaussian" and data["source"] == "gaussian":
        return ("w2", "w2_sq", "mean_err_sq", "trace", "logdet")
    if data["source"] in IMAGE_SOURCES:
        names = ("fid", "kid", "precision", "recall", "density", "coverage")
        if MODELS[model].conditional and data["source"] in LABELLED_SOURCES:
            names += ("class_fidelity",)
        return names + (("fid_inception",) if v["metrics"]["inception"] else ())
    names = ("precision", "recall", "density", "coverage", "trace", "w2_sq_sliced")
    if data["source"] == "gmm_grid":
        names += ("modes_covered", "high_quality")
    return names + (("w2_sq_emp", "w2_emp") if v["metrics"]["n_eval"] <= EXACT_EMD_MAX else ())


def _check_stop(v: dict, problems: list[Problem]) -> None:
    """The stop rule follows a key the trial records and can act before `generations`."""
    stop = v["stop"]
    # Which metrics the trial records is only known once these sections are valid.
    settled = not any(p.field.split(".")[0] in ("model", "data", "metrics", "model_options")
                      for p in problems)
    if stop["metric"] is not None and settled:
        names = trial_metrics(v)
        keys = [f"{name}_{summary}" for name in names for summary in STOP_SUMMARIES]
        if stop["metric"] not in keys:
            problems.append(Problem("stop.metric", (
                f"{stop['metric']!r} is not in this trial's records"
                f"{did_you_mean(stop['metric'], keys)}; model {v['model']} on data.source "
                f"{v['data']['source']} records "
                + ", ".join(f"{name}_mean" for name in names) + " (and _median, _q05, _q95)")))
    if stop["rel_precision"] is not None and stop["rel_precision"] >= 1:
        problems.append(Problem("stop.rel_precision", f"must be below 1 (a share of the limit), "
                                                      f"got {stop['rel_precision']!r}; e.g. "
                                                      f"0.005 for +-0.5 %"))
    if None not in (stop["min_generations"], v["generations"]) \
            and stop["min_generations"] > v["generations"]:
        problems.append(Problem("stop.min_generations", (
            f"{stop['min_generations']} exceeds generations = {v['generations']}, the most "
            f"the trial runs; lower stop.min_generations or raise generations")))


def exact_simulation_possible(model: str, data: Mapping[str, Any]) -> bool:
    """Whether the exact sufficient-statistics simulator applies: a Gaussian model on a
    Gaussian source that is not a finite pool."""
    return (model == "gaussian" and data.get("source") == "gaussian"
            and data.get("pool_size") is None)


def initial_real_size(loop: str, n_init: int, n_real: int) -> int:
    """Size of the fixed initial real set: G1's n_init, and the n_real that the
    synthetic augmentation and bertrand loops reuse every generation."""
    return max(n_init, n_real) if loop in ("synthetic_augmentation", "bertrand") else n_init


PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]{0,99}")  # one path component


def resolve_spec(raw: Mapping[str, Any], check_memory: bool = True) -> TrialSpec:
    """Validate a raw spec mapping and return the resolved ``TrialSpec``.

    check_memory: the trial's dominant arrays must fit half of this machine's memory;
        False where the trial runs on another machine (a sweep on a cluster checks them
        against its nodes with ``trial_memories``).

    Raises:
        SpecError: listing every problem found, each with its field.
    """
    problems: list[Problem] = []
    if not isinstance(raw, Mapping):
        raise SpecError([Problem("spec", f"must be a mapping of keys, got {type(raw).__name__}")])
    top = {k: raw[k] for k in raw if k not in SECTIONS}
    values = check_section("", top, TOP_FIELDS, problems)
    if values.get("name") and not PLAIN_NAME.fullmatch(values["name"]):
        problems.append(Problem("name", f"must be a plain name (letters, digits and _ . + = -, "
                                        f"starting with a letter or digit): it names the output "
                                        f"folder mad_runs/<name>/; got {values['name']!r}"))

    data_raw = raw.get("data") or {}
    source = data_raw.get("source", "gaussian") if isinstance(data_raw, Mapping) else None
    source_fields = {**COMMON_DATA_FIELDS, **SOURCE_FIELDS.get(source, {})}
    values["data"] = check_section("data.", data_raw, source_fields, problems)

    model_fields = MODEL_FIELDS.get(values["model"], {})
    values["model_options"] = check_section("model_options.", raw.get("model_options"),
                                             model_fields, problems)
    values["metrics"] = check_section("metrics.", raw.get("metrics"), METRIC_FIELDS, problems)
    values["stop"] = (None if raw.get("stop") is None
                      else check_section("stop.", raw["stop"], STOP_FIELDS, problems))

    if values["loop"] is not None:
        _resolve_sizes(values, problems)
    if values["model"] is not None and values["data"].get("source") is not None:
        _check_consistency(values, problems, check_memory)
    if values["stop"] is not None:
        _check_stop(values, problems)
    if problems:
        raise SpecError(problems)
    return TrialSpec(**values)
