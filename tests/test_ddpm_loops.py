"""The DDPM through the loop families on digits: labels travel with real and synthetic
samples, training sets have the sizes the loop promises, and the finite dataset is
drawn without replacement."""

from __future__ import annotations

import pytest

from mad_core.loop import SelfConsumingLoop
from mad_core.spec import resolve_spec

TINY = {"base_channels": 8, "channel_multipliers": [1, 2], "steps": 8, "batch_size": 64,
        "timesteps": 50, "sampler": "ddim", "sampler_steps": 3}


def run(**spec):
    return list(SelfConsumingLoop(resolve_spec({
        "model": "ddpm", "generations": 3, "lam": 0.5, "data": {"source": "digits"},
        "metrics": {"n_eval": 60, "k": 3}, "model_options": TINY, **spec})))


@pytest.mark.parametrize("loop, sizes, expected", [
    ("fresh_data", {"n_init": 100, "n_real": 50, "n_syn": 30},
     [(100, 0), (50, 30), (50, 30)]),
    ("synthetic_augmentation", {"n_init": 100, "n_real": 80, "n_syn": 40,
                                "synthetic_source": "pool"},
     [(100, 0), (80, 40), (80, 80)]),  # the pool accumulates (t - 1) x n_syn
])
def test_training_sets_and_labels_follow_the_loop(loop, sizes, expected):
    records = run(loop=loop, **sizes)
    assert [(r["n_real"], r["n_synthetic"]) for r in records] == expected
    # Class fidelity needs the labels the samples were generated for.
    assert all(0 <= r["class_fidelity_mean"] <= 1 for r in records)


def test_fresh_draws_that_fit_only_with_a_new_pass_need_reshuffle():
    # 1,348 training digits: 600 + 2 x 400 fresh ones need a second pass.
    spec = {"loop": "fresh_data", "n_init": 600, "n_real": 400, "n_syn": 20}
    with pytest.raises(ValueError, match="data.reshuffle: true"):
        run(**spec)
    records = run(**spec, data={"source": "digits", "reshuffle": True})
    assert [r["n_real"] for r in records] == [600, 400, 400]
