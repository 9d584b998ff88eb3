"""The progress table a sweep prints: one row per trial with its grid coordinates, the
latest generation and a key metric, refreshed every few seconds."""

from __future__ import annotations

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
