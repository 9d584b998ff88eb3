"""The Glow-style normalizing flow: an exact bijection with an exact log-determinant,
data-initialised ActNorm that a warm start keeps, a maximum-likelihood fit that recovers
a Gaussian, latent temperature sqrt(lambda) with lambda = 1 the plain path, randomness
from the passed generators only, and a short loop on Rosenbrock."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mad_core.factory import make_model, make_real_data
from mad_core.fields import SpecError
from mad_core.loop import SelfConsumingLoop
from mad_core.models.flow.layers import ActNorm, AffineCoupling, Flow
from mad_core.samples import Samples
from mad_core.spec import resolve_spec

MEAN = np.array([1.0, -2.0])
COV = np.array([[2.0, 1.2], [1.2, 1.5]])
SMALL = {"coupling_layers": 2, "hidden": 16}


def flow_model(**options):
    """An unfitted NormalizingFlow with `options` over the flow's defaults."""
    spec = resolve_spec({"model": "flow", "loop": "fully_synthetic", "n_init": 10, "n_syn": 10,
                         "generations": 1, "data": {"source": "gaussian", "dim": 2},
                         "model_options": options})
    return make_model(spec, make_real_data(spec))


def gaussian_draws(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return MEAN + rng.standard_normal((n, 2)) @ np.linalg.cholesky(COV).T


def scrambled_flow(dim: int, seed: int = 0) -> Flow:
    """A float64 flow whose every parameter is perturbed, so no coupling is the identity."""
    generator = torch.Generator().manual_seed(seed)
    flow = Flow(dim, coupling_layers=3, hidden=8, hidden_layers=2, generator=generator).double()
    flow(torch.randn(50, dim, generator=generator, dtype=torch.float64))  # ActNorm init
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator,
                                             dtype=torch.float64))
    return flow


@pytest.mark.parametrize("dim", [2, 3])
def test_flow_inverts_and_its_log_det_is_the_jacobian_s(dim):
    flow = scrambled_flow(dim)
    x = 2 * torch.randn(64, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z, log_det = flow(x)
    # float64 round trip through 9 steps: errors of order 1e-15 times the steps' gains.
    assert torch.allclose(flow.inverse(z), x, rtol=0, atol=1e-10)
    assert not torch.allclose(z, x, atol=0.1)  # the flow does something
    for point, value in zip(x[:4], log_det[:4]):
        jacobian = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], point)
        sign, log_abs = torch.linalg.slogdet(jacobian)
        assert sign != 0
        assert math.isclose(float(log_abs), float(value.detach()), abs_tol=1e-10)


def test_log_prob_is_the_density_the_sampler_draws_from():
    # The likelihood integrated over a box (trapezoid rule on a grid; halving the
    # spacing changes it by < 1e-5) is the probability that f^-1(z), z ~ N(0, I), falls
    # in the box, estimated from n draws: binomial standard error, 5 of them.
    flow = scrambled_flow(2)
    side = torch.linspace(-12, 12, 401, dtype=torch.float64)
    with torch.no_grad():
        density = flow.log_prob(torch.cartesian_prod(side, side)).exp().reshape(401, 401)
        n = 200_000
        z = torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        draws = flow.inverse(z)
    step = float(side[1] - side[0])
    mass = float(torch.trapezoid(torch.trapezoid(density, dx=step), dx=step))
    inside = float((draws.abs() <= 12).all(dim=1).double().mean())
    assert 0.5 < inside < 0.99  # the box cuts the tails: the check sees their shape
    assert mass == pytest.approx(inside, abs=5 * math.sqrt(inside * (1 - inside) / n) + 1e-4)


def test_actnorm_initialises_on_its_first_batch_only_and_keeps_that_through_state_dict():
    generator = torch.Generator().manual_seed(0)
    first = 3.0 + 5.0 * torch.randn(500, 2, generator=generator)
    layer = ActNorm(2)
    y, log_det = layer(first)
    assert bool(layer.initialized)
    assert torch.allclose(y.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(y.std(0, unbiased=False), torch.ones(2), atol=1e-5)
    assert torch.allclose(log_det, -first.std(0, unbiased=False).log().sum().expand(500))
    # A second batch passes through the same map: no re-initialisation.
    second = -7.0 + 0.1 * torch.randn(500, 2, generator=generator)
    assert torch.allclose(layer(second)[0], (second + layer.shift) * layer.log_scale.exp())
    assert float(layer(second)[0].detach().std(0).max()) < 0.1  # its own init: std 1
    # A fresh layer loaded from the state takes the same map, not one of its own batch.
    restored = ActNorm(2)
    restored.load_state_dict(layer.state_dict())
    assert torch.equal(restored(second)[0], layer(second)[0])
    assert torch.allclose(restored.inverse(restored(second)[0]), second, atol=1e-5)
    with pytest.raises(RuntimeError, match="before the layer saw data"):
        ActNorm(2).inverse(second)


def test_a_fresh_flow_is_affine_and_each_actnorm_standardises_what_reaches_it():
    # Couplings start as the identity (zero last layer), and every ActNorm initialises
    # on what the steps before it make of the first batch.
    x = torch.from_numpy(gaussian_draws(2000, seed=0)).float()
    flow = Flow(2, coupling_layers=3, hidden=8, hidden_layers=2,
                generator=torch.Generator().manual_seed(0))
    h = x
    for step in flow.steps:
        h, _ = step(h)
        if isinstance(step, ActNorm):
            assert torch.allclose(h.mean(0), torch.zeros(2), atol=1e-4)
            assert torch.allclose(h.std(0, unbiased=False), torch.ones(2), atol=1e-4)
    z, log_det = flow(x)
    assert torch.equal(z, h)
    assert torch.allclose(log_det, log_det[0].expand(2000))  # affine: constant Jacobian
    for step in flow.steps:
        if isinstance(step, AffineCoupling):
            assert torch.equal(step(x)[0], x)


def test_fit_recovers_a_gaussian_and_bias_scales_its_covariance():
    n_train, n_draw = 4000, 20000
    model = flow_model(**SMALL, epochs=10)
    model.fit(Samples(gaussian_draws(n_train, seed=1)), np.random.default_rng(0))
    # Optimum: the entropy of N(MEAN, COV) in the standardised scale the flow sees.
    standardised_cov = COV / np.sqrt(np.outer(np.diag(COV), np.diag(COV)))
    entropy = 0.5 * np.log(np.linalg.det(2 * np.pi * np.e * standardised_cov))
    # Last batch of 256: its nll is a mean of 256 log-densities whose sd is sqrt(d / 2) = 1.
    assert model.final_losses_["nll"] == pytest.approx(entropy, abs=4 / np.sqrt(256))

    samples = model.sample(n_draw, 1.0, np.random.default_rng(1)).x
    # Sampling error of the fitted model's draws plus that of the training set the fit
    # saw: the standard errors add in variance. 5 standard errors.
    scale = np.sqrt(1 / n_train + 1 / n_draw)
    assert np.all(np.abs(samples.mean(0) - MEAN) < 5 * scale * np.sqrt(np.diag(COV)))
    cov_se = np.sqrt(np.outer(np.diag(COV), np.diag(COV)) + COV**2) * scale
    assert np.all(np.abs(np.cov(samples.T) - COV) < 5 * cov_se)

    # lambda: covariance lambda * Sigma of the fitted model, whose Sigma is the lambda = 1
    # estimate above; compare the two sample covariances with both draws' errors.
    lam = 0.5
    cooled = model.sample(n_draw, lam, np.random.default_rng(2)).x
    fitted_cov = np.cov(samples.T)
    pair_se = (np.sqrt(np.outer(np.diag(fitted_cov), np.diag(fitted_cov)) + fitted_cov**2)
               * lam * np.sqrt(2 / n_draw))
    assert np.all(np.abs(np.cov(cooled.T) - lam * fitted_cov) < 5 * pair_se)


def linear_model():
    """A fitted NormalizingFlow whose couplings are reset to the identity: the whole
    flow is then the affine map of its ActNorms and invertible linear maps."""
    model = flow_model(**SMALL, steps=30)
    model.fit(Samples(gaussian_draws(1000, seed=2)), np.random.default_rng(0))
    with torch.no_grad():
        for step in model.networks_["model"].steps:
            if isinstance(step, AffineCoupling):
                step.net[-1].weight.zero_()
                step.net[-1].bias.zero_()
    return model


def test_temperature_is_sqrt_lambda_of_the_latent():
    model = linear_model()
    flow = model.networks_["model"]
    n, lam = 20000, 0.6
    plain = model.sample(n, 1.0, np.random.default_rng(3)).x.astype(np.float64)
    cooled = model.sample(n, lam, np.random.default_rng(3)).x.astype(np.float64)
    # Same rng, same latents z: an affine flow maps sqrt(lam) z to the centre plus
    # sqrt(lam) times z's deviation, for every single sample.
    with torch.no_grad():
        centre = flow.inverse(torch.zeros(1, 2)).numpy() * model.data_scale_ + model.data_shift_
    assert np.allclose(cooled - centre, np.sqrt(lam) * (plain - centre), atol=1e-4)
    # And in distribution: covariance lam * A A^T, A the inverse map's matrix (data scale).
    with torch.no_grad():
        inverse_matrix = torch.autograd.functional.jacobian(
            lambda z: flow.inverse(z[None])[0], torch.zeros(2)).double().numpy()
    a = model.data_scale_[:, None] * inverse_matrix
    expected = lam * a @ a.T
    se = np.sqrt(np.outer(np.diag(expected), np.diag(expected)) + expected**2) / np.sqrt(n)
    assert np.all(np.abs(np.cov(cooled.T) - expected) < 5 * se)


def test_bias_one_is_the_plain_latent_and_bias_is_checked():
    model = flow_model(**SMALL, steps=5)
    model.fit(Samples(gaussian_draws(300, seed=0)), np.random.default_rng(0))
    got = model.sample(100, 1.0, np.random.default_rng(7)).x
    # The base seeds the sampler's torch generator with the rng's next draw; bias = 1
    # must then be exactly f^-1 of that N(0, I) draw, nothing multiplied.
    seed = int(np.random.default_rng(7).integers(2**63 - 1))
    z = torch.randn(100, 2, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model.networks_["model"].inverse(z).numpy()
    np.testing.assert_array_equal(got, (expected * model.data_scale_ + model.data_shift_)
                                  .astype(np.float32))
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"lambda must lie in \(0, 1\]"):
            model.sample(10, bad, np.random.default_rng(0))


def test_randomness_only_from_the_passed_generators_and_state_round_trips():
    data = Samples(gaussian_draws(300, seed=0))
    torch.manual_seed(123)
    one = flow_model(**SMALL, steps=8).fit(data, np.random.default_rng(5))
    first = one.sample(50, 0.7, np.random.default_rng(1)).x
    torch.manual_seed(999)  # the global generator must not matter
    two = flow_model(**SMALL, steps=8).fit(data, np.random.default_rng(5))
    np.testing.assert_array_equal(two.sample(50, 0.7, np.random.default_rng(1)).x, first)
    other = flow_model(**SMALL, steps=8).fit(data, np.random.default_rng(6))
    assert not np.array_equal(other.sample(50, 0.7, np.random.default_rng(1)).x, first)
    restored = flow_model(**SMALL).load_state_dict(one.state_dict())
    np.testing.assert_array_equal(restored.sample(50, 0.7, np.random.default_rng(1)).x, first)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_warm_start_keeps_the_actnorm_it_loads(ema_decay):
    lr, steps = 1e-3, 3
    first = flow_model(**SMALL, steps=10, lr=lr, ema_decay=ema_decay)
    first.fit(Samples(gaussian_draws(300, seed=0)), np.random.default_rng(0))
    shifted = Samples(gaussian_draws(300, seed=1) + 20.0)  # 10+ sd away in network scale
    warm = flow_model(**SMALL, steps=steps, lr=lr, ema_decay=ema_decay)
    warm.fit(shifted, np.random.default_rng(1), previous=first)
    cold = flow_model(**SMALL, steps=steps, lr=lr, ema_decay=ema_decay)
    cold.fit(shifted, np.random.default_rng(1))
    before = first.networks_["model"].steps[0].shift
    # Adam moves a parameter by at most lr (1 - beta1) / sqrt(1 - beta2) ~ 3.2 lr a step.
    bound = steps * lr * (1 - 0.9) / math.sqrt(1 - 0.999)
    assert torch.allclose(warm.networks_["model"].steps[0].shift, before, atol=bound)
    # From scratch the standardisation absorbs the shift, and ActNorm starts on the data.
    assert torch.allclose(cold.networks_["model"].steps[0].shift, torch.zeros(2), atol=0.3)
    if ema_decay:
        # The EMA copy starts from the data-initialised ActNorm, not from (0, 1).
        assert torch.allclose(cold.ema_.steps[0].shift, cold.networks_["model"].steps[0].shift,
                              atol=bound)


def test_spec_rejects_one_dimensional_data():
    with pytest.raises(SpecError, match=r"data\.dim: model flow needs d >= 2"):
        resolve_spec({"model": "flow", "loop": "fully_synthetic", "n_init": 10, "n_syn": 10,
                      "generations": 1, "data": {"source": "gaussian", "dim": 1}})
    for data in ({"source": "gaussian", "dim": 2}, {"source": "rosenbrock"},
                 {"source": "gmm_grid"}):
        resolve_spec({"model": "flow", "loop": "fully_synthetic", "n_init": 10, "n_syn": 10,
                      "generations": 1, "data": data})


def test_defaults_are_mads_glow_on_rosenbrock():
    spec = resolve_spec({"model": "flow", "loop": "fully_synthetic", "n_init": 10, "n_syn": 10,
                         "generations": 1, "data": {"source": "rosenbrock"}})
    options = spec.model_options
    assert (options["coupling_layers"], options["hidden"], options["epochs"],
            options["batch_size"]) == (8, 64, 20, 256)


def test_a_two_generation_loop_on_rosenbrock_runs_and_repeats():
    spec = resolve_spec({"model": "flow", "loop": "fully_synthetic", "n_init": 200,
                         "n_syn": 200, "lam": 0.75, "generations": 2, "seed": 3,
                         "data": {"source": "rosenbrock"},
                         "model_options": {**SMALL, "steps": 15},
                         "metrics": {"n_eval": 100}})
    records = list(SelfConsumingLoop(spec))
    again = list(SelfConsumingLoop(spec))
    assert [r["generation"] for r in records] == [1, 2]
    for record, repeat in zip(records, again):
        assert record["n_synthetic"] == (0 if record["generation"] == 1 else 200)
        for key, value in record.items():
            if key != "seconds":
                assert value == repeat[key], key
                assert np.isfinite(value), key
