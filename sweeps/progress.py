"""What `mad sweep` prints while it runs, and the table of trials when it ends.

While trials run: one status line over the whole sweep (trials done, running and failed,
the pace in generations, time left), redrawn in place on a terminal and printed every
LINE_EVERY_S seconds otherwise. Above it, a line for each event a user acts on: a trial
failed, or is retried from its checkpoint. Tune's own status tables and log lines are
off (sweeps.environment.TUNE_SETTINGS, quiet_tune_logging).
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from ray import tune

from mad_core.key_metrics import key_metrics
from sweeps.grid import GridPoint
from sweeps.trial import STOP_KEY

KEY_COLUMNS = 3  # metrics in the final table (mad_core.key_metrics chooses them)
TABLE_ROWS = 60  # longer tables show the failed trials and the first rows
REDRAW_S = 0.5  # terminal: redraws of the status line at most this often
LINE_EVERY_S = 10.0  # not a terminal: one status line this often
# The pace is measured over the last RATE_WINDOW_S, or longer until it holds RATE_EVENTS
# generations: neural generations take minutes, and a minute would hold one or none.
RATE_WINDOW_S = 60.0
RATE_EVENTS = 10
BAR_WIDTH = 20
DEFAULT_COLUMNS = 80  # of a terminal that does not say its width
ERROR_CHARS = 400  # of a failed trial's error message, on its one line


def pace(rate: float) -> str:
    """'85.0 gen/s', or for slow sweeps (neural models) '44 s/gen'."""
    if 0 < rate < 1:
        return f"{1 / rate:,.0f} s/gen"
    return f"{rate:,.1f} gen/s"


def clock(seconds: float) -> str:
    """'1:02:03' or '2:03' (whole seconds)."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class TrialState:
    """One trial of this invocation as the driver has seen it."""

    point: GridPoint
    status: str = "pending"  # running, finished, failed, stopped
    generation: int = 0  # highest generation reported
    record: dict | None = None  # the last record reported
    stop_status: str = ""  # the stop rule's verdict, after the last generation
    started: float | None = None  # time.monotonic()
    ended: float | None = None
    attempts: int = 1

    @property
    def name(self) -> str:
        return f"t{self.point.index:04d}"

    @property
    def cap(self) -> int:
        return self.point.spec.generations

    @property
    def has_stop_rule(self) -> bool:
        return self.point.spec.stop is not None

    def failed_where(self) -> str:
        """'before its first generation' or 'after G12' (the last one it reported)."""
        return f"after G{self.generation}" if self.generation else "before its first generation"

    def seconds(self, now: float) -> float | None:
        return None if self.started is None else (self.ended or now) - self.started

    def outcome(self) -> str:
        """The table's status: finished, converged / not converged (stop rule), failed,
        stopped (interrupted), pending."""
        if self.status == "finished" and self.stop_status:
            return self.stop_status.split(" at ")[0]
        return self.status


def _error_line(trial) -> str:
    """The exception and its message from Tune's error file for the trial (its latest
    failure, without the traceback), on one line."""
    try:
        text = Path(trial.error_file).read_text()
    except (OSError, TypeError):
        return "see the trial's error.txt"
    lines = text.split("Failure # ")[-1].splitlines()[1:]  # after "N (occurred at ...)"
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    after = frames[-1] + 1 if frames else 0
    start = next((i for i in range(after, len(lines))
                  if lines[i].strip() and not lines[i].startswith(" ")), len(lines))
    message = " ".join(line.strip() for line in lines[start:] if line.strip())
    return message[:ERROR_CHARS] + ("..." if len(message) > ERROR_CHARS else "")


def _error_path(trial) -> str:
    """Where the trial's traceback stays: error.txt in its folder of the Tune state."""
    scheme = trial.storage.storage_filesystem.type_name
    path = f"{trial.path}/error.txt"
    return path if scheme == "local" else f"{scheme}://{path}"


class SweepProgress(tune.Callback):
    """Tracks this invocation's trials from Tune's callbacks and prints progress.

    Args:
        sweep_name: shown at the start of the status line.
        points: the grid points this invocation runs.
        grid_size: trials in the whole grid; those not in `points` finished earlier.
        status_line: False prints events (failures, retries) only, for --quiet.

    Everything goes to stderr (sys.stderr when written, which a test may capture).
    """

    def __init__(self, sweep_name: str, points: Iterable[GridPoint], grid_size: int,
                 status_line: bool = True):
        self.sweep_name = sweep_name
        self.trials = {point.index: TrialState(point) for point in points}
        self.finished_earlier = grid_size - len(self.trials)
        self.status_line = status_line
        self._started = time.monotonic()
        self._samples: list[tuple[float, int]] = [(self._started, 0)]  # (time, generations)
        self._generations = 0  # generations reported in this invocation, forwards only
        self._drawn_at = 0.0
        self._line_open = False  # a terminal line is drawn and not yet ended

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @property
    def on_terminal(self) -> bool:
        return self.stream.isatty()

    # -- Tune callbacks -------------------------------------------------------------

    def _state(self, trial) -> TrialState:
        return self.trials[trial.config["trial"]["index"]]

    def on_trial_start(self, iteration, trials, trial, **info):
        state = self._state(trial)
        state.status = "running"
        if state.started is None:
            state.started = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        state = self._state(trial)
        record = result.get("record")
        if record is not None:
            # A retry re-runs the generations after its checkpoint: counted once.
            self._generations += max(0, record["generation"] - state.generation)
            state.generation = max(state.generation, record["generation"])
            state.record = record
        if STOP_KEY in result:
            state.stop_status = result[STOP_KEY]

    def on_trial_recover(self, iteration, trials, trial, **info):
        state = self._state(trial)
        state.attempts += 1
        self.event(f"{state.name} ({state.point.label()}) failed {state.failed_where()}: "
                   f"{_error_line(trial)}; retrying from its last checkpoint "
                   f"(attempt {state.attempts})")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        state = self._end(trial, "failed")
        tries = f"{state.attempts} attempt{'s' if state.attempts > 1 else ''}"
        self.event(f"{state.name} ({state.point.label()}) failed {state.failed_where()} "
                   f"({tries}): {_error_line(trial)}\n"
                   f"  traceback: {_error_path(trial)}")

    def on_step_end(self, iteration, trials, **info):
        self.draw()

    def on_experiment_end(self, trials, **info):
        self.close()

    def _end(self, trial, status: str) -> TrialState:
        state = self._state(trial)
        state.status, state.ended = status, time.monotonic()
        return state

    # -- output ---------------------------------------------------------------------

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # a reader that went away, a closed stream
            pass

    def event(self, message: str) -> None:
        """A line above the status line."""
        self._write(("\r\x1b[K" if self._line_open else "") + message + "\n")
        self._line_open = False
        self._drawn_at = 0.0  # redraw the status line below it at once

    def draw(self, force: bool = False) -> None:
        """The status line: redrawn in place on a terminal, a new line otherwise."""
        if not self.status_line:
            return
        now = time.monotonic()
        every = REDRAW_S if self.on_terminal else LINE_EVERY_S
        if not force and now - self._drawn_at < every:
            return
        self._drawn_at = now
        if self.on_terminal:
            # One character short of the width: a full line would wrap, and "\r" then
            # returns to the wrapped part only.
            width = self._columns() - 1
            line = self.status(now, bar=True)
            if len(line) > width:
                line = self.status(now, bar=False)[:width]
            self._write("\r" + line + "\x1b[K")
            self._line_open = True
        else:
            self._write(self.status(now, bar=False) + "\n")

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            return DEFAULT_COLUMNS

    def close(self) -> None:
        """The last status line, ended (idempotent). Trials still running were stopped
        (the sweep was interrupted)."""
        for state in self.trials.values():
            if state.status == "running":
                state.status, state.ended = "stopped", time.monotonic()
        if self.status_line and (self._line_open or not self.on_terminal):
            self.draw(force=True)
        if self._line_open:
            self._write("\n")
            self._line_open = False
        self.status_line = False

    # -- numbers --------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Trials of the whole grid by status (done includes earlier invocations')."""
        statuses = [state.status for state in self.trials.values()]
        return {"done": self.finished_earlier + statuses.count("finished"),
                "running": statuses.count("running"), "failed": statuses.count("failed")}

    def rate(self, now: float) -> float:
        """Generations per second over the last RATE_WINDOW_S, or since as long ago as
        RATE_EVENTS generations need (0 before any)."""
        self._samples.append((now, self._generations))
        while (len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S
               and self._generations - self._samples[1][1] >= RATE_EVENTS):
            self._samples.pop(0)
        (then, before), elapsed = self._samples[0], now - self._samples[0][0]
        return (self._generations - before) / elapsed if elapsed > 0 else 0.0

    def remaining_generations(self) -> tuple[float, str]:
        """(generations the unended trials still run, how sure: "" exact, "~" an
        estimate, "<" an upper bound).

        A trial without a stop rule runs its cap. One with a rule is expected to run as
        long as the trials of this invocation that stopped did on average (the mean, not
        the median: stopping lengths are skewed and their sum is what is left to run);
        before any stopped, its cap."""
        stopped = [state.generation for state in self.trials.values()
                   if state.status == "finished" and state.has_stop_rule]
        typical = statistics.fmean(stopped) if stopped else None
        remaining, certainty = 0.0, ""
        for state in self.trials.values():
            if state.status not in ("pending", "running"):
                continue
            length = state.cap
            if state.has_stop_rule:
                certainty = "~" if typical else "<"
                length = min(state.cap, max(typical or state.cap, state.generation))
            remaining += length - state.generation
        return remaining, certainty

    def fraction_done(self) -> float:
        total = self.finished_earlier + len(self.trials)
        work = self.finished_earlier + sum(
            1.0 if state.status in ("finished", "failed") else state.generation / state.cap
            for state in self.trials.values())
        return work / total if total else 1.0

    def status(self, now: float, bar: bool) -> str:
        """'NAME [#####     ] 7/18 done, 2 running, 1 failed | 1,234 gen, 85.0 gen/s |
        0:31, ETA ~0:12' (elapsed, then time left; the bar only on a terminal)."""
        counts = self.counts()
        total = self.finished_earlier + len(self.trials)
        rate = self.rate(now)
        remaining, certainty = self.remaining_generations()
        eta = ("" if not remaining else
               f"ETA {certainty}{clock(remaining / rate)}" if rate > 0 else "ETA -")
        filled = round(BAR_WIDTH * self.fraction_done())
        drawn = f" [{'#' * filled}{' ' * (BAR_WIDTH - filled)}]" if bar else ""
        failed = f", {counts['failed']} failed" if counts["failed"] else ""
        return (f"{self.sweep_name}{drawn} {counts['done']}/{total} done, "
                f"{counts['running']} running{failed} | {self._generations:,} gen, "
                f"{pace(rate)} | {clock(now - self._started)}"
                + (f", {eta}" if eta else ""))

    # -- the final table --------------------------------------------------------------

    def key_metrics(self) -> list[str]:
        """The final table's metric columns: those of the first trial that reported,
        with its stop rule's metric first (a grid over models shows the first's)."""
        reported = [state for state in self.trials.values() if state.record]
        if not reported:
            return []
        first = min(reported, key=lambda state: state.point.index)
        stop = first.point.spec.stop
        return key_metrics(first.record, stop and stop["metric"], KEY_COLUMNS)

    def table(self) -> str:
        """This invocation's trials that started, one row each: name, coordinates,
        generations, key metrics at the last generation, status and time; then how many
        are left out (beyond TABLE_ROWS, not started, finished earlier)."""
        now = time.monotonic()
        started = sorted((state for state in self.trials.values() if state.status != "pending"),
                         key=lambda state: state.point.index)
        shown = started
        if len(started) > TABLE_ROWS:
            failed = [state for state in started if state.status == "failed"]
            shown = sorted({id(s): s for s in failed + started[:TABLE_ROWS - len(failed)]
                            }.values(), key=lambda state: state.point.index)
        lines = self._rows(shown, now) if shown else []
        if len(shown) < len(started):
            lines.append(f"... {trials(len(started) - len(shown))} more (mad analyze gives all)")
        if not_started := len(self.trials) - len(started):
            lines.append(f"{trials(not_started)} not started")
        if self.finished_earlier:
            lines.append(f"{trials(self.finished_earlier)} finished in an earlier invocation")
        return "\n".join(lines)

    def _rows(self, states: list[TrialState], now: float) -> list[str]:
        """The aligned header and rows of `states`."""
        axes = list(dict.fromkeys(axis for state in states for axis in state.point.coordinates))
        metrics = self.key_metrics()
        header = ["trial", *axes, "gen", *metrics, "status", "time"]
        rows = [[state.name, *(_cell(state.point.coordinates.get(axis, "")) for axis in axes),
                 str(state.generation),
                 *(_cell((state.record or {}).get(key, "")) for key in metrics),
                 state.outcome(), clock(s) if (s := state.seconds(now)) is not None else ""]
                for state in states]
        return _aligned([header, *rows], left=("trial", "status"))


def trials(count: int) -> str:
    """'1 trial', '2 trials'."""
    return f"{count:,} trial{'' if count == 1 else 's'}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _aligned(rows: list[list[str]], left: tuple[str, ...]) -> list[str]:
    """Columns padded to their widest cell; numbers right-aligned, names in `left` left."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    align: list[Callable[[str, int], str]] = [
        str.ljust if name in left else str.rjust for name in rows[0]]
    return ["  ".join(pad(cell, width) for pad, cell, width in zip(align, row, widths)).rstrip()
            for row in rows]


class _Unactionable(logging.Filter):
    """Drops Tune's lines that a sweep says its own way or that its user cannot act on:
    "resume with Tuner.restore(...)" (`mad sweep` prints its --resume command), "Trials
    did not complete: [...]" (SweepProgress reports each failed trial, the final table
    all), and "... took 0.6 s, which may be a performance bottleneck" (Tune's timing of
    its own steps, the MLflow logger's waits for the store among them; the status line
    shows the sweep's pace)."""

    PHRASES = ("Tuner.restore", "Trials did not complete", "may be a performance bottleneck")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(phrase in message for phrase in self.PHRASES)


def quiet_tune_logging() -> None:
    """Hide Tune log lines that would mislead a sweep's user or that they cannot act on
    (idempotent). Other warnings and errors stay."""
    for name in ("ray.tune.tune", "ray.tune.utils.util", "ray.tune.execution.tune_controller"):
        tune_logger = logging.getLogger(name)
        if not any(isinstance(f, _Unactionable) for f in tune_logger.filters):
            tune_logger.addFilter(_Unactionable())
    # "Wrote the latest version of all result files ... to <Tune state>": bookkeeping.
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    # Warns about trials without results when an interrupted Tune builds its result
    # grid; sweeps read results from MLflow, never from that grid.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
