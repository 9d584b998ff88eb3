"""The `mad` command: one entry point; each package adds its own subcommands.

    mad run SPEC.yaml        one trial (mad_core)
    mad sweep SWEEP.yaml     a Ray Tune sweep tracked in MLflow (sweeps)
    mad ui                   the MLflow UI on the sweep store (sweeps)
    mad analyze EXPERIMENT   fits, n_e and phase diagrams from MLflow (analysis)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Each module defines register(subparsers) and sets a `handler` default on its parsers.
COMMAND_MODULES = ("mad_core.cli", "sweeps.cli", "analysis.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mad", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except BrokenPipeError:
        # The reader went away (`mad run --dry-run | grep -q ...`): stop quietly, as
        # Unix tools do; stdout goes to /dev/null so the exit's flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
