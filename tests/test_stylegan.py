"""StyleGAN2: weight demodulation, truncation in W (lambda = psi, lambda = 1 the plain
path), the image sizes the networks take, determinism, and the issue's check that
truncation raises precision and lowers recall at a tiny size."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mad_core.checkpoint import load_state, state_bytes
from mad_core.factory import build_model, make_evaluator, make_model, make_real_data
from mad_core.fields import SpecError
from mad_core.images.sources import ImageFacts
from mad_core.loop import SelfConsumingLoop
from mad_core.models.stylegan import OPTIONS, check_options
from mad_core.models.stylegan.networks import (Discriminator, Generator, estimate_w_mean,
                                               minibatch_stddev, modulated_conv2d)
from mad_core.samples import Samples
from mad_core.spec import resolve_spec

# A few seconds of training at most: the plumbing, not the quality.
TINY = {"latent_dim": 16, "w_dim": 16, "mapping_layers": 2, "channels": 8, "steps": 4,
        "batch_size": 16, "r1_interval": 2, "truncation_samples": 2000}
# The truncation check: ~15 s of training on one thread. Fit seeds 0-5 with these
# options: precision rose by 0.07 to 0.19 at lambda = 0.5 and recall fell by 0.004 to 0.60
# (seed 0: 0.36). At 200 steps of 32 channels, one seed in six still lost precision
# (undertrained: its mean-w image was not yet a clear digit).
TRUNCATION_CHECK = {"channels": 16, "batch_size": 32, "steps": 400}


def tiny_model(shape=(1, 8, 8), n=48, seed=0, **changes):
    """A StyleGAN2 fitted for a few steps on n uniform images of `shape`."""
    options = {key: field.default for key, field in OPTIONS.items()}
    options.update(TINY, **changes)
    x = np.random.default_rng(100).random((n, *shape), dtype=np.float32)
    return build_model("stylegan2", options).fit(Samples(x), np.random.default_rng(seed))


# -- the modulated convolution ----------------------------------------------------------

def test_demodulation_gives_unit_variance_whatever_the_style_scale():
    # y_bo = sum_ik w''_boik x_bik with sum_ik w''_boik^2 = S / (S + 1e-8) ~ 1 - 1e-8 / S, so
    # for x of i.i.d. N(0, 1) entries y_bo ~ N(0, 1) exactly (S >= 1e-5 here). Pixels 3 apart
    # have disjoint 3x3 receptive fields, so the N = 512 * 16 outputs per channel used are
    # independent, and their mean square is chi^2_N / N: sd sqrt(2 / N) = 0.0156. 5 sd over
    # 8 channels x 3 scales leaves a false alarm probability of 24 x 5.7e-7.
    generator = torch.Generator().manual_seed(0)
    batch, in_channels, out_channels = 512, 16, 8
    weight = torch.randn(out_channels, in_channels, 3, 3, generator=generator) / 12
    x = torch.randn(batch, in_channels, 12, 12, generator=generator)
    direction = torch.rand(batch, in_channels, generator=generator) + 0.1
    tolerance = 5 * math.sqrt(2 / (batch * 16))
    for scale in (0.01, 1.0, 100.0):
        y = modulated_conv2d(x, weight, scale * direction, demodulate=True)
        mean_square = y[:, :, 1::3, 1::3].square().mean(dim=(0, 2, 3))  # rows/cols 1, 4, 7, 10
        assert torch.all((mean_square - 1).abs() < tolerance), (scale, mean_square)
    # Without demodulation the output follows the style's scale (the test can fail).
    small = modulated_conv2d(x, weight, direction, demodulate=False)
    large = modulated_conv2d(x, weight, 100 * direction, demodulate=False)
    assert torch.allclose(large, 100 * small, rtol=1e-5, atol=1e-4)


def test_modulating_activations_equals_modulating_per_sample_weights():
    # The paper's form: one weight tensor per sample, w''_boik, as a grouped convolution.
    generator = torch.Generator().manual_seed(1)
    batch, in_channels, out_channels = 5, 6, 4
    x = torch.randn(batch, in_channels, 7, 7, generator=generator, dtype=torch.float64)
    weight = torch.randn(out_channels, in_channels, 3, 3, generator=generator, dtype=torch.float64)
    styles = torch.randn(batch, in_channels, generator=generator, dtype=torch.float64)
    for demodulate in (True, False):
        per_sample = weight[None] * styles[:, None, :, None, None]  # (B, O, I, 3, 3)
        if demodulate:
            per_sample = per_sample / torch.sqrt(per_sample.square().sum(dim=(2, 3, 4),
                                                                         keepdim=True) + 1e-8)
        expected = F.conv2d(x.reshape(1, batch * in_channels, 7, 7),
                            per_sample.reshape(batch * out_channels, in_channels, 3, 3),
                            padding=1, groups=batch).reshape(batch, out_channels, 7, 7)
        got = modulated_conv2d(x, weight, styles, demodulate=demodulate)
        assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_minibatch_stddev_groups_samples_b_apart():
    x = torch.randn(6, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    out = minibatch_stddev(x, group_size=4)  # 6 samples: groups of 3 = {0, 2, 4}, {1, 3, 5}
    assert out.shape == (6, 3, 4, 4) and torch.equal(out[:, :2], x)
    for members in ([0, 2, 4], [1, 3, 5]):
        std = torch.sqrt(x[members].var(dim=0, unbiased=False) + 1e-8).mean()
        for i in members:
            assert torch.allclose(out[i, 2], std.expand(4, 4))


# -- sizes -------------------------------------------------------------------------------

@pytest.mark.parametrize("size, image_channels", [(8, 1), (32, 3), (64, 3)])
def test_the_networks_take_8_32_and_64_pixels(size, image_channels):
    init = torch.Generator().manual_seed(0)
    common = {"image_size": size, "image_channels": image_channels, "channels": 8,
              "channel_base": 8 * size, "generator": init}
    generator = Generator(latent_dim=8, w_dim=8, mapping_layers=2, mapping_lr_mul=0.01, **common)
    discriminator = Discriminator(mbstd_group=4, **common)
    assert generator.num_ws == 2 * (round(math.log2(size)) - 1)
    images = generator(torch.randn(3, 8, generator=init), torch.Generator().manual_seed(1))
    assert images.shape == (3, image_channels, size, size)
    assert discriminator(images).shape == (3,)


def test_28_pixel_images_train_padded_to_32_and_come_back_28():
    model = tiny_model(shape=(1, 28, 28), n=16, pad_to=32, steps=1)
    assert model.networks_["generator"](torch.randn(2, 16), torch.Generator()).shape[-1] == 32
    x = model.sample(5, 0.7, np.random.default_rng(0)).x
    assert x.shape == (5, 1, 28, 28) and x.min() >= 0 and x.max() <= 1


def _problems(shape, source="mnist", **options):
    values = {"data": {"source": source},
              "model_options": {**{k: f.default for k, f in OPTIONS.items()}, **options}}
    facts = ImageFacts(shape, train_size=1000, num_classes=None, test_size=100)
    return check_options(values, facts)


@pytest.mark.parametrize("shape, pad_to, fix", [
    ((1, 28, 28), None, "set pad_to: 32"),  # MNIST
    ((1, 28, 28), 30, "30 is not a size StyleGAN2 makes .* use 32"),
    ((1, 28, 28), 16, "16 is smaller than the 28x28 images; use 32"),
    ((3, 12, 12), None, "set pad_to: 16"),
    ((3, 8, 16), None, "the images are 8x16.* set pad_to: 16"),
    ((1, 4, 4), None, "set pad_to: 8"),
    ((3, 33, 33), None, "set pad_to: 64"),
])
def test_sizes_the_networks_cannot_make_are_rejected_with_the_fix(shape, pad_to, fix):
    problems = _problems(shape, pad_to=pad_to)
    assert [p.field for p in problems] == ["model_options.pad_to"]
    assert re.search(fix, problems[0].message), problems[0].message


def test_a_folder_of_other_sizes_may_also_be_resized():
    problems = _problems((3, 48, 48), source="folder", pad_to=None)
    assert [p.field for p in problems] == ["model_options.pad_to"]
    assert problems[0].message.endswith("set pad_to: 64, or resize the folder's images with "
                                        "data.resolution: 32 or 64")


@pytest.mark.parametrize("shape, pad_to", [((1, 8, 8), None), ((1, 28, 28), 32),
                                           ((3, 64, 64), None), ((1, 8, 8), 16)])
def test_sizes_the_networks_make_pass(shape, pad_to):
    assert _problems(shape, pad_to=pad_to) == []


def test_a_spec_names_the_field_and_the_fix():
    spec = {"model": "stylegan2", "loop": "fully_synthetic", "n_init": 100, "n_syn": 100,
            "data": {"source": "digits"}}
    resolve_spec(spec)  # 8x8 digits need no padding
    with pytest.raises(SpecError, match=r"model_options.pad_to: 12 is not a size .* use 16"):
        resolve_spec({**spec, "model_options": {"pad_to": 12}})
    with pytest.raises(SpecError, match=r"model_options.channel_base: 4 leaves less than one"):
        resolve_spec({**spec, "model_options": {"channel_base": 4}})


# -- truncation --------------------------------------------------------------------------

def _synthesis_inputs(model, bias, seed=7, count=20):
    """(images, the ws that reached the synthesis network, z) of model.generate."""
    network = model.ema_
    seen = []
    hook = network.synthesis.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            images = model.generate(network, None, count, bias, torch.Generator().manual_seed(seed))
    finally:
        hook.remove()
    z = torch.randn(count, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    return images, seen[0], z


def test_truncation_maps_w_to_w_mean_plus_psi_times_the_deviation():
    model = tiny_model()
    network, w_mean = model.ema_, model.ema_.w_mean.double()
    assert torch.isfinite(w_mean).all()
    _, ws_plain, z = _synthesis_inputs(model, 1.0)
    with torch.no_grad():
        w = network.mapping(z).double()
    # bias 1: the mapping's w, the same at every layer, no truncation.
    assert torch.equal(ws_plain.double(), w[:, None].expand_as(ws_plain))
    for psi in (0.7, 0.5, 0.1):
        _, ws, _ = _synthesis_inputs(model, psi)
        expected = w_mean + psi * (w - w_mean)
        # float32 rounding of O(1) values in two operations: a few 1e-7.
        assert torch.allclose(ws.double(), expected[:, None].expand_as(ws), rtol=0, atol=1e-6)
        assert not torch.allclose(ws, ws_plain, atol=1e-3)


def test_bias_one_never_touches_w_mean():
    model = tiny_model()
    before = model.sample(10, 1.0, np.random.default_rng(3)).x
    for network in (model.ema_, model.networks_["generator"]):
        network.w_mean.fill_(float("nan"))
    after = model.sample(10, 1.0, np.random.default_rng(3)).x
    assert np.array_equal(before, after) and np.isfinite(after).all()
    with pytest.raises(RuntimeError, match="w_mean is not estimated"):
        model.sample(10, 0.5, np.random.default_rng(3))
    with pytest.raises(ValueError, match=r"lambda must lie in \(0, 1\]"):
        model.sample(10, 1.5, np.random.default_rng(3))


def test_w_mean_is_the_mean_of_the_mapping_and_travels_with_the_state():
    model = tiny_model(truncation_samples=4000)
    # The EMA copy samples; the trained network has its own mapping, so its own w_mean.
    for network in (model.ema_, model.networks_["generator"]):
        # The fit's estimate from 4,000 z against one from 4,000 independent z: their
        # difference per coordinate has sd sigma_j sqrt(2 / 4000); 6 sd over 2 x 16 coordinates.
        fresh = estimate_w_mean(network, 4000, torch.Generator().manual_seed(12345))
        with torch.no_grad():
            w = network.mapping(torch.randn(4000, model.latent_dim,
                                            generator=torch.Generator().manual_seed(54321)))
        bound = 6 * w.std(dim=0) * math.sqrt(2 / 4000)
        assert torch.all((network.w_mean - fresh).abs() < bound)
    assert not torch.equal(model.ema_.w_mean, model.networks_["generator"].w_mean)
    # A model loaded from the state samples identically, truncated included.
    loaded = build_model("stylegan2", {**{k: f.default for k, f in OPTIONS.items()}, **TINY,
                                       "truncation_samples": 4000})
    loaded.load_state_dict(load_state(state_bytes(model.state_dict())))
    for bias in (1.0, 0.5):
        assert np.array_equal(model.sample(12, bias, np.random.default_rng(9)).x,
                              loaded.sample(12, bias, np.random.default_rng(9)).x)


def test_the_same_seed_gives_the_same_model():
    once, again, other = tiny_model(seed=4), tiny_model(seed=4), tiny_model(seed=5)
    assert torch.equal(once.ema_.w_mean, again.ema_.w_mean)
    for bias in (1.0, 0.5):
        a = once.sample(8, bias, np.random.default_rng(0)).x
        assert np.array_equal(a, again.sample(8, bias, np.random.default_rng(0)).x)
        assert not np.array_equal(a, other.sample(8, bias, np.random.default_rng(0)).x)
        assert not np.array_equal(a, once.sample(8, bias, np.random.default_rng(1)).x)


# -- the loop ----------------------------------------------------------------------------

def test_truncation_raises_precision_and_lowers_recall_in_generation_1():
    # The check, at a tiny size: one model trained on the 1,348 training digits,
    # judged by the loop's own metrics (LeNet features, k = 5, against the 449 held-out
    # digits) at lambda = 1 and at lambda = psi = 0.5. Truncation concentrates samples
    # around the typical digit: inside more real balls, covering fewer real points.
    base = {"model": "stylegan2", "loop": "fully_synthetic", "n_init": 1348, "n_syn": 1348,
            "generations": 1, "data": {"source": "digits"}, "model_options": TRUNCATION_CHECK,
            "metrics": {"k": 5, "n_eval": 1000}}
    specs = {lam: resolve_spec({**base, "lam": lam}) for lam in (1.0, 0.5)}
    real = make_real_data(specs[1.0])
    model = make_model(specs[1.0], real).fit(Samples(real.source.samples), np.random.default_rng(0))
    scores = {lam: make_evaluator(spec, real)(model, np.random.default_rng(1))
              for lam, spec in specs.items()}
    assert scores[0.5]["precision"] > scores[1.0]["precision"], scores
    assert scores[0.5]["recall"] < scores[1.0]["recall"], scores


def test_a_two_generation_bertrand_loop_on_digits():
    # Bertrand's loop fine-tunes generation 2 from generation 1 (a warm start).
    spec = resolve_spec({"model": "stylegan2", "loop": "bertrand", "n_init": 100,
                         "lambda_b": 0.5, "lam": 0.7, "generations": 2,
                         "data": {"source": "digits"}, "model_options": TINY,
                         "metrics": {"n_eval": 60, "k": 3}, "grid_every": 1})
    loop = SelfConsumingLoop(spec)
    records = []
    for record in loop:
        records.append(record)
        assert any(path.endswith(".png") for path in loop.artifacts)
    assert [(r["generation"], r["n_real"], r["n_synthetic"]) for r in records] == \
        [(1, 100, 0), (2, 100, 50)]
    for record in records:
        assert np.isfinite(record["fid_mean"]) and 0 <= record["precision_mean"] <= 1
        assert 0 <= record["recall_mean"] <= 1
