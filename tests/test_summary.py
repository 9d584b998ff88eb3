"""Per-generation summaries over chains: every metric summarised as its own 1-D array
would be, infinities included."""

from __future__ import annotations

import numpy as np

from mad_core.metrics.summary import summarise


def test_each_metric_is_summarised_as_on_its_own():
    rng = np.random.default_rng(3)
    per_chain = {"w2_sq": rng.gamma(2.0, size=9), "trace": rng.normal(100, 5, size=9)}
    summary = summarise(per_chain)
    for name, values in per_chain.items():
        assert summary[f"{name}_mean"] == values.mean()
        assert summary[f"{name}_sem"] == values.std(ddof=1) / 3
        assert [summary[f"{name}_{q}"] for q in ("q05", "median", "q95")] == list(
            np.quantile(values, [0.05, 0.5, 0.95]))
    assert list(summary)[:5] == ["w2_sq_mean", "w2_sq_q05", "w2_sq_median", "w2_sq_q95",
                                 "w2_sq_sem"]


def test_singular_chains_give_minus_infinity_not_nan():
    logdet = np.array([-np.inf, -np.inf, -np.inf, 1.0])
    summary = summarise({"logdet": logdet, "trace": np.ones(4)})
    assert summary["logdet_q05"] == summary["logdet_median"] == -np.inf
    assert summary["logdet_mean"] == -np.inf and np.isnan(summary["logdet_sem"])
    assert summary["trace_sem"] == 0.0


def test_one_chain_has_no_standard_error():
    assert "x_sem" not in summarise({"x": np.array([2.0])})
