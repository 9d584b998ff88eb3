"""The contract every registered model keeps, checked over the registry (a model added
without an entry here fails ``test_every_registered_model_is_covered``).

- sampling before fit is a clear error;
- the same spec and seed give the same records on CPU, another seed other records;
- a loop resumed from a checkpoint (written and read as a sweep does: tensors and arrays,
  weights_only) continues exactly like an uninterrupted one, warm starts included;
- bias = 1 takes the plain sampling path (no guidance, no truncation, no rescaling).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mad_core.checkpoint import load_state, state_bytes
from mad_core.factory import make_model, make_real_data
from mad_core.loop import TIMING_KEYS, SelfConsumingLoop
from mad_core.models import MODELS
from mad_core.models.base import NotFittedError
from mad_core.samples import Samples
from mad_core.spec import resolve_spec

TINY_DDPM = {"base_channels": 8, "channel_multipliers": [1, 2], "steps": 12, "batch_size": 64,
             "timesteps": 50, "sampler": "ddim", "sampler_steps": 4}

# One small trial per model, in a loop that exercises its warm start where it has one.
CONTRACT_SPECS = {
    "gaussian": {"model": "gaussian", "loop": "fresh_data", "n_init": 30, "n_real": 20,
                 "n_syn": 20, "lam": 0.8, "simulation": "naive", "chains": 2,
                 "data": {"source": "gaussian", "dim": 3}},
    "gmm": {"model": "gmm", "loop": "bertrand", "n_init": 200, "lambda_b": 0.5, "lam": 0.8,
            "model_options": {"n_components": 4},
            "data": {"source": "gmm_grid", "modes_per_side": 2}, "metrics": {"n_eval": 150}},
    "ddpm": {"model": "ddpm", "loop": "bertrand", "n_init": 120, "lambda_b": 0.5, "lam": 0.5,
             "model_options": TINY_DDPM, "data": {"source": "digits"},
             "metrics": {"n_eval": 60, "k": 3}, "grid_every": 1, "snapshot_every": 2},
    "flow": {"model": "flow", "loop": "bertrand", "n_init": 200, "lambda_b": 0.5, "lam": 0.75,
             "model_options": {"coupling_layers": 2, "hidden": 16, "steps": 10, "batch_size": 64,
                               "ema_decay": 0.9},
             "data": {"source": "rosenbrock"}, "metrics": {"n_eval": 150}, "snapshot_every": 2},
    "stylegan2": {"model": "stylegan2", "loop": "bertrand", "n_init": 120, "lambda_b": 0.5,
                  "lam": 0.5,
                  "model_options": {"latent_dim": 16, "w_dim": 16, "mapping_layers": 2,
                                    "channels": 8, "steps": 6, "batch_size": 32,
                                    "r1_interval": 2, "truncation_samples": 500},
                  "data": {"source": "digits"}, "metrics": {"n_eval": 60, "k": 3},
                  "grid_every": 1, "snapshot_every": 2},
    "wgan_gp": {"model": "wgan_gp", "loop": "bertrand", "n_init": 200, "lambda_b": 0.5,
                "lam": 0.7,
                "model_options": {"latent_dim": 4, "width": 16, "depth": 2, "steps": 10,
                                  "batch_size": 64, "ema_decay": 0.9},
                "data": {"source": "gmm_grid", "modes_per_side": 2},
                "metrics": {"n_eval": 150}, "snapshot_every": 2},
}
GENERATIONS = 4


def spec_of(name: str, **changes):
    return resolve_spec({**CONTRACT_SPECS[name], "generations": GENERATIONS, **changes})


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def fitted(name: str, seed: int = 0):
    spec = spec_of(name)
    real = make_real_data(spec)
    rng = np.random.default_rng(seed)
    data = real.source
    if hasattr(data, "labels"):
        index = rng.choice(len(data), 100, replace=False)
        samples = Samples(data.samples[index], data.labels[index])
    else:
        samples = Samples(data.draw(200, rng))
    return make_model(spec, real).fit(samples, rng)


def test_every_registered_model_is_covered():
    assert set(MODELS) == set(CONTRACT_SPECS)


@pytest.mark.parametrize("name", CONTRACT_SPECS)
def test_sampling_before_fit_is_a_clear_error(name):
    spec = spec_of(name)
    model = make_model(spec, make_real_data(spec))
    with pytest.raises(NotFittedError, match="before fit"):
        model.sample(3, 1.0, np.random.default_rng(0))


@pytest.mark.parametrize("name", CONTRACT_SPECS)
def test_same_seed_same_records(name):
    once = without_timing(SelfConsumingLoop(spec_of(name, generations=2)))
    again = without_timing(SelfConsumingLoop(spec_of(name, generations=2)))
    other = without_timing(SelfConsumingLoop(spec_of(name, generations=2, seed=5)))
    assert once == again
    assert once != other


@pytest.mark.parametrize("name", CONTRACT_SPECS)
def test_checkpoint_round_trip_continues_exactly(name):
    spec = spec_of(name)
    uninterrupted = SelfConsumingLoop(spec)
    records, files = [], []
    for record in uninterrupted:
        records.append(record)
        files.append(uninterrupted.artifacts)

    first = SelfConsumingLoop(spec)
    resumed_records = [first.step() for _ in range(2)]
    state = load_state(state_bytes(first.state_dict()))
    del first
    second = SelfConsumingLoop(spec, state=state)
    resumed_files = []
    for record in second:
        resumed_records.append(record)
        resumed_files.append(second.artifacts)
    assert without_timing(resumed_records) == without_timing(records)
    # Sample grids are pixel-identical; snapshots hold identical weights.
    for expected, got in zip(files[2:], resumed_files):
        assert expected.keys() == got.keys()
        for path in expected:
            if path.endswith(".png"):
                assert expected[path] == got[path], path
            else:
                _assert_same_state(load_state(expected[path])["state"],
                                   load_state(got[path])["state"])


def _assert_same_state(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same_state(a[key], b[key])
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b)
    else:
        assert a == b


def test_gaussian_bias_one_is_the_fitted_distribution():
    model = fitted("gaussian")
    x = model.sample(50, 1.0, np.random.default_rng(3)).x
    noise = np.random.default_rng(3).standard_normal((50, 3))
    assert np.allclose(x, model.mean_ + noise @ np.linalg.cholesky(model.cov_).T)


def test_mixture_bias_one_keeps_the_fitted_components():
    model = fitted("gmm")
    plain = model.sample(500, 1.0, np.random.default_rng(3)).x
    shrunk = model.sample(500, 0.25, np.random.default_rng(3)).x
    # Same rng, same components and noise: bias only scales each deviation from its
    # component mean m by sqrt(bias), so m = plain - (plain - shrunk) / (1 - 0.5) must be
    # a fitted mean for every sample, and bias 1 is the fitted mixture itself.
    means = plain - (plain - shrunk) / 0.5
    distance = np.abs(means[:, None] - model.mixture_.means_[None]).max(-1).min(1)
    assert distance.max() < 1e-9


def test_ddpm_bias_one_is_one_unguided_call_per_step(call_counter):
    model = fitted("ddpm")
    counting = call_counter(model.ema_ or model.networks_["model"])
    model.ema_ = counting
    model.sample(10, 1.0, np.random.default_rng(0))
    assert counting.batches == [10] * TINY_DDPM["sampler_steps"]
    counting.batches.clear()
    model.sample(10, 0.5, np.random.default_rng(0))  # guidance w = 1: conditional + null
    assert counting.batches == [20] * TINY_DDPM["sampler_steps"]


def test_wgan_bias_one_feeds_the_generator_the_latent_as_drawn():
    model = fitted("wgan_gp")
    network, latents = model.ema_, []

    class Recording(torch.nn.Module):
        def forward(self, z):
            latents.append(z.clone())
            return network(z)

    model.ema_ = Recording()
    plain = model.sample(500, 1.0, np.random.default_rng(0)).x
    shrunk = model.sample(500, 0.5, np.random.default_rng(0)).x
    drawn, truncated = latents
    assert torch.equal(truncated, drawn * 0.5)
    assert abs(float(drawn.std()) - 1) < 0.05  # 2,000 N(0, 1) draws: sd error ~0.016
    assert not np.allclose(plain, shrunk)


def test_stylegan2_bias_one_skips_truncation():
    model = fitted("stylegan2")
    before = model.sample(10, 1.0, np.random.default_rng(0)).x
    for network in (model.ema_, model.networks_["generator"]):
        network.w_mean.fill_(float("nan"))  # any use of w_mean would turn samples to NaN
    assert np.array_equal(model.sample(10, 1.0, np.random.default_rng(0)).x, before)
    with pytest.raises(RuntimeError, match="w_mean"):
        model.sample(10, 0.5, np.random.default_rng(0))


def test_flow_bias_one_is_the_plain_latent():
    model = fitted("flow")
    got = model.sample(50, 1.0, np.random.default_rng(3)).x
    seed = int(np.random.default_rng(3).integers(2**63 - 1))
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        x = (model.ema_ or model.networks_["model"]).inverse(z).numpy()
    np.testing.assert_array_equal(got, (x * model.data_scale_ + model.data_shift_).astype(np.float32))
