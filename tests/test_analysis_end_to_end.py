"""A small real sweep (local 2-CPU Ray on 127.0.0.1, temporary sqlite MLflow store), then
`mad analyze` on it: the README's main job in miniature."""

import pandas as pd
from mlflow import MlflowClient

from mad_cli import main
from sweeps.runner import run_sweep
from sweeps.sweep_file import load_sweep

SWEEP = {
    "name": "e2e_analysis",
    "description": "fresh data loop, n_e over (lambda, n_s)",
    "trial": {"model": "gaussian", "loop": "fresh_data", "n_init": 100, "n_real": 20,
              "chains": 8, "data": {"source": "gaussian", "dim": 3}},
    "generations": 60,
    "grid": {"lam": [0.7, 1.0], "n_syn": [10, 40]},
    "checkpoint_every": 30,
}


def test_sweep_then_analyze(local_ray, write_sweep, tracking_uri, tmp_path, capsys):
    sweep = load_sweep(str(write_sweep(SWEEP)))
    outcome = run_sweep(sweep, tracking_uri=tracking_uri)
    assert (outcome.finished, outcome.failed) == (4, 0)

    assert main(["analyze", "e2e_analysis", "--tracking-uri", tracking_uri]) == 0
    printed = capsys.readouterr().out
    assert "sweep e2e_analysis: 4 trials, 240 records" in printed
    out = tmp_path / "mad_output" / "analysis" / "e2e_analysis"  # the default --out
    for name in ("trials.csv", "asymptotes.csv", "reference_curve.csv", "effective_size.csv",
                 "phase_lam_ns.png", "effective_size.png",  # lines: lambda; files: n_s
                 "generations/generations_n_syn10.png", "generations/generations_n_syn40.png"):
        assert (out / name).is_file(), name
    effective = pd.read_csv(out / "effective_size.csv")
    assert len(effective) == 4 and set(effective["lam"]) == {0.7, 1.0}
    assert (tmp_path / "mad_output" / "cache").is_dir()  # the records cache, reused next time

    client = MlflowClient(tracking_uri)
    logged = {a.path for a in client.list_artifacts(outcome.parent_run_id, "analysis")}
    assert {"analysis/effective_size.csv", "analysis/phase_lam_ns.png"} <= logged


BERTRAND = {
    "name": "e2e_bertrand",
    "description": "Bertrand's experiment in miniature",
    "trial": {"model": "gaussian", "loop": "bertrand", "n_init": 50, "chains": 20,
              "data": {"source": "gaussian", "dim": 2}},
    "generations": 80,
    "grid": {"lambda_b": [0.0, 0.5]},
    "extra_trials": [{"loop": "fully_synthetic", "lambda_b": None, "n_syn": 50}],
    "checkpoint_every": 40,
}


def test_bertrand_experiment_gets_a_verdict_per_trial(local_ray, write_sweep, tracking_uri,
                                                      tmp_path, capsys):
    outcome = run_sweep(load_sweep(str(write_sweep(BERTRAND))), tracking_uri=tracking_uri)
    assert (outcome.finished, outcome.failed) == (3, 0)
    out = tmp_path / "verdicts"
    assert main(["analyze", "e2e_bertrand", "--tracking-uri", tracking_uri,
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "stability.csv").set_index("loop")
    # The fully synthetic loop's Sigma_t collapses (SCIENCE.md): W2 to P_r grows.
    synthetic = table.loc["fully_synthetic"]
    assert synthetic["verdict"] == "drifts" and synthetic["slope"] > 0
    kept = table.loc["bertrand"].set_index("lambda_b")
    # With every real sample kept the fit cannot wander off: no trend.
    assert set(kept["verdict"]) <= {"settles", "settles away"}, kept["reason"].tolist()
    assert (out / "stability.png").is_file()
    assert "stability of w2_sq, loop = fully synthetic: drifts 1/1" in printed
