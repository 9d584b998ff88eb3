"""An earlier revision of the project, checked out beside this one, for benchmarks that
measure today's code against it in the same run."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

REPOSITORY = Path(__file__).resolve().parent.parent
# The last revision that sent one Tune result and every record key to MLflow per
# generation, ran every trial for a fixed number of generations, and summarised each
# metric over chains on its own.
DEFAULT_BASELINE = "ef32e8c"


@contextlib.contextmanager
def baseline_checkout(revision: str, folder: Path) -> Iterator[Path]:
    """A temporary git worktree of `revision` at `folder`, removed afterwards."""
    subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", str(folder),
                    revision], check=True, capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "remove", "--force",
                        str(folder)], check=False, capture_output=True)


def environment_for(source: Path) -> dict[str, str]:
    """Environment of a process (and the Ray workers it starts) that imports the project
    from `source`: PYTHONPATH comes before the editable install; one BLAS thread."""
    return {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
