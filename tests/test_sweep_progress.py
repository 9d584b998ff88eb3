"""What `mad sweep` prints: a status line (in place on a terminal), failed trials with
their error and traceback file, a final table of trials and the commands to look
further; --quiet; none of Tune's status tables or log lines."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mad_cli
from sweeps.progress import SweepProgress, clock, pace, quiet_tune_logging
from sweeps.runner import run_sweep
from sweeps.sweep_file import load_sweep

# Tune's status tables and log lines (its loggers write "INFO tune.py:1007 -- ...").
TUNE_NOISE = ("== Status ==", "FIFO", "Result logdir", "Trial task failed", "tune.py:",
              "tune_controller.py:", "Wrote the latest version", "Total run time",
              "Tuner.restore", "performance bottleneck")
SMALL = {"model": "gaussian", "loop": "fresh_data", "n_init": 50, "n_real": 20,
         "n_syn": 20, "chains": 4, "data": {"source": "gaussian", "dim": 2}}


def sweep_command(args: list[str], capsys) -> tuple[int, str, str]:
    code = mad_cli.main(["sweep", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_sweep_prints_status_lines_a_table_and_what_to_run_next(local_ray, write_sweep,
                                                                   tracking_uri, capsys):
    path = write_sweep({"name": "progress_demo", "trial": SMALL, "generations": 30,
                        "grid": {"lam": [0.8, 1.0]}, "checkpoint_every": 10})
    code, out, err = sweep_command([str(path), "--tracking-uri", tracking_uri], capsys)
    assert code == 0, err
    assert not any(noise in out + err for noise in TUNE_NOISE), out + err
    # Off a terminal: whole status lines, the last one with every trial done.
    lines = err.strip().splitlines()
    assert "\r" not in err and lines
    assert re.fullmatch(r"progress_demo 2/2 done, 0 running \| 60 gen, [\d.,]+ gen/s \| "
                        r"\d+:\d\d", lines[-1]), lines[-1]
    table = out[out.index("trial "):].splitlines()
    # The metrics a Gaussian's records are about (mad_core.key_metrics), at G30.
    assert re.match(r"trial\s+lam\s+gen\s+w2_sq_mean\s+w2_sq_median\s+trace_mean\s+status"
                    r"\s+time$", table[0])
    number = r"\s+[\d.]+"
    assert re.match(rf"t0000\s+0\.8\s+30{number * 3}\s+finished\s+0:\d\d$", table[1])
    assert re.match(rf"t0001\s+1\s+30{number * 3}\s+finished\s+0:\d\d$", table[2])
    # Columns line up: each header ends where its values end.
    assert len(table[0]) == len(table[1]) == len(table[2])
    assert re.search(r"^sweep progress_demo: 2 of 2 trials finished, 0 failed, in \d+:\d\d",
                     out, re.M)
    # The store is the default one of this folder: the commands need no --tracking-uri.
    assert "mad ui progress_demo\n" in out and "mad analyze progress_demo\n" in out


def test_quiet_prints_the_final_line_only(local_ray, write_sweep, tracking_uri, capsys,
                                          tmp_path):
    path = write_sweep({"name": "quiet_demo", "trial": SMALL, "generations": 5})
    other_store = f"sqlite:///{tmp_path}/elsewhere.db"
    code, out, err = sweep_command([str(path), "--tracking-uri", other_store, "--quiet"],
                                   capsys)
    assert code == 0 and err == ""
    first, *commands = out.strip().splitlines()
    assert first.startswith("sweep quiet_demo: 1 of 1 trials finished, 0 failed")
    # Not this folder's default store: the commands name it.
    assert commands == [f"  compare trials in the MLflow UI:  mad ui quiet_demo "
                        f"--tracking-uri {other_store}",
                        f"  n_e, asymptotes and figures:      mad analyze quiet_demo "
                        f"--tracking-uri {other_store}"]


def write_images(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for index in range(count):
        pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:03d}.png")


def test_a_failed_trial_is_one_line_with_its_error_and_traceback_file(
        local_ray, write_sweep, tracking_uri, capsys, tmp_path):
    """The image folder is validated, then goes away before the trial loads it (a
    network share unmounted, say): the trial fails in its worker."""
    images = tmp_path / "images"
    write_images(images, 60)
    path = write_sweep({"name": "failing_demo", "max_failures": 0, "generations": 2,
                        "trial": {"model": "wgan_gp", "loop": "fully_synthetic", "n_init": 16,
                                  "n_syn": 16, "data": {"source": "folder",
                                                        "root": str(images),
                                                        "resolution": 8}}})
    sweep = load_sweep(str(path))  # validation sees the folder
    shutil.rmtree(images)
    # progress=False (--quiet): the failure is still reported, the table is not.
    outcome = run_sweep(sweep, tracking_uri=tracking_uri, progress=False)
    captured = capsys.readouterr()
    assert outcome.failed == 1
    failure = re.search(r"^t0000 \(base spec\) failed before its first generation "
                        r"\(1 attempt\): (.+)\n"
                        r"  traceback: (\S+/t0000/error\.txt)$", captured.err, re.M)
    assert failure, captured.err
    assert failure[1].startswith("mad_core.fields.SpecError: invalid trial spec (1 problem):")
    assert str(images) in failure[1] and 'File "' not in captured.err
    assert 'in resolve_spec' in Path(failure[2]).read_text()  # the whole traceback
    assert not any(noise in captured.out + captured.err for noise in TUNE_NOISE), captured
    assert captured.out == ""


def test_on_a_terminal_the_status_line_is_redrawn_in_place(write_sweep, tmp_path):
    """`mad sweep` as a user runs it, its stderr a pseudo-terminal."""
    path = write_sweep({"name": "terminal_demo", "trial": SMALL, "generations": 20})
    leader, follower = pty.openpty()
    # 100 columns: the whole status line, bar included, fits.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("RAY_ADDRESS")}
    done = subprocess.run([sys.executable, "-m", "mad_cli", "sweep", str(path)],
                          cwd=tmp_path, env=environment, stdout=subprocess.PIPE,
                          stderr=follower, timeout=180)
    os.close(follower)
    terminal = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower end is closed and drained
            break
        if not chunk:
            break
        terminal += chunk
    os.close(leader)
    assert done.returncode == 0, terminal.decode(errors="replace")
    screen = terminal.decode().replace("\r\n", "\n")  # the terminal's own line ends
    # Each redraw returns to the line start and clears the rest; one newline at the end.
    redraws = screen.split("\r")
    assert len(redraws) >= 2 and screen.count("\n") <= 2, screen
    assert re.match(r"terminal_demo \[#{20}\] 1/1 done, 0 running \| 20 gen, [\d.]+ gen/s "
                    r"\| \d+:\d\d\x1b\[K\n$", redraws[-1]), redraws[-1]
    assert "\x1b[K" in screen
    assert "t0000" in done.stdout.decode()


def test_time_left_from_caps_from_stopped_trials_and_without_a_rate(write_sweep):
    stop = {"metric": "w2_sq_mean", "rel_precision": 0.01, "min_generations": 50}
    sweep = load_sweep(str(write_sweep({"name": "eta", "trial": {**SMALL, "stop": stop},
                                        "generations": 1000,
                                        "grid": {"seed": {"range": [0, 4]}}})))
    progress = SweepProgress(sweep.name, sweep.trials[1:], len(sweep.trials))
    states = list(progress.trials.values())
    # No trial has stopped: each may run to its cap, an upper bound.
    assert progress.remaining_generations() == (3000.0, "<")
    states[0].status, states[0].generation = "finished", 200
    states[1].status, states[1].generation = "running", 50
    # The others are expected to stop where the one that stopped did.
    assert progress.remaining_generations() == (150.0 + 200.0, "~")
    assert progress.counts() == {"done": 2, "running": 1, "failed": 0}
    assert progress.fraction_done() == pytest.approx((2 + 50 / 1000) / 4)
    assert progress.status(0.0, bar=False).endswith("ETA -")  # nothing measured yet
    # The final table after an interruption: rows for the trials that started only.
    states[1].status = "stopped"
    table = progress.table().splitlines()
    assert [line.split()[0] for line in table[1:3]] == ["t0001", "t0002"]
    assert table[3:] == ["1 trial not started", "1 trial finished in an earlier invocation"]
    assert clock(59.6) == "1:00" and clock(3725) == "1:02:05"
    assert pace(85.04) == "85.0 gen/s" and pace(1 / 44) == "44 s/gen" and pace(0) == "0.0 gen/s"


def test_the_pace_of_slow_generations_is_measured_over_enough_of_them(write_sweep):
    """Neural generations take minutes: one every 45 s, the pace read every 15 s. A
    minute's window would hold 1 or 2 of them (a pace off by a third either way); the
    window spans RATE_EVENTS = 10 at least, so the count is off by one in ten at most."""
    sweep = load_sweep(str(write_sweep({"name": "slow", "trial": SMALL, "generations": 50})))
    progress = SweepProgress(sweep.name, sweep.trials, len(sweep.trials))
    paces = []
    for tick in range(1, 40 * 3 + 1):
        if tick % 3 == 0:
            progress._generations += 1
        rate = progress.rate(progress._started + 15 * tick)
        if tick > 12 * 3:
            paces.append(rate)
    assert all(rate == pytest.approx(1 / 45, rel=1 / 9) for rate in paces), paces
    assert pace(paces[-1]).endswith(" s/gen")


def test_tune_lines_a_user_cannot_act_on_are_dropped_and_others_kept():
    quiet_tune_logging()
    quiet_tune_logging()  # idempotent
    util = logging.getLogger("ray.tune.utils.util")
    assert len(util.filters) == 1

    def passes(logger: logging.Logger, message: str) -> bool:
        return bool(logger.filter(logger.makeRecord(logger.name, logging.WARNING, __file__,
                                                    0, message, (), None)))

    assert not passes(util, "The `callbacks.on_trial_complete` operation took 0.612 s, "
                            "which may be a performance bottleneck.")
    assert not passes(logging.getLogger("ray.tune.tune"), "Trials did not complete: [t0000]")
    assert passes(util, "Could not reach the object store")
