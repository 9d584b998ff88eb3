"""The record metrics a person looks at first: the columns of `mad run`'s table and of
`mad sweep`'s table of trials. Every record key stays in records.csv and the record parts.
"""

from __future__ import annotations

from typing import Mapping

# For each kind of record, its metrics in order of preference: those the shipped specs'
# comments talk about first (a Gaussian's trace_mean against its trace_median; precision,
# recall, modes covered and W2 of 2-D point clouds; FID and class fidelity of images). A
# record is of the first kind whose marker key it has (image records have precision too).
PREFERRED_METRICS = (
    ("fid_mean", ("fid_mean", "fid_inception_mean", "precision_mean", "recall_mean",
                  "class_fidelity_mean", "coverage_mean", "kid_mean")),
    ("precision_mean", ("w2_emp_mean", "precision_mean", "recall_mean", "modes_covered_mean",
                        "trace_mean", "w2_sq_sliced_mean", "coverage_mean")),
    ("w2_sq_mean", ("w2_sq_mean", "w2_sq_median", "trace_mean", "trace_median",
                    "logdet_median", "mean_err_sq_mean")),
)


def key_metrics(record: Mapping, stop_metric: str | None, count: int) -> list[str]:
    """Up to `count` keys of `record`: the stop rule's metric, then the preferred ones
    of the record's kind that it has."""
    preferred = next((metrics for marker, metrics in PREFERRED_METRICS if marker in record), ())
    keys = [stop_metric] if stop_metric in record else []
    keys += [key for key in preferred if key in record and key not in keys]
    return keys[:count]
