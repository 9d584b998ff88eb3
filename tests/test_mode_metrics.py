"""Mode metrics of the 25-mode grid: counted by hand on constructed samples, and a
perfect sampler (the source itself) covers every mode with nearly all samples close."""

from __future__ import annotations

import numpy as np

from mad_core.metrics.modes import mode_metrics
from mad_core.sources import GaussianGridMixture


def test_counts_follow_the_definition():
    modes = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    # 20 samples: 12 on mode 0, 7 on mode 1 (one of them 4 std away), 1 far from all.
    samples = np.concatenate([np.zeros((12, 2)), np.tile([10.0, 0.0], (6, 1)),
                              [[10.0, 4.0]], [[5.0, 5.0]]])
    metrics = mode_metrics(samples, modes, std=1.0, min_share=0.5)
    # needed = 0.5 * 20 / 3 = 3.33: modes 0 (12) and 1 (6) count, mode 2 (0) does not.
    assert metrics == {"modes_covered": 2.0, "high_quality": 18 / 20}


def test_the_source_itself_covers_every_mode():
    source = GaussianGridMixture()
    samples = source.draw(2500, np.random.default_rng(0))
    metrics = mode_metrics(samples, source.modes, source.std)
    assert metrics["modes_covered"] == 25
    # P(|N(0, I_2)| <= 3) = 1 - exp(-4.5) = 0.9889; 5 binomial standard errors of slack.
    inside = 1 - np.exp(-4.5)
    assert abs(metrics["high_quality"] - inside) < 5 * np.sqrt(inside * (1 - inside) / 2500)


def test_a_collapsed_sampler_covers_one_mode():
    source = GaussianGridMixture()
    samples = source.modes[7] + source.std * np.random.default_rng(1).standard_normal((500, 2))
    assert mode_metrics(samples, source.modes, source.std)["modes_covered"] == 1
