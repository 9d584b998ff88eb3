"""An unconditional StyleGAN2 (Karras et al. 2020) with truncation in W: its spec options
and rules.

The model (``model.StyleGAN2``) and its networks (``networks``) import torch; this module
does not, so a spec validates fast. Sampling bias lambda is the truncation psi:
w' = w_mean + lambda (w - w_mean), with lambda = 1 the plain path.

Defaults are a CPU-sized model for 8x8 digits (55k + 46k parameters, 600 steps of 32).
For a GPU at 32 px: latent_dim = w_dim = channels = 256, mapping_layers 8,
channel_base 8192 (5.4M + 5.4M parameters); at 64 px: 512, 8 and 16384 (23.8M + 23.4M,
512 maps down to 32 px and 256 at 64 px; StyleGAN2's own 1024 px model has 30M + 29M).
"""

from __future__ import annotations

import dataclasses

from mad_core.fields import Field, Problem, size_field
from mad_core.models.neural.options import training_options

SMALLEST_SIZE, LARGEST_SIZE = 8, 1024

_training = training_options(epochs=1, batch_size=32, lr=0.002, ema_decay=0.99)
# GANs are not gradient-clipped (StyleGAN2 is not): R1 and the non-saturating loss set the
# gradient scale, and a clip at 1 would silently shrink the discriminator's steps.
_training["grad_clip"] = dataclasses.replace(_training["grad_clip"], default=None)
# A fixed number of steps is the natural unit of GAN training (StyleGAN2 counts images).
_training["steps"] = dataclasses.replace(_training["steps"], default=600)

OPTIONS: dict[str, Field] = {
    "latent_dim": size_field(64, help="dimension of the latent z (StyleGAN2: 512)"),
    "w_dim": size_field(64, help="dimension of the intermediate latent w, where truncation "
                                 "happens (StyleGAN2: 512)"),
    "mapping_layers": size_field(4, help="dense layers of the mapping network z -> w "
                                         "(StyleGAN2: 8)"),
    "mapping_lr_mul": Field(float, 0.01, low=0.0, low_open=True, high=1.0,
                            help="learning-rate multiplier of the mapping network "
                                 "(StyleGAN2: 0.01)"),
    "channels": size_field(32, help="feature maps per resolution, at most (StyleGAN2: 512)"),
    "channel_base": size_field(4096, help="feature maps at resolution r are "
                                          "min(channels, channel_base / r) (StyleGAN2: 32768 "
                                          "for 1024 px, 16384 below)"),
    "r1_gamma": Field(float, 1.0, low=0.0,
                      help="weight gamma of the R1 penalty (gamma / 2) E|grad D(x_real)|^2 "
                           "(StyleGAN2 FFHQ 1024: 10; StyleGAN2-ADA: 1 at 256 px, 0.01 on "
                           "CIFAR-10). 1 beat 0.1 on the 1,348 digits (small data wants more); "
                           "0 = none"),
    "r1_interval": size_field(16, help="lazy regularisation: the R1 penalty every this many "
                                       "steps, scaled by it (StyleGAN2: 16; 1 = every step)"),
    "style_mixing": Field(float, 0.9, low=0.0, high=1.0,
                          help="probability that a training sample mixes two w's at a random "
                               "layer (StyleGAN2: 0.9; 0 = off)"),
    "mbstd_group": size_field(4, help="group size of the discriminator's minibatch "
                                      "standard deviation (StyleGAN2: 4)"),
    "truncation_samples": size_field(10_000, low=100,
                                     help="z drawn once after each fit to estimate w_mean, the "
                                          "centre of truncation (the mapping network only: "
                                          "cheap even on a CPU)"),
    "pad_to": size_field(None, nullable=True,
                         help="pad images (black) to this square size before the networks; the "
                              "size must be 4 * 2^k (MNIST 28 -> 32)"),
    **_training,
}


def _is_network_size(size: int) -> bool:
    """4 * 2^k with k >= 1: the 4x4 constant doubled k times."""
    return size % 4 == 0 and size // 4 >= 2 and (size // 4) & (size // 4 - 1) == 0


def _next_network_size(size: int) -> int:
    candidate = SMALLEST_SIZE
    while candidate < size:
        candidate *= 2
    return candidate


def check_options(values: dict, facts) -> list[Problem]:
    """Rules across keys: the networks must take the images.

    Args:
        values: the spec's top-level values with ``model_options``.
        facts: the image source's ``ImageFacts`` (None when it cannot be known).
    """
    options, problems = values["model_options"], []
    if facts is None:
        return problems
    _, height, width = facts.shape
    largest = max(height, width)
    pad_to = options["pad_to"]
    if pad_to is None:
        if height != width or not _is_network_size(largest):
            up = _next_network_size(largest)
            resize = (f", or resize the folder's images with data.resolution: "
                      f"{up if up == SMALLEST_SIZE else f'{up // 2} or {up}'}"
                      if values["data"]["source"] == "folder" else "")
            problems.append(Problem(
                "model_options.pad_to",
                f"the images are {height}x{width}, but StyleGAN2 makes square images of side "
                f"4 * 2^k ({', '.join(str(4 * 2 ** k) for k in range(1, 6))}, ...) by doubling a "
                f"4x4 constant; set pad_to: {up}{resize}"))
            return problems
        size = largest
    else:
        if pad_to < largest:
            problems.append(Problem("model_options.pad_to",
                                    f"{pad_to} is smaller than the {height}x{width} images; "
                                    f"use {_next_network_size(largest)}"))
            return problems
        if not _is_network_size(pad_to):
            problems.append(Problem("model_options.pad_to",
                                    f"{pad_to} is not a size StyleGAN2 makes (4 * 2^k: 8, 16, "
                                    f"32, ...); use {_next_network_size(pad_to)}"))
            return problems
        size = pad_to
    if size > LARGEST_SIZE:
        problems.append(Problem("model_options.pad_to" if pad_to else "data.source",
                                f"{size}x{size} images exceed the largest size, {LARGEST_SIZE}"))
    if options["channel_base"] < size:
        problems.append(Problem("model_options.channel_base",
                                f"{options['channel_base']} leaves less than one feature map at "
                                f"{size}x{size} (min(channels, channel_base / {size})); use at "
                                f"least {size}, or {size * options['channels']} for "
                                f"{options['channels']} maps at every resolution"))
    return problems
