"""`mad run`: resolved spec, progress, table, records.csv; clear errors; documented keys."""

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mad_cli
from mad_core.spec import COMMON_DATA_FIELDS, METRIC_FIELDS, MODEL_FIELDS, SOURCE_FIELDS, TOP_FIELDS
from mad_core.spec_files import SHIPPED_SPECS

REPO = Path(__file__).resolve().parents[1]


def run(args, capsys):
    code = mad_cli.main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_run_writes_every_generation(tmp_path, capsys):
    code, out, err = run(["gaussian_fresh_d100", "--set", "generations=4", "--set",
                          "chains=5", "--set", "data.dim=3", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "generations: 4" in out and "dim: 3" in out  # the resolved spec is printed
    assert re.search(r"^\s+4\s+1000\s", out, re.M)  # the table's last row (stdout)
    with open(tmp_path / "records.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["generation"]) for r in rows] == [1, 2, 3, 4]
    assert {"w2_sq_mean", "w2_sq_median", "w2_sq_q05", "w2_sq_q95", "trace_mean",
            "logdet_median", "mean_err_sq_mean", "seconds"} <= set(rows[0])
    assert (tmp_path / "spec.yaml").read_text().startswith("name: gaussian_fresh_d100")


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
])
def test_bad_input_is_refused_before_work(args, words, capsys, tmp_path):
    code, _, err = run([*args, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and words in err
    assert not (tmp_path / "o").exists()


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
    keys = {*TOP_FIELDS, *COMMON_DATA_FIELDS, *METRIC_FIELDS}
    for fields in (*SOURCE_FIELDS.values(), *MODEL_FIELDS.values()):
        keys |= set(fields)
    assert keys <= documented, keys - documented
