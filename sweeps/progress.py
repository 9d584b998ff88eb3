"""What a sweep prints: a table of trials with their grid coordinates, latest generation
and a key metric, refreshed every few seconds; and no misleading Tune log lines."""

from __future__ import annotations

import logging

from ray import tune

from sweeps.sweep_file import Sweep

# Record keys shown when trials report them (Gaussian models: closed-form W2^2;
# other models: sample-based precision and recall).
KEY_METRICS = ("w2_sq_median", "precision_mean", "recall_mean")
REFRESH_S = 10
ROWS = 20


def progress_reporter(sweep: Sweep) -> tune.CLIReporter:
    metrics = {"record/generation": "gen"}
    metrics.update({f"record/{key}": key for key in KEY_METRICS})
    parameters = {f"trial/coordinates/{axis}": axis for axis in sweep.axes}
    return tune.CLIReporter(metric_columns=metrics, parameter_columns=parameters,
                            max_report_frequency=REFRESH_S, max_progress_rows=ROWS,
                            max_column_length=24)


class _WithoutRestoreHint(logging.Filter):
    """Drops Tune's "resume with Tuner.restore(...)": a sweep resumes with
    `mad sweep FILE --resume`, which the command prints instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore" not in record.getMessage()


def quiet_tune_logging() -> None:
    """Hide Tune log lines that would mislead a sweep's user (idempotent)."""
    tune_logger = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _WithoutRestoreHint) for f in tune_logger.filters):
        tune_logger.addFilter(_WithoutRestoreHint())
    # Warns about trials without results when an interrupted Tune builds its result
    # grid; sweeps read results from MLflow, never from that grid.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
