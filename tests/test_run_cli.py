"""`mad run`: resolved spec, progress, table, records.csv; clear errors; documented keys."""

import csv
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mad_cli
from mad_core.spec import (COMMON_DATA_FIELDS, METRIC_FIELDS, MODEL_FIELDS, SOURCE_FIELDS,
                           STOP_FIELDS, TOP_FIELDS)
from mad_core.spec_files import SHIPPED_SPECS

REPO = Path(__file__).resolve().parents[1]


def run(args, capsys):
    code = mad_cli.main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def printed_table(out: str) -> tuple[str, list[str]]:
    """The header and rows of the table in `mad run`'s stdout."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["gen", "n_train"])
    rows = itertools.takewhile(lambda line: re.match(r"\s*\d+\s", line), lines[start + 1:])
    return lines[start], list(rows)


def printed_generations(out: str) -> list[int]:
    return [int(row.split()[0]) for row in printed_table(out)[1]]


def recorded_generations(folder: Path) -> list[int]:
    with open(folder / "records.csv") as handle:
        return [int(row["generation"]) for row in csv.DictReader(handle)]


TINY_GAUSSIAN = ["gaussian_fully_synthetic_d1", "--set", "chains=3", "--set", "n_init=20",
                 "--set", "n_syn=20"]


def test_run_writes_every_generation(tmp_path, capsys):
    code, out, err = run(["gaussian_fresh_d100", "--set", "generations=4", "--set",
                          "chains=5", "--set", "data.dim=3", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "generations: 4" in out and "dim: 3" in out  # the resolved spec is printed
    header, rows = printed_table(out)  # on stdout; the progress bar is on stderr
    assert header.split() == ["gen", "n_train", "w2_sq_mean", "w2_sq_median", "trace_mean",
                              "trace_median", "logdet_median", "mean_err_sq_mean", "seconds"]
    assert [row.split()[:2] for row in rows] == [[str(g), "1000"] for g in (1, 2, 3, 4)]
    assert "# a row every" not in out  # a short run prints every generation
    with open(tmp_path / "records.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["generation"]) for r in rows] == [1, 2, 3, 4]
    assert {"w2_sq_mean", "w2_sq_median", "w2_sq_q05", "w2_sq_q95", "trace_mean",
            "logdet_median", "mean_err_sq_mean", "seconds"} <= set(rows[0])
    assert (tmp_path / "spec.yaml").read_text().startswith("name: gaussian_fresh_d100")


def test_run_with_a_stop_rule_says_where_it_converged(tmp_path, capsys):
    code, out, err = run(["gaussian_fresh_d100", "--set", "data.dim=2", "--set", "chains=10",
                          "--set", "lam=0.7", "--set", "generations=1000", "--set",
                          "stop.rel_precision=0.02", "--set", "stop.min_generations=30",
                          "--every", "50", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "stop:\n  metric: w2_sq_mean\n  rel_precision: 0.02\n  min_generations: 30" in out
    assert "# stop once w2_sq_mean's 95 % interval is within +-2 % of its limit" in out
    stopped = re.search(r"^stop rule: converged at G(\d+): w2_sq_mean = .*; stopped (\d+) "
                        r"generations before generations = 1000$", out, re.M)
    assert stopped, out
    with open(tmp_path / "records.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == int(stopped[1]) == 1000 - int(stopped[2])
    # The row of the generation where the rule stopped it, a multiple of 50 or not.
    assert printed_generations(out) == [1, *range(50, len(rows), 50), len(rows)]


def test_the_stop_rules_metric_is_the_first_column(tmp_path, capsys):
    code, out, err = run([*TINY_GAUSSIAN, "--set", "generations=21", "--set",
                          "stop.metric=logdet_q95", "--set", "stop.min_generations=21",
                          "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert printed_table(out)[0].split()[:3] == ["gen", "n_train", "logdet_q95"]


def test_a_long_run_prints_a_row_every_few_generations(tmp_path, capsys):
    code, out, err = run([*TINY_GAUSSIAN, "--set", "generations=123", "--out", str(tmp_path)],
                         capsys)
    assert code == 0, err
    assert "# a row every 5 generations, the first and the last; every generation is in " \
           "records.csv" in out
    assert printed_generations(out) == [1, *range(5, 121, 5), 123]
    assert recorded_generations(tmp_path) == list(range(1, 124))


def test_the_automatic_row_interval_prints_20_to_50_rows():
    from mad_core.cli import row_interval

    intervals = {generations: row_interval(generations)
                 for generations in (1, 50, 51, 100, 101, 250, 251, 3000, 10_000_000)}
    assert intervals == {1: 1, 50: 1, 51: 2, 100: 2, 101: 5, 250: 5, 251: 10, 3000: 100,
                         10_000_000: 200_000}


@pytest.mark.parametrize("every, printed", [("1", list(range(1, 61))),
                                            ("7", [1, *range(7, 57, 7), 60])])
def test_every_sets_the_rows(every, printed, tmp_path, capsys):
    code, out, err = run([*TINY_GAUSSIAN, "--set", "generations=60", "--every", every,
                          "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert printed_generations(out) == printed
    assert ("# a row every" in out) == (every != "1")
    assert recorded_generations(tmp_path) == list(range(1, 61))


def test_headers_are_right_aligned_over_their_columns(tmp_path, capsys):
    code, out, err = run([*TINY_GAUSSIAN, "--set", "generations=12", "--set", "lam=0.5",
                          "--out", str(tmp_path)], capsys)
    assert code == 0, err
    header, rows = printed_table(out)

    def right_edges(line):
        return [match.end() for match in re.finditer(r"\S+", line)]

    assert len(rows) == 12 and all(right_edges(row) == right_edges(header) for row in rows)
    assert len(header) <= 140


@pytest.mark.parametrize("args, metrics", [
    # Each shipped spec's comment names what to watch; tiny versions of their trials.
    (["gaussian_fully_synthetic_d1", "--set", "chains=3"], ["trace_mean", "trace_median"]),
    (["gmm_synthetic_augmentation", "--set", "n_init=300", "--set", "n_real=100", "--set",
      "n_syn=200", "--set", "metrics.n_eval=100"],
     ["precision_mean", "recall_mean", "w2_emp_mean"]),
    (["flow_rosenbrock_fully_synthetic", "--set", "n_init=200", "--set", "n_syn=200", "--set",
      "metrics.n_eval=100", "--set", "model_options.epochs=1", "--set",
      "model_options.coupling_layers=2", "--set", "model_options.hidden=8"],
     ["trace_mean", "precision_mean", "recall_mean"]),
    (["wgan_gmm_grid_fully_synthetic", "--set", "n_init=200", "--set", "n_syn=200", "--set",
      "metrics.n_eval=100", "--set", "model_options.steps=10", "--set", "model_options.width=8"],
     ["modes_covered_mean", "precision_mean", "recall_mean"]),
])
def test_the_table_shows_the_metrics_a_spec_is_about(args, metrics, tmp_path, capsys):
    code, out, err = run([*args, "--set", "generations=1", "--device", "cpu",
                          "--out", str(tmp_path)], capsys)
    assert code == 0, err
    header = printed_table(out)[0].split()
    assert set(metrics) <= set(header) and len(header) <= 9  # gen, n_train, 6, seconds


def test_dry_run_does_no_work(tmp_path, capsys):
    code, out, _ = run(["gaussian_bertrand", "--dry-run", "--out", str(tmp_path / "o")],
                       capsys)
    assert code == 0 and "n_syn: 250" in out  # derived from lambda_b * n_init
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, words", [
    (["no_such_spec"], "one of the shipped specs"),
    (["gaussian_fresh_d100", "--set", "lam=1.5"], "lam: must be a number in (0, 1]"),
    (["gaussian_fresh_d100", "--set", "lam"], "expected KEY=VALUE"),
    (["gaussian_fresh_d100", "--set", "model=vae", "--set", "n_real=-1"], "2 problems"),
    (["gaussian_fresh_d100", "--threads", "0"], "--threads must be >= 1"),
    (["gaussian_fresh_d100", "--every", "0"], "--every must be >= 1, got 0"),
    (["gaussian_fresh_d100", "--set", "name=../../x"], "name: must be a plain name"),
    (["gaussian_fresh_d100", "--set", "name=/tmp/x"], "name: must be a plain name"),
])
def test_bad_input_is_refused_before_work(args, words, capsys, tmp_path):
    code, _, err = run([*args, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and words in err
    assert not (tmp_path / "o").exists()


def test_runs_with_different_overrides_get_their_own_folders(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for dim in (2, 3):
        code, _, _ = run(["gaussian_fresh_d100", "--set", f"data.dim={dim}", "--set",
                          "generations=2", "--set", "chains=2"], capsys)
        assert code == 0
    folders = sorted(p.name for p in (tmp_path / "mad_runs").iterdir())
    assert len(folders) == 2 and all(f.startswith("gaussian_fresh_d100_") for f in folders)


def test_existing_records_are_not_overwritten(tmp_path, capsys):
    (tmp_path / "records.csv").write_text("precious\n")
    code, _, err = run(["gaussian_fresh_d100", "--out", str(tmp_path)], capsys)
    assert code == 2 and "--overwrite" in err
    assert (tmp_path / "records.csv").read_text() == "precious\n"


def test_broken_yaml_is_a_clear_error(tmp_path, capsys):
    spec = tmp_path / "broken.yaml"
    spec.write_text("model: gaussian\nloop: [fresh\n")
    code, _, err = run([str(spec)], capsys)
    assert code == 2 and "not valid YAML" in err


def test_every_shipped_spec_is_valid(capsys, mnist_folder, monkeypatch):
    monkeypatch.chdir(mnist_folder)  # MNIST specs read ./data/MNIST/raw/
    for path in SHIPPED_SPECS.glob("*.yaml"):
        code, _, err = run([str(path), "--dry-run"], capsys)
        assert code == 0, (path, err)


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "mad_cli", "run", "gaussian_fully_synthetic_d1",
                             "--dry-run"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and "loop: fully_synthetic" in result.stdout


def test_spec_docs_are_generated_from_the_declarations():
    """docs/spec.md's key tables are the declarations rendered (python -m mad_core.spec_docs --write)."""
    from mad_core import spec_docs

    assert spec_docs.render(spec_docs.DOC.read_text()) == spec_docs.DOC.read_text(), \
        "docs/spec.md is stale: run python -m mad_core.spec_docs --write"
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", spec_docs.DOC.read_text(), re.M))
    keys = {*TOP_FIELDS, *COMMON_DATA_FIELDS, *METRIC_FIELDS, *STOP_FIELDS}
    for fields in (*SOURCE_FIELDS.values(), *MODEL_FIELDS.values()):
        keys |= set(fields)
    assert keys <= documented, keys - documented


TINY_DDPM = ["--set", "n_init=150", "--set", "n_syn=150", "--set", "generations=2",
             "--set", "metrics.n_eval=60", "--set", "metrics.k=3", "--set", "snapshot_every=2",
             "--set", "model_options.base_channels=8", "--set", "model_options.steps=10",
             "--set", "model_options.sampler_steps=3"]


def test_run_of_a_ddpm_writes_grids_and_loadable_snapshots(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from mad_core.snapshots import load_snapshot

    code, out, err = run(["ddpm_digits_fully_synthetic", *TINY_DDPM, "--device", "cpu",
                          "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "device cpu" in out and printed_generations(out) == [1, 2]
    assert {"fid_mean", "precision_mean", "recall_mean", "class_fidelity_mean"} \
        <= set(printed_table(out)[0].split())
    with open(tmp_path / "records.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {"fid_mean", "kid_mean", "precision_mean", "recall_mean", "class_fidelity_mean",
            "density_mean", "coverage_mean"} <= set(rows[0])
    for generation in (1, 2):
        with Image.open(tmp_path / "grids" / f"generation_{generation:04d}.png") as grid:
            assert grid.width > 100 and grid.height > 100
    model = load_snapshot(tmp_path / "snapshots" / "generation_0002.pt")
    images = model.sample(5, bias=1.0, rng=np.random.default_rng(0)).x
    assert images.shape == (5, 1, 8, 8) and 0 <= images.min() and images.max() <= 1


def test_a_gpu_this_machine_lacks_is_refused(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = run(["ddpm_digits_fully_synthetic", "--device", "cuda",
                        "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "no CUDA GPU" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("neural", [False, True])
def test_cpu_threads_limits_blas_and_torch_inside_the_block_only(neural):
    import numpy  # noqa: F401  (loads its BLAS, so threadpoolctl sees it)
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from mad_core.cli import cpu_threads

    torch_before = torch.get_num_threads()
    torch.set_num_threads(2)  # the tests run with one thread; start from two
    try:
        with threadpool_limits(2):
            with cpu_threads(1, neural):
                assert all(pool["num_threads"] == 1 for pool in threadpool_info())
                assert torch.get_num_threads() == 1  # OpenMP is one of the pools
            assert all(pool["num_threads"] == 2 for pool in threadpool_info())
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(torch_before)


def test_a_reader_that_goes_away_is_no_error():
    """`mad run --dry-run | grep -q ...` where grep has already gone: no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        writer = subprocess.run([sys.executable, "-m", "mad_cli", "run", "gaussian_fresh_d100",
                                 "--dry-run"], stdout=write_end, stderr=subprocess.PIPE,
                                text=True, timeout=60)
    finally:
        os.close(write_end)
    assert writer.returncode == 1
    assert "Traceback" not in writer.stderr and "BrokenPipe" not in writer.stderr


def test_help_does_not_import_the_tracking_stack():
    """`mad --help` and `mad run` stay fast: mlflow and pandas load only for commands
    that use them."""
    code = ("import sys, mad_cli; mad_cli.build_parser(); "
            "print(sorted(m for m in ('mlflow', 'pandas', 'ray') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True).stdout.strip()
    assert loaded == "[]"
