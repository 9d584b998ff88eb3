"""`mad analyze` on real sqlite stores filled with real mad_core trials: the tables and
figures that apply, the science they must show, and the command's error paths."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from analysis.figures.phase import cell_edges, ratio_grid
from analysis.load import load_sweep
from analysis.report import analyze
from mad_cli import main
from test_analysis_load import log_sweep

FRESH = {"model": "gaussian", "loop": "fresh_data", "n_init": 100, "generations": 100,
         "chains": 10, "data": {"dim": 4}}
PHASE_GRID = {"lam": [0.7, 1.0], "n_real": [20, 40], "n_syn": [10, 40]}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store with a phase grid, an n_init sweep, a baseline sweep (generation 1
    on n_init real samples) and a finite-pool sweep (no computed reference)."""
    root = tmp_path_factory.mktemp("analysis_store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = (root / "artifacts").as_uri()
    log_sweep(uri, "phase", FRESH, PHASE_GRID, artifact_location=artifacts)
    log_sweep(uri, "n_init", {**FRESH, "n_real": 20, "n_syn": 20, "lam": 1.0},
              {"n_init": [20, 400], "seed": [0, 1]}, artifact_location=artifacts)
    log_sweep(uri, "baseline", {"model": "gaussian", "loop": "fully_synthetic", "n_syn": 2,
                                "generations": 1, "chains": 4000, "data": {"dim": 4}},
              {"n_init": [5, 10, 20, 40, 80, 160, 320, 640]}, artifact_location=artifacts)
    log_sweep(uri, "pooled", {"model": "gaussian", "loop": "fresh_data", "n_init": 20,
                              "n_real": 10, "n_syn": 10, "generations": 30, "chains": 2,
                              "data": {"dim": 2, "pool_size": 400, "reshuffle": True}},
              {"lam": [0.8, 1.0]}, artifact_location=artifacts)
    return uri, root


@pytest.fixture(scope="module")
def phase_report(store, tmp_path_factory):
    uri, root = store
    out = tmp_path_factory.mktemp("phase_out")
    return analyze(load_sweep("phase", uri), out, cache_dir=root / "cache"), out


def test_phase_sweep_writes_every_table_and_figure_that_applies(phase_report):
    report, out = phase_report
    names = {str(p.relative_to(out)) for p in report.written}
    assert {"trials.csv", "asymptotes.csv", "reference_curve.csv", "effective_size.csv",
            "phase_nr_ns.png", "phase_lam_ns.png", "effective_size.png"} <= names
    assert {f"generations/generations_n_real{r}_n_syn{s}.png"
            for r in (20, 40) for s in (10, 40)} <= names
    assert not any("n_init" in name for name in names)  # n_init does not vary here
    for path in report.written:
        assert path.stat().st_size > 1000


def test_asymptotes_per_configuration_and_trial(phase_report):
    _, out = phase_report
    table = pd.read_csv(out / "asymptotes.csv")
    groups = table[(table["scope"] == "group") & (table["metric"] == "w2_sq")]
    trials = table[(table["scope"] == "trial") & (table["metric"] == "w2_sq")]
    assert len(groups) == 8 and len(trials) == 8 and (groups["seeds"] == 1).all()
    assert {"lam", "n_real", "n_syn"} <= set(table.columns)
    assert {"w2_sq", "mean_err_sq", "trace"} <= set(table["metric"])
    converged = groups[groups["converged"]]
    assert (converged["low"] <= converged["value"]).all()
    assert (converged["value"] <= converged["high"]).all()
    assert groups.loc[~groups["converged"], "value"].isna().all()


def test_unbiased_sampling_raises_the_effective_sample_size(phase_report):
    """lambda = 1: at d << n_r the synthetic half acts like a_s n_r more real samples
    (n_e / n_r -> 1 + n_s / (n_r + n_s) for linear statistics), so n_e > n_r."""
    _, out = phase_report
    table = pd.read_csv(out / "effective_size.csv")
    unbiased = table[(table["lam"] == 1.0) & table["converged"]]
    assert len(unbiased) >= 3
    assert (unbiased["ratio_high"] > 1.0).all()
    assert (unbiased["ratio"] < 2.0).all()
    assert (table["reference"].str.contains("exact Gaussian simulator")).all()


def test_limit_does_not_depend_on_n_init(store, tmp_path):
    uri, root = store
    report = analyze(load_sweep("n_init", uri), tmp_path, cache_dir=root / "cache")
    assert (tmp_path / "asymptote_vs_n_init.png") in report.written
    table = pd.read_csv(tmp_path / "asymptotes.csv")
    groups = table[(table["scope"] == "group") & (table["metric"] == "w2_sq")]
    assert groups["converged"].all() and (groups["seeds"] == 2).all()  # seeds pooled
    small, large = groups.sort_values("n_init").itertuples()
    assert max(small.low, large.low) <= min(small.high, large.high)  # intervals overlap


def test_baseline_sweep_gives_the_same_effective_sizes(store, phase_report, tmp_path):
    """A measured reference curve (baseline trials) and the computed one agree."""
    uri, root = store
    _, out = phase_report
    analyze(load_sweep("phase", uri), tmp_path, baseline=load_sweep("baseline", uri))
    measured = pd.read_csv(tmp_path / "effective_size.csv").set_index("group")
    computed = pd.read_csv(out / "effective_size.csv").set_index("group")
    assert measured["reference"].str.contains("baseline sweep baseline").all()
    both = measured["converged"] & computed["converged"]
    assert both.sum() >= 4
    overlap = (np.maximum(measured["n_e_low"], computed["n_e_low"])
               <= np.minimum(measured["n_e_high"], computed["n_e_high"]))
    assert overlap[both].all()


def test_without_a_reference_curve_n_e_is_skipped_with_a_note(store, tmp_path):
    uri, root = store
    report = analyze(load_sweep("pooled", uri), tmp_path, cache_dir=root / "cache")
    assert any("n_e skipped" in note and "--reference-sweep" in note for note in report.notes)
    assert not (tmp_path / "effective_size.csv").exists()
    assert (tmp_path / "asymptotes.csv").exists()


def test_phase_grid_marks_unconverged_cells_and_bounds():
    rows = pd.DataFrame({"n_real": [10, 10, 100, 100], "n_syn": [10, 100, 10, 100],
                         "converged": [True, False, True, True],
                         "ratio": [1.5, np.nan, 0.5, 3.0], "ratio_bound": ["", "", "", ">"]})
    xs, ys, log_ratio, texts = ratio_grid(rows, "n_real", "n_syn")
    assert texts.tolist() == [["1.50", "0.50"], ["n.c.", ">3"]]
    assert np.isnan(log_ratio[1, 0]) and log_ratio[0, 1] == pytest.approx(-1.0)
    np.testing.assert_allclose(cell_edges(np.array([10, 100]), True),
                               [10 / np.sqrt(10), np.sqrt(1000), 100 * np.sqrt(10)])


def test_command_writes_and_logs_to_the_parent_run(store, tmp_path, capsys):
    uri, root = store
    code = main(["analyze", "n_init", "--tracking-uri", uri, "--out", str(tmp_path / "out"),
                 "--cache-dir", str(root / "cache")])
    printed = capsys.readouterr().out
    assert code == 0
    assert "asymptote_vs_n_init.png" in printed and f"mad ui n_init --tracking-uri {uri}" in printed
    client = MlflowClient(uri)
    parent = client.search_runs([client.get_experiment_by_name("n_init").experiment_id],
                                "tags.`mad.role` = 'sweep'")[0]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "analysis")}
    assert {"analysis/asymptotes.csv", "analysis/asymptote_vs_n_init.png"} <= logged


def test_figures_in_several_formats_for_papers(store, tmp_path, capsys):
    uri, root = store
    out = tmp_path / "formats"
    code = main(["analyze", "n_init", "--tracking-uri", uri, "--out", str(out),
                 "--cache-dir", str(root / "cache"), "--no-artifacts", "--format", "png,svg"])
    assert code == 0
    assert (out / "asymptote_vs_n_init.png").stat().st_size > 0
    assert (out / "asymptote_vs_n_init.svg").read_text().lstrip().startswith("<?xml")
    assert not list(out.glob("*.pdf"))


@pytest.mark.parametrize("arguments, message", [
    (["nowhere"], "no experiment or parent run 'nowhere'"),
    (["n_init", "--format", "png,jpeg"], "jpeg not among png, pdf, svg"),
    (["phase", "--metric", "fid"], "has no metric fid_mean"),
    (["phase", "--metric", "trace"], "n_e needs a distance"),
])
def test_command_errors_name_the_problem(store, tmp_path, capsys, arguments, message):
    uri, root = store
    code = main(["analyze", *arguments, "--tracking-uri", uri, "--out", str(tmp_path),
                 "--cache-dir", str(root / "cache"), "--no-artifacts"])
    assert code == 2 and message in capsys.readouterr().err


def test_command_on_a_missing_store(tmp_path, capsys):
    code = main(["analyze", "phase", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"])
    assert code == 2 and "no MLflow database" in capsys.readouterr().err
    assert not Path(tmp_path / "none.db").exists()
