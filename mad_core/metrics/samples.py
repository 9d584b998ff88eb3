"""Sample-based metrics for models without a closed form: k-NN precision/recall and
the empirical 2-Wasserstein distance (exact optimal transport, POT)."""

from __future__ import annotations

import numpy as np
import ot

from mad_core.metrics.precision_recall import precision_recall


def empirical_w2_sq(samples: np.ndarray, reference: np.ndarray) -> float:
    """Squared W2 between two equal-weight point clouds (n, d) and (m, d), exact EMD."""
    cost = ot.dist(samples, reference, metric="sqeuclidean")
    uniform_a = np.full(len(samples), 1.0 / len(samples))
    uniform_b = np.full(len(reference), 1.0 / len(reference))
    return float(ot.emd2(uniform_a, uniform_b, cost, numItermax=10_000_000))


def sample_metrics(samples: np.ndarray, reference: np.ndarray, k: int) -> dict[str, float]:
    """precision, recall (k-NN balls, Kynkaanniemi et al.) and w2_emp, w2_sq_emp."""
    scores = precision_recall(reference, samples, k=k)
    w2_sq = empirical_w2_sq(samples, reference)
    return {"precision": scores.precision, "recall": scores.recall,
            "w2_emp": float(np.sqrt(w2_sq)), "w2_sq_emp": w2_sq}
