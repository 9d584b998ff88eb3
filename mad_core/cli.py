"""`mad run`: one trial of a spec, with progress, a table of its generations (a row every few
for long runs) and records.csv; with a stop rule, whether and where the trial converged."""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from mad_core.convergence import StopRule
from mad_core.key_metrics import key_metrics
from mad_core.loop import SelfConsumingLoop
from mad_core.models import MODELS
from mad_core.spec import SpecError, TrialSpec, resolve_spec
from mad_core.spec_files import SpecFileError, apply_overrides, find_spec_file, load_yaml_mapping

MAX_METRIC_COLUMNS = 6  # with gen, n_train and seconds: 100-125 characters
MAX_ROWS = 50  # a long run prints 20-50 rows; every generation up to 50


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
    parser.add_argument("--every", type=int, metavar="N",
                        help="print a table row every N generations, and the first and the "
                             "last (default: every generation up to 50, else 20-50 rows)")
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


def row_interval(generations: int) -> int:
    """The smallest k of 1, 2, 5, 10, 20, 50, ... that prints at most MAX_ROWS rows of a run
    of `generations` when a row is every k-th generation."""
    for magnitude in itertools.count():
        for step in (1, 2, 5):
            if generations <= MAX_ROWS * step * 10 ** magnitude:
                return step * 10 ** magnitude


def row_due(generation: int, every: int, last: bool) -> bool:
    """Whether the table prints this generation: the first, every `every`-th, the last run."""
    return generation == 1 or generation % every == 0 or last


@dataclass(frozen=True)
class Column:
    """A column of the table: a record key's values right-aligned under its header."""

    key: str
    header: str
    width: int
    value_format: str

    def cell(self, record: dict) -> str:
        return f"{record[self.key]:>{self.width}{self.value_format}}"


def integer_column(key: str, header: str, digits: int) -> Column:
    return Column(key, header, max(len(header), digits), "d")


def number_column(key: str, significant: int = 5) -> Column:
    # The widest number in this format: a sign, a point and an exponent (-1.2345e-05).
    return Column(key, key, max(len(key), significant + 6), f".{significant}g")


def table_columns(record: dict, spec: TrialSpec) -> list[Column]:
    stop_metric = spec.stop["metric"] if spec.stop is not None else None
    # n_train: room for 7 digits, a pool of 1,000 samples a generation over 3,000 generations.
    return [integer_column("generation", "gen", len(str(spec.generations))),
            integer_column("n_train", "n_train", 7),
            *(number_column(key)
              for key in key_metrics(record, stop_metric, MAX_METRIC_COLUMNS)),
            number_column("seconds", significant=3)]


def format_header(columns: list[Column]) -> str:
    return "  ".join(f"{column.header:>{column.width}}" for column in columns)


def format_row(record: dict, columns: list[Column]) -> str:
    return "  ".join(column.cell(record) for column in columns)


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
    for flag, value in (("--threads", args.threads), ("--every", args.every)):
        if value is not None and value < 1:
            print(f"mad run: {flag} must be >= 1, got {value}", file=sys.stderr)
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
    every = args.every or row_interval(spec.generations)
    loop = SelfConsumingLoop(spec, device=device)
    with cpu_threads(args.threads, MODELS[spec.model].neural), \
            open(records_path, "w", newline="") as handle, \
            tqdm(total=spec.generations, unit="gen", file=sys.stderr) as progress:
        writer, columns = None, []
        for record in loop:
            if writer is None:
                writer = csv.DictWriter(handle, fieldnames=list(record))
                writer.writeheader()
                columns = table_columns(record, spec)
                if every > 1:
                    progress.write(f"# a row every {every} generations, the first and the "
                                   "last; every generation is in records.csv")
                progress.write(format_header(columns))
            writer.writerow(record)
            handle.flush()  # an interrupted run keeps every finished generation
            for name, content in loop.artifacts.items():
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                (out / name).write_bytes(content)
            if row_due(record["generation"], every, last=loop.done):
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
