"""Per-generation summaries of a metric over independent chains.

Means alone mislead in self-consuming loops: at lambda = 1 the mean trace of Sigma_t
stays constant while almost every chain collapses, so medians and quantiles are
reported beside it.
"""

from __future__ import annotations

import numpy as np

QUANTILES = {"q05": 0.05, "median": 0.5, "q95": 0.95}


def summarise(per_chain: dict[str, np.ndarray]) -> dict[str, float]:
    """{metric: (C,)} -> {metric_mean, metric_median, metric_q05, metric_q95, metric_sem}.

    sem (standard error of the mean over chains) is given when C > 1; it is nan when a
    value is infinite. A quantile between two -inf values (log det of singular
    covariances) is -inf, not nan.
    """
    summary: dict[str, float] = {}
    for name, values in per_chain.items():
        values = np.asarray(values, dtype=float)
        # -inf - -inf is nan: quantiles between two -inf become -inf below, and the sem of
        # values with an infinity is nan (undefined), without a warning.
        with np.errstate(invalid="ignore"):
            quantiles = np.quantile(values, list(QUANTILES.values()))
            summary[f"{name}_mean"] = float(values.mean())
            if len(values) > 1:
                sem = values.std(ddof=1) / np.sqrt(len(values))
        if np.isneginf(values).any():
            quantiles = np.where(np.isnan(quantiles), -np.inf, quantiles)
        summary.update({f"{name}_{label}": float(q) for label, q in zip(QUANTILES, quantiles)})
        if len(values) > 1:
            summary[f"{name}_sem"] = float(sem)
    return summary
