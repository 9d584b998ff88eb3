"""The DDPM pieces: UNet shapes and generator-drawn initialisation, the noise schedule, the
loss, classifier-free guidance, and the samplers against an analytic denoiser.

For data x_0 ~ N(mu, s^2 I) the optimal noise predictor is linear in x_t,
eps*(x_t, t) = sqrt(1 - abar_t) (x_t - sqrt(abar_t) mu) / (abar_t s^2 + 1 - abar_t),
so every sampler step is an affine map plus Gaussian noise, and the mean and variance
of the samples follow from a float64 recursion over the steps (``sampler_moments``).
That recursion gives the exact moments the samplers should produce, discretisation
and the x_T ~ N(0, I) start included; Monte Carlo estimates must match it within 4
standard errors, and the recursion itself is checked against the data moments and
against the continuous-time (probability flow) solution.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from mad_core.models.ddpm.diffusion import (NoiseSchedule, ddim_timesteps, diffusion_loss,
                                            guided_noise, sample_ancestral, sample_ddim)
from mad_core.models.ddpm.unet import UNet, build_unet

T = 500
NULL = 10
SCHEDULE = NoiseSchedule.linear(T)
SAMPLES = 20_000
DATA_SHAPE = (1, 2, 2)
MU = torch.tensor([[[0.5, -0.3], [0.0, 0.8]]], dtype=torch.float64)  # per-dimension data means
S = 0.5  # data standard deviation


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are small: a second OpenMP thread gains little, and on a busy 2-core
    machine threads waiting for each other slow the samplers down several times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_unet(seed: int = 0, **kwargs) -> UNet:
    """A small UNet whose zero output convolution is replaced by random weights, so outputs
    depend on every input (the freshly built network predicts exactly zero)."""
    generator = torch.Generator().manual_seed(seed)
    settings = dict(image_channels=1, image_size=8, base_channels=8, channel_multipliers=(1, 2))
    network = build_unet(generator=generator, **(settings | kwargs))
    with torch.no_grad():
        nn.init.uniform_(network.out_conv.weight, -0.1, 0.1, generator=generator)
    return network


class GaussianDenoiser(nn.Module):
    """The exact noise predictor for x_0 ~ N(mean, std^2 I) given a label, and for
    x_0 ~ N(null_mean, null_std^2 I) given the null label."""

    def __init__(self, mean: torch.Tensor, std: float, null_mean: torch.Tensor, null_std: float):
        super().__init__()
        self.mean, self.std, self.null_mean, self.null_std = mean, std, null_mean, null_std
        self.abar = SCHEDULE.alphas_cumprod
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(x))
        abar = self.abar[t].view(-1, 1, 1, 1)
        null = (labels == NULL).view(-1, 1, 1, 1)
        mean = torch.where(null, self.null_mean, self.mean)
        variance = torch.where(null, self.null_std ** 2, self.std ** 2)
        eps = (1 - abar).sqrt() * (x.double() - abar.sqrt() * mean) / (abar * variance + 1 - abar)
        return eps.to(x.dtype)


def sampler_moments(mean: np.ndarray, std: float, null_mean: np.ndarray, null_std: float, *,
                    guidance: float, ddim_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-dimension mean and variance of the ancestral (ddim_steps None) or DDIM
    (eta = 0) samples for GaussianDenoiser, from the update formulas of the papers.

    Each step is x' = P x + Q eps + sigma z with guided eps = a x - b, so
    m' = (P + Q a) m - Q b and v' = (P + Q a)^2 v + sigma^2, from m = 0, v = 1.
    """
    betas = np.linspace(1e-4, 0.02, T)
    abar = np.cumprod(1 - betas)
    w = guidance

    def affine_eps(t: int) -> tuple[float, np.ndarray]:
        k = np.sqrt(1 - abar[t]) / (abar[t] * std ** 2 + 1 - abar[t])
        k_null = np.sqrt(1 - abar[t]) / (abar[t] * null_std ** 2 + 1 - abar[t])
        return (1 + w) * k - w * k_null, np.sqrt(abar[t]) * ((1 + w) * k * mean - w * k_null * null_mean)

    if ddim_steps is None:  # Ho et al. 2020, Algorithm 2, sigma_t^2 = beta_tilde_t
        steps = list(range(T - 1, -1, -1))
        next_abar = [abar[t - 1] if t > 0 else 1.0 for t in steps]
    else:  # Song et al. 2021, eq. 12 with eta = 0
        steps = ddim_timesteps(T, ddim_steps)
        next_abar = [abar[t] for t in steps[1:]] + [1.0]
    m, v = np.zeros_like(mean), np.ones_like(mean)
    for t, abar_next in zip(steps, next_abar):
        if ddim_steps is None:
            p = 1 / np.sqrt(1 - betas[t])
            q = -p * betas[t] / np.sqrt(1 - abar[t])
            noise_variance = betas[t] * (1 - abar_next) / (1 - abar[t])
        else:
            p = np.sqrt(abar_next / abar[t])
            q = np.sqrt(1 - abar_next) - p * np.sqrt(1 - abar[t])
            noise_variance = 0.0
        a, b = affine_eps(t)
        m, v = (p + q * a) * m - q * b, (p + q * a) ** 2 * v + noise_variance
    return m, v


def sample(sampler: str, denoiser: GaussianDenoiser, *, guidance: float = 0.0, seed: int = 0,
           samples: int = SAMPLES) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.zeros(samples, dtype=torch.int64)
    common = dict(guidance=guidance, null_label=NULL, generator=generator, device="cpu")
    if sampler == "ancestral":
        return sample_ancestral(denoiser, SCHEDULE, (samples, *DATA_SHAPE), labels, **common)
    return sample_ddim(denoiser, SCHEDULE, (samples, *DATA_SHAPE), labels, steps=50, **common)


def assert_moments_match(samples: torch.Tensor, mean: np.ndarray, variance: np.ndarray) -> None:
    """Per-dimension sample mean and variance within 4 standard errors of the exact values."""
    n = len(samples)
    x = samples.double().numpy()
    sample_mean, sample_variance = x.mean(0), x.var(0, ddof=1)
    assert np.all(np.abs(sample_mean - mean) <= 4 * np.sqrt(variance / n)), (sample_mean, mean)
    assert np.all(np.abs(sample_variance - variance) <= 4 * variance * np.sqrt(2 / (n - 1))), \
        (sample_variance, variance)


# ----------------------------------------------------------------------------- UNet

@pytest.mark.parametrize("size, multipliers, attention", [(8, (1, 2), ()), (32, (1, 2, 2), (16,))])
def test_unet_output_has_the_input_shape_and_depends_on_every_input(size, multipliers, attention):
    network = tiny_unet(image_size=size, channel_multipliers=multipliers, attention_resolutions=attention)
    x = torch.randn(3, 1, size, size, generator=torch.Generator().manual_seed(1))
    t, labels = torch.tensor([0, 250, 499]), torch.tensor([0, 9, NULL])
    out = network(x, t, labels)
    assert out.shape == x.shape
    assert not torch.allclose(out, network(x, t.flip(0), labels))
    assert not torch.allclose(out, network(x, t, labels.flip(0)))
    assert not torch.allclose(out, network(x.flip(-1), t, labels))


def test_a_fresh_unet_predicts_zero_noise():
    network = build_unet(generator=torch.Generator().manual_seed(0), image_channels=1, image_size=8,
                         base_channels=8)
    assert torch.equal(network(torch.randn(2, 1, 8, 8), torch.tensor([3, 4]), torch.tensor([1, NULL])),
                       torch.zeros(2, 1, 8, 8))


@pytest.mark.parametrize("size, multipliers", [(10, (1, 2, 2)), (8, (1, 2, 2, 2, 2))])
def test_image_size_must_survive_the_downsamplings(size, multipliers):
    with pytest.raises(ValueError, match=r"image_size.*channel_multipliers"):
        UNet(image_channels=1, image_size=size, channel_multipliers=multipliers)


def test_attention_at_an_unreached_resolution_is_rejected():
    with pytest.raises(ValueError, match="attention_resolutions"):
        UNet(image_channels=1, image_size=8, channel_multipliers=(1, 2), attention_resolutions=(2,))


def test_build_unet_is_seeded_by_its_generator_and_leaves_the_global_rng_alone():
    settings = dict(image_channels=1, image_size=32, base_channels=8, channel_multipliers=(1, 2, 2),
                    attention_resolutions=(16,))
    global_state = torch.get_rng_state()
    first, again, other = (build_unet(generator=torch.Generator().manual_seed(seed), **settings)
                           for seed in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), global_state)
    reference = UNet(**settings)  # torch's own initialisation, for names, shapes and bounds
    for (name, p), q, r, (_, default) in zip(first.named_parameters(), again.parameters(),
                                             other.parameters(), reference.named_parameters()):
        assert p.shape == default.shape and torch.isfinite(p).all()
        assert torch.equal(p, q), name
        if name.startswith("out_conv"):
            assert not p.any(), name
        elif p.ndim >= 2 and not name.startswith("class_embedding"):  # conv and linear weights
            bound = 1 / math.sqrt(p[0].numel())
            assert p.abs().max() <= bound and not torch.equal(p, r), name
    by_name = dict(first.named_parameters())
    assert torch.equal(by_name["middle.0.residual.norm1.weight"], torch.ones(16))
    embedding = by_name["class_embedding.weight"]
    assert abs(embedding.std().item() - 1) < 0.1  # standard normal, 11 x 32 entries


# ----------------------------------------------------------------------------- schedule

def test_linear_schedule_matches_its_closed_form():
    abar = SCHEDULE.alphas_cumprod
    assert SCHEDULE.steps == T and abar.dtype == torch.float64
    assert torch.all(abar[1:] < abar[:-1])
    beta = [1e-4 + i * (0.02 - 1e-4) / (T - 1) for i in range(T)]
    closed_form = [math.prod(1 - b for b in beta[:t + 1]) for t in (0, 99, T - 1)]
    assert abar[[0, 99, T - 1]].tolist() == pytest.approx(closed_form, rel=1e-12)
    # The T = 500 linear schedule does not reach pure noise: abar_T = 0.00635.
    assert 0.006 < abar[-1] < 0.007
    assert SCHEDULE.posterior_variance[0] == 0
    assert torch.all(SCHEDULE.posterior_variance[1:] < SCHEDULE.betas[1:])


def test_ddim_timesteps_are_evenly_spaced_from_the_last_step_to_zero():
    steps = ddim_timesteps(T, 50)
    assert steps[0] == T - 1 and steps[-1] == 0 and len(set(steps)) == 50
    assert set(np.diff(steps)) <= {-10, -11}
    assert ddim_timesteps(T, T) == list(range(T - 1, -1, -1)) and ddim_timesteps(T, 1) == [T - 1]


# ----------------------------------------------------------------------------- loss

class Recorder(nn.Module):
    """Predicts zero noise and keeps the labels and timesteps it was given."""

    def forward(self, x, t, labels):
        self.t, self.labels = t, labels
        return torch.zeros_like(x)


def test_loss_is_seeded_by_its_generator():
    network, x0 = tiny_unet(), torch.rand(16, 1, 8, 8) * 2 - 1
    labels = torch.arange(16) % 10
    global_state = torch.get_rng_state()
    losses = [diffusion_loss(network, SCHEDULE, x0, labels, label_dropout=0.1, null_label=NULL,
                             generator=torch.Generator().manual_seed(seed)) for seed in (3, 3, 4)]
    assert torch.equal(torch.get_rng_state(), global_state)
    assert losses[0].item() == losses[1].item() != losses[2].item()


def test_label_dropout_replaces_a_tenth_of_the_labels_with_the_null_label():
    n, recorder = 10_000, Recorder()
    labels = torch.arange(n) % 10
    diffusion_loss(recorder, SCHEDULE, torch.zeros(n, *DATA_SHAPE), labels, label_dropout=0.1,
                   null_label=NULL, generator=torch.Generator().manual_seed(0))
    dropped = recorder.labels == NULL
    assert abs(dropped.double().mean().item() - 0.1) <= 4 * math.sqrt(0.1 * 0.9 / n)
    assert torch.equal(recorder.labels[~dropped], labels[~dropped])
    assert recorder.t.dtype == torch.int64 and recorder.t.min() >= 0 and recorder.t.max() < T
    assert recorder.t.double().mean().item() == pytest.approx((T - 1) / 2, abs=4 * T / math.sqrt(12 * n))


def test_loss_target_is_the_noise_that_made_x_t():
    """A network that recovers the noise exactly from x_t and x_0 has zero loss."""
    x0 = torch.rand(256, *DATA_SHAPE) * 2 - 1
    abar = SCHEDULE.alphas_cumprod

    class Oracle(nn.Module):
        def forward(self, x, t, labels):
            a = abar[t].view(-1, 1, 1, 1)
            return ((x.double() - a.sqrt() * x0) / (1 - a).sqrt()).float()

    loss = diffusion_loss(Oracle(), SCHEDULE, x0, torch.zeros(256, dtype=torch.int64), label_dropout=0.0,
                          null_label=NULL, generator=torch.Generator().manual_seed(0))
    assert loss.item() < 1e-6  # float32 rounding of x_t, amplified by 1/sqrt(1 - abar_0) = 100


# ----------------------------------------------------------------------------- guidance

def test_guidance_zero_is_one_plain_call_and_positive_guidance_one_doubled_call(call_counter):
    network = tiny_unet().eval()
    counter = call_counter(network)
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    t, labels = torch.tensor([0, 1, 100, 300, 499]), torch.tensor([0, 3, 5, 9, 2])
    plain = guided_noise(counter, x, t, labels, guidance=0.0, null_label=NULL)
    assert counter.batches == [5] and torch.equal(plain, network(x, t, labels))
    counter.batches.clear()
    guided = guided_noise(counter, x, t, labels, guidance=2.0, null_label=NULL)
    assert counter.batches == [10]
    expected = 3.0 * network(x, t, labels) - 2.0 * network(x, t, torch.full_like(labels, NULL))
    torch.testing.assert_close(guided, expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- samplers

def test_exact_moment_recursion_agrees_with_the_probability_flow_solution():
    """Checks the test's own reference. With y = x / sqrt(abar), sigma^2 = (1 - abar) / abar,
    the DDIM limit is dy/dsigma = eps; with guided eps linear in y the variance solves
    V(0) = V_T (s^2 / (s^2 + sigma_T^2))^(1+w) ((S^2 + sigma_T^2) / S^2)^w, V_T = 1 / abar_T.
    500 DDIM steps are within 1 % (w = 0) to 8 % (w = 3, a 5000-fold contraction) of it."""
    abar_T = float(SCHEDULE.alphas_cumprod[-1])
    sigma2_T = (1 - abar_T) / abar_T
    mean = np.array([0.3])
    for w, tolerance in ((0.0, 0.01), (1.0, 0.03), (3.0, 0.1)):
        ratio = (S ** 2 / (S ** 2 + sigma2_T)) ** (1 + w) * ((4 + sigma2_T) / 4) ** w
        m, v = sampler_moments(mean, S, mean, 2.0, guidance=w, ddim_steps=T)
        assert v[0] == pytest.approx(ratio / abar_T, rel=tolerance)
        assert m[0] == pytest.approx(0.3 * (1 - math.sqrt(ratio)), abs=2e-4)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_samplers_reproduce_gaussian_data_with_the_exact_denoiser(sampler):
    mu = MU.numpy()
    denoiser = GaussianDenoiser(MU, S, MU, S)
    samples = sample(sampler, denoiser)
    assert samples.shape == (SAMPLES, *DATA_SHAPE) and samples.dtype == torch.float32
    assert denoiser.calls == [SAMPLES] * (T if sampler == "ancestral" else 50)
    mean, variance = sampler_moments(mu, S, mu, S, guidance=0.0,
                                     ddim_steps=None if sampler == "ancestral" else 50)
    assert_moments_match(samples.squeeze(1), mean, variance)
    # The allowances for discretisation, exact from the recursion. Ancestral: beta_tilde
    # omits the posterior uncertainty of x_0, 2.1 % of s^2 low; the mean is within 0.2 %.
    # DDIM: 50 steps lose 7.3 % of s^2 (500 steps: 0.4 %), and being deterministic it carries
    # the mismatch of x_T ~ N(0, I) with the true marginal, whose mean is sqrt(abar_T) mu =
    # 0.08 mu, through to the samples: their mean is 3.8 % short of mu.
    if sampler == "ancestral":
        assert np.abs(mean - mu).max() < 0.002 and -0.025 < variance.max() / S ** 2 - 1 < -0.015
    else:
        assert np.abs(mean - mu).max() < 0.04 * np.abs(mu).max()
        assert -0.08 < variance.max() / S ** 2 - 1 < -0.06


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_guidance_sharpens_beyond_the_tilted_density(sampler):
    """Conditional N(mu, s^2), unconditional N(mu, S^2) with S = 4 s. The tilted density
    p(x|y)^(1+w) / p(x)^w has variance 1 / ((1 + w) / s^2 - w / S^2), 0.129 for w = 1,
    but guidance applies the tilt at every noise level, which compounds: the ancestral
    sampler gives 0.085 and DDIM 0.013 (the probability-flow solution: 0.016)."""
    mu = torch.full((1, 1, 1), 0.3, dtype=torch.float64)
    denoiser = GaussianDenoiser(mu, S, mu, 4 * S)
    variances = []
    for w in (0.0, 1.0, 3.0):
        denoiser.calls.clear()
        samples = sample(sampler, denoiser, guidance=w).reshape(SAMPLES, -1)
        assert denoiser.calls == [SAMPLES * (2 if w else 1)] * (T if sampler == "ancestral" else 50)
        mean, variance = sampler_moments(np.full(4, 0.3), S, np.full(4, 0.3), 4 * S, guidance=w,
                                         ddim_steps=None if sampler == "ancestral" else 50)
        assert_moments_match(samples, mean, variance)
        variances.append(samples.var(0).mean().item())
    tilted = 1 / (2 / S ** 2 - 1 / (4 * S) ** 2)
    assert variances[0] > variances[1] > variances[2]
    assert variances[1] < 0.8 * tilted < S ** 2 / 2 < S ** 2


def test_ddim_with_full_noise_over_all_steps_is_the_ancestral_sampler():
    denoiser = GaussianDenoiser(MU, S, MU, 2 * S)
    labels = torch.tensor([0, NULL] * 50)
    common = dict(guidance=1.5, null_label=NULL, device="cpu")
    ancestral = sample_ancestral(denoiser, SCHEDULE, (100, *DATA_SHAPE), labels,
                                 generator=torch.Generator().manual_seed(5), **common)
    ddim = sample_ddim(denoiser, SCHEDULE, (100, *DATA_SHAPE), labels, steps=T, eta=1.0,
                       generator=torch.Generator().manual_seed(5), **common)
    torch.testing.assert_close(ddim, ancestral, rtol=0, atol=1e-4)


def test_samplers_are_seeded_by_their_generator():
    network = tiny_unet(dropout=0.1).train()
    labels = torch.tensor([0, 7, NULL])
    schedule = NoiseSchedule.linear(40)  # determinism needs no long chain
    global_state = torch.get_rng_state()

    def run(sampler, seed, **kwargs):
        return sampler(network, schedule, (3, 1, 8, 8), labels, guidance=1.0, null_label=NULL,
                       generator=torch.Generator().manual_seed(seed), device="cpu", **kwargs)

    for sampler, kwargs in ((sample_ancestral, {}), (sample_ddim, dict(steps=20)),
                            (sample_ddim, dict(steps=20, eta=1.0))):
        first, again, other = run(sampler, 0, **kwargs), run(sampler, 0, **kwargs), run(sampler, 1, **kwargs)
        assert torch.equal(first, again) and not torch.allclose(first, other)
    assert torch.equal(torch.get_rng_state(), global_state)
    assert network.training  # dropout was off while sampling, and the mode is restored
