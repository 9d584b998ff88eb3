"""Sweep files: grid expansion, strict validation before Ray starts, dry run, tracking URI."""

from __future__ import annotations

import socket
import sys

import pytest

import mad_cli
from mad_core.spec import SpecError
from mad_core.spec_files import SpecFileError
from sweeps.mlflow_runs import encode_metric, grid_csv, tracked_keys
from sweeps.sweep_file import SHIPPED_SWEEPS, load_sweep
from sweeps.tracking_store import TrackingStoreError, check_tracking_store, resolve_tracking_uri

TRIAL = {"model": "gaussian", "loop": "fresh_data", "n_init": 50, "n_real": 10, "n_syn": 20,
         "data": {"source": "gaussian", "dim": 3}, "chains": 4, "simulation": "exact"}
VALID = {"name": "demo", "trial": TRIAL, "generations": 3,
         "grid": {"lam": [0.85, 1.0], "seed": {"range": [0, 2]}}}


@pytest.mark.parametrize("path", sorted(SHIPPED_SWEEPS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_sweeps_are_valid(path, mnist_folder, monkeypatch):
    monkeypatch.chdir(mnist_folder)  # MNIST sweeps read ./data/MNIST/raw/
    sweep = load_sweep(str(path))
    assert sweep.trials and sweep.name == path.stem


def test_shipped_sweep_found_by_name():
    name = sorted(SHIPPED_SWEEPS.glob("*.yaml"))[0].stem
    assert load_sweep(name).path == SHIPPED_SWEEPS / f"{name}.yaml"


def test_grid_is_every_combination_last_axis_fastest(write_sweep):
    sweep = load_sweep(str(write_sweep({
        **VALID, "grid": {"lam": [0.5, 1.0], "n_syn": {"logspace": [10, 1000, 3]},
                          "data.dim": [2, 5], "seed": {"range": [4, 0, -2]}}})))
    assert len(sweep.trials) == 2 * 3 * 2 * 2
    assert sweep.axes == ("lam", "n_syn", "data.dim", "seed")
    assert [p.index for p in sweep.trials] == list(range(24))
    first, second, last = sweep.trials[0], sweep.trials[1], sweep.trials[-1]
    assert dict(first.coordinates) == {"lam": 0.5, "n_syn": 10, "data.dim": 2, "seed": 4}
    assert dict(second.coordinates) == {"lam": 0.5, "n_syn": 10, "data.dim": 2, "seed": 2}
    assert dict(last.coordinates) == {"lam": 1.0, "n_syn": 1000, "data.dim": 5, "seed": 2}
    assert (last.spec.lam, last.spec.n_syn, last.spec.data["dim"], last.spec.seed) == (1.0, 1000, 5, 2)
    assert last.spec.generations == 3 and last.spec.n_real == 10  # base spec kept
    assert len({p.spec.spec_hash() for p in sweep.trials}) == 24


def test_extra_trials_are_crossed_with_the_axes_they_leave_free(write_sweep):
    trial = {"model": "gaussian", "loop": "bertrand", "n_init": 20, "generations": 3,
             "data": {"source": "gaussian", "dim": 2}}
    sweep = load_sweep(str(write_sweep({
        "name": "b", "trial": trial, "grid": {"lambda_b": [0.0, 0.5], "seed": [0, 1]},
        "extra_trials": [{"loop": "fully_synthetic", "lambda_b": None, "n_syn": 20}]})))
    assert sweep.axes == ("lambda_b", "seed", "loop", "n_syn")
    extras = sweep.trials[4:]
    assert [dict(p.coordinates) for p in extras] == [
        {"seed": 0, "loop": "fully_synthetic", "lambda_b": None, "n_syn": 20},
        {"seed": 1, "loop": "fully_synthetic", "lambda_b": None, "n_syn": 20}]
    assert [p.index for p in extras] == [4, 5]
    assert all(p.spec.loop == "fully_synthetic" and p.spec.lambda_b is None for p in extras)
    assert len({p.spec.spec_hash() for p in sweep.trials}) == 6
    rows = grid_csv(sweep).splitlines()
    assert rows[0] == "trial_index,lambda_b,seed,loop,n_syn,spec_hash"
    assert rows[1].startswith("0,0.0,0,,,") and rows[5].startswith("4,null,0,fully_synthetic,20,")


def test_sweep_defaults(write_sweep):
    sweep = load_sweep(str(write_sweep({"name": "d", "trial": TRIAL})))
    assert len(sweep.trials) == 1 and sweep.axes == ()
    assert (sweep.resources.cpu, sweep.resources.gpu) == (1.0, 0.0)
    assert (sweep.checkpoint_every, sweep.max_failures, sweep.tracking_uri) == (1, 3, None)


# (change to VALID, field named in the error, words of the fix or the reason)
FAULTS = {
    "missing name": ({"name": None}, "name", "required"),
    "bad name": ({"name": "my sweep!"}, "name", "letters, digits, _ and -"),
    "name with a newline": ({"name": "demo\n"}, "name", "letters, digits, _ and -"),
    "values equal as numbers": ({"grid": {"lam": [1.0, 1]}}, "grid", "resolve to the same spec"),
    "misspelt key": ({"grdi": {}}, "grdi", "did you mean 'grid'"),
    "missing trial": ({"trial": None}, "trial", "required: the base trial spec"),
    "scalar axis": ({"grid": {"lam": 0.5}}, "grid.lam", "write [0.5]"),
    "empty axis": ({"grid": {"lam": []}}, "grid.lam", "at least one value"),
    "float range": ({"grid": {"seed": {"range": [0, 2.5]}}}, "grid.seed", "integers"),
    "empty range": ({"grid": {"seed": {"range": [3, 0]}}}, "grid.seed", "is empty"),
    "unknown axis form": ({"grid": {"lam": {"linspace": [0, 1, 3]}}}, "grid.lam", "range, logspace"),
    "logspace repeats": ({"grid": {"n_syn": {"logspace": [1, 3, 6]}}}, "grid.n_syn",
                         "repeated integers"),
    "repeated values": ({"grid": {"lam": [0.5, 0.5]}}, "grid.lam", "repeated value"),
    "extra trials not a list": ({"extra_trials": {"lam": 0.5}}, "extra_trials", "list of"),
    "bad extra trial": ({"extra_trials": [{"lam": 2.0}]}, "extra_trials.lam", "(0, 1]"),
    "overlapping axes": ({"grid": {"data": [{"source": "gaussian", "dim": 2}], "data.dim": [3]}},
                         "grid.data.dim", "overlaps axis 'data'"),
    "gpu 1.5": ({"resources": {"gpu": 1.5}}, "resources.gpu", "whole number or below 1"),
    "zero cpu": ({"resources": {"cpu": 0}}, "resources.cpu", "> 0"),
    "unknown resource": ({"resources": {"tpu": 1}}, "resources.tpu", "allowed keys: cpu, gpu"),
    "checkpoint_every 0": ({"checkpoint_every": 0}, "checkpoint_every", ">= 1"),
    "negative max_failures": ({"max_failures": -1}, "max_failures", ">= 0"),
    "generations twice": ({"trial": {**TRIAL, "generations": 5}}, "generations", "given twice"),
    "bad base spec": ({"trial": {**TRIAL, "model": "gausian"}}, "trial.model",
                      "did you mean 'gaussian'"),
    "tracked metric without summary": ({"tracked_metrics": ["w2_sq"]}, "tracked_metrics",
                                       "like w2_sq_mean"),
    "tracked metrics not a list": ({"tracked_metrics": "w2_sq_mean"}, "tracked_metrics",
                                   "must be a list"),
    "tracked metric twice": ({"tracked_metrics": ["w2_sq_mean", "w2_sq_mean"]},
                             "tracked_metrics", "list each once"),
    "tracked metric not recorded": ({"tracked_metrics": ["fid_mean"]}, "tracked_metrics",
                                    "its metrics are w2, w2_sq"),
}


@pytest.mark.parametrize("change, field, words", FAULTS.values(), ids=FAULTS.keys())
def test_malformed_sweep_is_rejected_with_field_and_fix(write_sweep, change, field, words):
    content = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    with pytest.raises(SpecError) as caught:
        load_sweep(str(write_sweep(content)))
    fields = {p.field: p.message for p in caught.value.problems}
    assert field in fields and words in fields[field], str(caught.value)


def test_trial_problems_name_the_grid_coordinates(write_sweep):
    content = {**VALID, "grid": {"n_real": [0, 5], "lam": [0.5, 1.5]}}
    with pytest.raises(SpecError) as caught:
        load_sweep(str(write_sweep(content)))
    problems = {p.field: p.message for p in caught.value.problems}
    assert set(problems) == {"grid.n_real", "grid.lam"}
    assert "2 of 4 trials: n_real=0 lam=0.5; n_real=0 lam=1.5" in problems["grid.n_real"]
    assert "2 of 4 trials: n_real=0 lam=1.5; n_real=5 lam=1.5" in problems["grid.lam"]


def test_every_problem_is_reported_together(write_sweep):
    content = {**VALID, "name": "a b", "checkpoint_every": 0, "grid": {"lam": 2},
               "trial": {**TRIAL, "loop": "fresh"}}
    with pytest.raises(SpecError) as caught:
        load_sweep(str(write_sweep(content)))
    assert {p.field for p in caught.value.problems} == {"name", "checkpoint_every", "grid.lam",
                                                        "trial.loop"}


BILLION_LAUGHS = """name: bomb
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
description: *h
"""


@pytest.mark.parametrize("text, words", [
    (BILLION_LAUGHS, "expands to more than 100,000 values"),
    ("name: loop\ngrid: &g {lam: [0.5, *g]}\n", "refers to a value that contains it"),
], ids=["billion laughs", "self-reference"])
def test_yaml_alias_bombs_are_refused_before_validation(tmp_path, text, words):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with pytest.raises(SpecFileError, match=words):
        load_sweep(str(path))


def test_a_file_that_is_not_utf8_is_named_with_the_fix(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecFileError, match=r"not UTF-8 text \(byte 9 is 0xe9\); save it as UTF-8"):
        load_sweep(str(path))


def test_unreadable_files_are_rejected(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "broken.yaml").write_text("name: [\n")
    for name, words in [("list.yaml", "must hold a mapping"), ("broken.yaml", "not valid YAML"),
                        ("missing.yaml", "no sweep file")]:
        with pytest.raises(SpecFileError, match=words):
            load_sweep(str(tmp_path / name))


def test_cli_rejects_a_bad_sweep_before_ray_starts(write_sweep, capsys):
    import ray

    path = write_sweep({**VALID, "grid": {"lam": [0.5, 1.5]}})
    assert mad_cli.main(["sweep", str(path)]) == 2
    error = capsys.readouterr().err
    assert "grid.lam: must be a number in (0, 1], got 1.5 [1 of 2 trials: lam=1.5]" in error
    assert not ray.is_initialized()


def test_a_very_large_grid_needs_yes(write_sweep, capsys):
    import ray

    path = write_sweep({**VALID, "grid": {"seed": {"range": [0, 2001]}}})
    assert mad_cli.main(["sweep", str(path)]) == 2
    error = capsys.readouterr().err
    assert "has 2,001 trials (6,003 generations at most)" in error and "--yes" in error
    assert not ray.is_initialized()


def test_dry_run_prints_grid_resources_and_a_resolved_trial(write_sweep, tracking_uri, capsys):
    path = write_sweep({**VALID, "resources": {"cpu": 0.5, "gpu": 0.25}})
    assert mad_cli.main(["sweep", str(path), "--dry-run", "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    assert "4 trials" in out and "lam: 0.85, 1.0" in out and "seed: 0, 1" in out
    assert "0.5 CPU, 0.25 GPU" in out and tracking_uri in out
    assert "# trial 0 (lam=0.85 seed=0)" in out and "n_syn: 20" in out


def test_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, None) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri(None, None) == "http://env:5000"
    assert resolve_tracking_uri(None, "http://yaml:5000") == "http://yaml:5000"
    assert resolve_tracking_uri("sqlite:///x.db", "http://yaml:5000") == f"sqlite:///{tmp_path}/x.db"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_tracking_server_fails_before_ray_starts(write_sweep, tmp_path, capsys):
    import ray

    uri = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(TrackingStoreError, match="unreachable"):
        check_tracking_store(uri)
    assert mad_cli.main(["sweep", str(write_sweep(VALID)), "--tracking-uri", uri]) == 2
    assert f"MLflow tracking server {uri} is unreachable" in capsys.readouterr().err
    assert not ray.is_initialized()
    with pytest.raises(TrackingStoreError, match="does not exist"):
        check_tracking_store(f"sqlite:///{tmp_path}/no/such/folder/mlflow.db")


def test_tracked_metrics_default_to_the_primary_metrics_summaries():
    gaussian = {"generation": 1, "n_train": 10, "w2_sq_mean": 1.0, "w2_sq_median": 0.9,
                "w2_sq_q95": 2.0, "trace_mean": 3.0, "seconds": 0.1}
    assert tracked_keys(gaussian, None) == ("w2_sq_mean", "w2_sq_median")
    assert tracked_keys(gaussian, "all") == ("w2_sq_mean", "w2_sq_median", "w2_sq_q95",
                                             "trace_mean")
    assert tracked_keys(gaussian, ("trace_mean", "fid_mean")) == ("trace_mean",)
    # A record without any primary metric shows every mean.
    assert tracked_keys({"generation": 1, "trace_mean": 1.0, "trace_sem": 0.1}, None) == (
        "trace_mean",)


def test_infinite_record_values_are_logged_as_float_max():
    assert encode_metric(float("-inf")) == -sys.float_info.max
    assert encode_metric(float("inf")) == sys.float_info.max
    assert encode_metric(2) == 2.0
    assert encode_metric(float("nan")) != encode_metric(float("nan"))  # nan stays nan
