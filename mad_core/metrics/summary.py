"""Per-generation summaries of a metric over independent chains.

Means alone mislead in self-consuming loops: at lambda = 1 the mean trace of Sigma_t
stays constant while almost every chain collapses, so medians and quantiles are
reported beside it.
"""

from __future__ import annotations

import numpy as np

QUANTILES = {"q05": 0.05, "median": 0.5, "q95": 0.95}


def summarise(per_chain: dict[str, np.ndarray]) -> dict[str, float]:
    """{metric: (C,)} -> {metric_mean, metric_q05, metric_median, metric_q95, metric_sem}.

    sem (standard error of the mean over chains) is given when C > 1; it is nan when a
    value is infinite. A quantile between two -inf values (log det of singular
    covariances) is -inf, not nan. Every metric has the same C (one value per chain):
    they are summarised as one (M, C) array, which for the exact Gaussian path at small
    d costs a fifth of summarising them one by one.
    """
    if not per_chain:
        return {}
    values = np.stack([np.asarray(v, dtype=float) for v in per_chain.values()])  # (M, C)
    chains = values.shape[1]
    # -inf - -inf is nan: quantiles between two -inf become -inf below, and the sem of
    # values with an infinity is nan (undefined), without a warning.
    with np.errstate(invalid="ignore"):
        quantiles = np.quantile(values, list(QUANTILES.values()), axis=1)  # (Q, M)
        means = values.mean(axis=1)
        sems = values.std(axis=1, ddof=1) / np.sqrt(chains) if chains > 1 else None
    has_neginf = np.isneginf(values).any(axis=1)
    quantiles = np.where(np.isnan(quantiles) & has_neginf, -np.inf, quantiles)
    summary: dict[str, float] = {}
    for index, name in enumerate(per_chain):
        summary[f"{name}_mean"] = float(means[index])
        summary.update({f"{name}_{label}": float(quantiles[q, index])
                        for q, label in enumerate(QUANTILES)})
        if sems is not None:
            summary[f"{name}_sem"] = float(sems[index])
    return summary
