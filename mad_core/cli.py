"""`mad run`: one trial of a spec, with progress, a per-generation table and records.csv;
with a stop rule, whether and where the trial converged."""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
from pathlib import Path

import yaml
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from mad_core.convergence import StopRule
from mad_core.loop import SelfConsumingLoop
from mad_core.models import MODELS
from mad_core.spec import SpecError, TrialSpec, resolve_spec
from mad_core.spec_files import SpecFileError, apply_overrides, find_spec_file, load_yaml_mapping

# Columns of the printed table, first the ones a spec's records have.
TABLE_METRICS = ("w2_sq_mean", "w2_sq_median", "trace_median", "fid_mean", "precision_mean",
                 "recall_mean", "class_fidelity_mean", "w2_emp_mean")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="run one trial spec", description=__doc__,
        epilog="Spec keys: docs/spec.md. Shipped specs: mad_core/specs/.")
    parser.add_argument("spec", help="a spec YAML file, or the name of a shipped spec")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a spec key (dotted for sections)")
    parser.add_argument("--out", type=Path, help="output folder (default mad_runs/<spec name>, "
                                                 "plus _<spec hash> with --set)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace records.csv in an output folder that has one")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved spec and stop")
    parser.add_argument("--device", help="where neural models train and sample: cpu, cuda, "
                                         "cuda:N (default: cuda when present, else cpu)")
    # One thread by default, as sweeps and the reference curve run: on a shared or busy
    # machine BLAS and OpenMP threads spin-wait for cores (a d = 100 Gaussian run took
    # 19.2 s with free threads against 8.4 s with one on a busy 2-core machine).
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for BLAS and torch (default 1)")
    parser.set_defaults(handler=run_command)


def choose_device(requested: str | None, neural: bool) -> str:
    """The device a trial runs on; raises ValueError for one this machine lacks."""
    if not neural:
        return "cpu"  # NumPy models; no need to import torch
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ValueError(f"--device {requested!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {requested}: this machine has no CUDA GPU; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {requested}: only {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ValueError(f"--device {requested}: use cpu, cuda or cuda:N")
    return str(device)


def load_trial_spec(name_or_path: str, overrides: list[str]) -> tuple[TrialSpec, Path]:
    path = find_spec_file(name_or_path)
    return resolve_spec(apply_overrides(load_yaml_mapping(path), overrides)), path


def column_width(column: str) -> int:
    """Room for the column's name and a 5-digit number."""
    return max(13, len(column))


def format_row(record: dict, columns: list[str]) -> str:
    cells = [f"{record['generation']:>4d}", f"{record['n_train']:>8d}"]
    cells += [f"{record[c]:>{column_width(c)}.5g}" for c in columns]
    return " ".join(cells)


@contextlib.contextmanager
def cpu_threads(count: int, neural: bool):
    """BLAS (and, for neural models, torch) limited to `count` threads inside the block."""
    with threadpool_limits(count):
        if not neural:
            yield
            return
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def run_command(args: argparse.Namespace) -> int:
    if args.threads < 1:
        print(f"mad run: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    try:
        spec, path = load_trial_spec(args.spec, args.overrides)
        device = choose_device(args.device, MODELS[spec.model].neural)
    except (SpecFileError, SpecError, ValueError) as error:
        print(f"mad run: {error}", file=sys.stderr)
        return 2
    # Overrides make another spec: its own folder, so runs with different --set never mix.
    suffix = f"_{spec.spec_hash()[:8]}" if args.overrides else ""
    out = args.out or Path("mad_runs") / f"{spec.name or path.stem}{suffix}"
    records_path = out / "records.csv"
    if records_path.exists() and not args.overwrite and not args.dry_run:
        print(f"mad run: {records_path} exists; choose another --out or pass --overwrite",
              file=sys.stderr)
        return 2
    resolved = yaml.safe_dump(spec.to_dict(), sort_keys=False)
    print(f"# resolved spec {spec.spec_hash()} (from {path}), device {device}\n{resolved}")
    if spec.stop is not None:
        print(f"# {StopRule(**spec.stop).describe()}; at most {spec.generations} generations\n")
    if args.dry_run:
        return 0

    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.yaml").write_text(resolved)
    loop = SelfConsumingLoop(spec, device=device)
    with cpu_threads(args.threads, MODELS[spec.model].neural), \
            open(records_path, "w", newline="") as handle, \
            tqdm(total=spec.generations, unit="gen", file=sys.stderr) as progress:
        writer, columns = None, []
        for record in loop:
            if writer is None:
                writer = csv.DictWriter(handle, fieldnames=list(record))
                writer.writeheader()
                columns = [c for c in TABLE_METRICS if c in record]
                progress.write(f"{'gen':>4} {'n_train':>8} "
                               + " ".join(f"{c:>{column_width(c)}}" for c in columns))
            writer.writerow(record)
            handle.flush()  # an interrupted run keeps every finished generation
            for name, content in loop.artifacts.items():
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                (out / name).write_bytes(content)
            progress.write(format_row(record, columns))
            progress.update()
    if loop.rule is not None:
        early = (f"; stopped {spec.generations - loop.generation} generations before "
                 f"generations = {spec.generations}" if loop.stopped_early else "")
        print(f"stop rule: {loop.stop_status}{early}")
    print(f"records: {records_path}")
    if spec.grid_every or spec.snapshot_every:
        print(f"sample grids and snapshots: {out / 'grids'}, {out / 'snapshots'}")
    return 0
