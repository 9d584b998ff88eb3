"""`mad sweep` (a grid of trials on Ray Tune, tracked in MLflow) and `mad ui`.

Ray and MLflow are imported only when a command runs, so other `mad` commands start fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
import time

import yaml

from mad_core.spec import SpecError
from mad_core.spec_files import SpecFileError
from sweeps.sweep_file import Sweep, load_sweep

EXIT_BAD_INPUT = 2
# Trials above which `mad sweep` asks for --yes: the shipped grids have at most a few
# hundred; a hundred thousand is usually an axis that was meant to be a range of 10.
LARGE_GRID = 2_000
EXIT_TRIALS_FAILED = 1
EXIT_INTERRUPTED = 130
DEFAULT_UI_PORT = 5000


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def register(subparsers) -> None:
    sweep = subparsers.add_parser(
        "sweep", help="run a sweep: every grid point a Ray Tune trial, tracked in MLflow",
        description=__doc__, epilog="Sweep file format: docs/tracking.md; running: "
                                    "docs/sweeps.md; on a cluster: docs/cluster.md.")
    sweep.add_argument("sweep", help="a sweep YAML file, or the name of a shipped sweep "
                                     "(sweeps/grids/)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="print the grid size, resources and one resolved trial, and stop")
    sweep.add_argument("--address", help="Ray cluster to run on ('auto' on a cluster node, "
                                         "HOST:PORT); default: a local Ray on 127.0.0.1")
    sweep.add_argument("--tracking-uri", help="MLflow tracking URI (default: the sweep "
                                              "file's, $MLFLOW_TRACKING_URI, sqlite:///mlflow.db)")
    sweep.add_argument("--resume", action="store_true",
                       help="continue the latest invocation of this sweep: finished trials "
                            "are kept, the others continue from their last checkpoint, "
                            "into the same MLflow runs")
    sweep.add_argument("--max-concurrent", type=positive_int, metavar="N",
                       help="run at most N trials at once (default: as many as fit)")
    sweep.add_argument("--storage", help="folder or URI (s3://...) for Tune's experiment "
                                         "state and checkpoints; default mad_output/sweeps. "
                                         "On a multi-node cluster every node must reach it")
    sweep.add_argument("--yes", action="store_true",
                       help=f"run a grid of more than {LARGE_GRID:,} trials")
    sweep.add_argument("--quiet", action="store_true",
                       help="print only failed trials and the final line: no status line, "
                            "no table of trials")
    sweep.set_defaults(handler=sweep_command)

    ui = subparsers.add_parser("ui", help="the MLflow UI on the sweep store, on 127.0.0.1")
    ui.add_argument("experiment", nargs="?", metavar="EXPERIMENT",
                    help="a sweep name: print the address of its runs")
    ui.add_argument("--tracking-uri", help="the store to show (default as for mad sweep)")
    ui.add_argument("--port", type=int, default=DEFAULT_UI_PORT, help="default %(default)s")
    ui.set_defaults(handler=ui_command)


def describe(sweep: Sweep, tracking_uri: str) -> str:
    """What --dry-run prints: grid size, axes, resources, policies and one resolved trial."""
    lines = [f"sweep {sweep.name} ({sweep.path}): {len(sweep.trials)} trials"]
    for axis in sweep.axes:
        setting = [p for p in sweep.trials if axis in p.coordinates]
        values = list(dict.fromkeys(str(p.coordinates[axis]) for p in setting))
        share = ("" if len(setting) == len(sweep.trials) else
                 f" ({len(setting)} trial{'s' if len(setting) > 1 else ''})")
        lines.append(f"  {axis}: {', '.join(values)}{share}")
    lines += [f"resources per trial: {sweep.resources.cpu:g} CPU, {sweep.resources.gpu:g} GPU "
              f"(GPU only where the cluster has GPUs)",
              f"checkpoint every {sweep.checkpoint_every} generation(s); up to "
              f"{sweep.max_failures} retries per trial",
              f"MLflow: {tracking_uri}, experiment {sweep.name}"]
    first = sweep.trials[0]
    lines.append(f"# trial 0 ({first.label()}), spec {first.spec.spec_hash()}:")
    lines.append(yaml.safe_dump(first.spec.to_dict(), sort_keys=False).rstrip())
    return "\n".join(lines)


def sweep_command(args: argparse.Namespace) -> int:
    from sweeps.environment import configure_local_ray, is_loopback

    local = args.address is None or is_loopback(args.address)
    try:
        # On a cluster the trials run on its nodes, not on this machine: run_sweep checks
        # their memory against the nodes once it is connected.
        sweep = load_sweep(args.sweep, check_memory=local)
    except (SpecFileError, SpecError) as error:
        print(f"mad sweep: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT

    from sweeps.tracking_store import TrackingStoreError, resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(args.tracking_uri, sweep.tracking_uri)
    if args.dry_run:
        print(describe(sweep, tracking_uri))
        return 0
    if len(sweep.trials) > LARGE_GRID and not args.yes:
        generations = sum(point.spec.generations for point in sweep.trials)
        print(f"mad sweep: {sweep.name} has {len(sweep.trials):,} trials ({generations:,} "
              f"generations at most); grids this large are often an axis written too long. "
              f"Check it with --dry-run, then run it with --yes", file=sys.stderr)
        return EXIT_BAD_INPUT

    if local:
        # Before ray is imported, which reads it: without it Ray would rewrite a loopback
        # address to the host's network address and never reach a Ray on 127.0.0.1.
        configure_local_ray()
    from sweeps.ray_cluster import ClusterResourceError
    from sweeps.driver_lock import DriverLockError
    from sweeps.progress import clock
    from sweeps.runner import ResumeError, run_sweep

    same_place = [f"--{flag.replace('_', '-')} {value}" for flag in ("address", "tracking_uri",
                                                                       "storage")
                  if (value := getattr(args, flag))]
    resume_hint = "resume with: " + " ".join(["mad sweep", args.sweep, "--resume", *same_place])
    # "Creating initial MLflow database tables...": nothing a user acts on.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    started = time.monotonic()
    try:
        outcome = run_sweep(sweep, address=args.address, tracking_uri=args.tracking_uri,
                            resume=args.resume, max_concurrent=args.max_concurrent,
                            storage=args.storage, progress=not args.quiet)
    except (TrackingStoreError, ResumeError, DriverLockError, ClusterResourceError) as error:
        print(f"mad sweep: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"mad sweep: interrupted; {resume_hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"sweep {sweep.name}: {outcome.finished} of {outcome.trials} trials finished, "
          f"{outcome.failed} failed, in {clock(time.monotonic() - started)} (MLflow run "
          f"{outcome.parent_run_id})")
    if outcome.finished:
        print(look_further(sweep.name, tracking_uri))
    if outcome.interrupted:
        print(f"mad sweep: stopped before every trial ended; {resume_hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_TRIALS_FAILED if outcome.failed else 0


def look_further(sweep_name: str, tracking_uri: str) -> str:
    """The commands that show a sweep's results, with --tracking-uri where the store is
    not the one they find by default."""
    from sweeps.tracking_store import resolve_tracking_uri

    store = ("" if tracking_uri == resolve_tracking_uri(None, None) else
             f" --tracking-uri {shlex.quote(tracking_uri)}")
    name = shlex.quote(sweep_name)
    return (f"  compare trials in the MLflow UI:  mad ui {name}{store}\n"
            f"  n_e, asymptotes and figures:      mad analyze {name}{store}")


def ui_command(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    from sweeps.tracking_store import (TrackingStoreError, check_tracking_store,
                                       resolve_tracking_uri)
    from sweeps.ui_view import ui_page

    uri = resolve_tracking_uri(args.tracking_uri, None)
    server = uri.startswith(("http://", "https://"))
    if server:
        try:
            check_tracking_store(uri)  # fast /health; MLflow's client would retry for minutes
        except TrackingStoreError as error:
            print(f"mad ui: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
    # The sweep's saved view: its axes and key metrics as columns (sweeps.ui_view), in
    # MLflow 3's model-training view.
    page = ui_page(MlflowClient(uri), args.experiment)
    if page is None:
        print(f"mad ui: no experiment {args.experiment!r} in {uri}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if server:
        print(f"{uri} is a tracking server, which serves the UI itself: open "
              f"{uri.rstrip('/')}/{page}")
        return 0
    print(f"MLflow UI for {uri} on http://127.0.0.1:{args.port}/{page} (Ctrl-C stops it)",
          flush=True)
    # Without job execution the server starts in seconds and leaves no worker processes;
    # the Python warnings of its web stack (deprecations) are for MLflow's developers.
    env = {"PYTHONWARNINGS": "ignore", **os.environ,
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"]
    try:
        return subprocess.run(command, env=env).returncode
    except KeyboardInterrupt:
        return 0
