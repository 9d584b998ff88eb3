"""MAD's class-conditional DDPM with classifier-free guidance: its spec options and rules.

The model (``model.ClassConditionalDDPM``), its UNet (``unet``) and the diffusion math
(``diffusion``) import torch; this module does not, so a spec validates fast.
"""

from __future__ import annotations

from mad_core.fields import Field, Problem, size_field
from mad_core.models.neural.options import training_options

SAMPLERS = ("ancestral", "ddim")

OPTIONS: dict[str, Field] = {
    # MAD trains its MNIST DDPM on T = 500 steps of the linear schedule of Ho et al.
    "timesteps": size_field(500, low=2, help="diffusion steps T (MAD: 500)"),
    "beta_start": Field(float, 1e-4, low=0.0, low_open=True, high=1.0,
                        help="first beta of the linear noise schedule"),
    "beta_end": Field(float, 0.02, low=0.0, low_open=True, high=1.0,
                      help="last beta of the linear noise schedule"),
    "base_channels": size_field(32, help="UNet channels at full resolution"),
    "channel_multipliers": Field(list, [1, 2], item=int, low=1, length=(1, 6),
                                 help="UNet channels per resolution level, as multiples of "
                                      "base_channels; each level after the first halves the size"),
    "res_blocks": size_field(1, help="residual blocks per UNet level"),
    "attention_resolutions": Field(list, [], item=int, low=1, length=(0, 6),
                                   help="image sizes (in pixels) at which the UNet has self-attention"),
    "dropout": Field(float, 0.0, low=0.0, high=0.9, help="dropout in the residual blocks"),
    "label_dropout": Field(float, 0.1, low=0.0, high=0.9,
                           help="probability of training on the null label, which gives the "
                                "unconditional model that guidance needs (MAD: 0.1)"),
    "sampler": Field(str, "ancestral", choices=SAMPLERS,
                     help="ancestral: all T steps (MAD); ddim: sampler_steps deterministic steps"),
    "sampler_steps": size_field(None, nullable=True,
                                help="ddim: number of steps (required with sampler: ddim)"),
    "pad_to": size_field(None, nullable=True,
                         help="zero-pad images to this size before the UNet (MNIST 28 -> 32)"),
    **training_options(epochs=50, batch_size=128, lr=2e-4, ema_decay=0.999),
}


def check_options(values: dict, facts) -> list[Problem]:
    """Rules across keys: the UNet must take the images, guidance needs label dropout.

    Args:
        values: the spec's top-level values with ``model_options``.
        facts: the image source's ``ImageFacts``.
    """
    options, problems = values["model_options"], []
    if options["sampler"] == "ddim" and options["sampler_steps"] is None:
        problems.append(Problem("model_options.sampler_steps", "required with sampler: ddim "
                                "(e.g. 50 or 100 steps)"))
    if options["sampler"] == "ancestral" and options["sampler_steps"] is not None:
        problems.append(Problem("model_options.sampler_steps", "only used with sampler: ddim; "
                                "the ancestral sampler takes all timesteps"))
    if (options["sampler_steps"] or 0) > options["timesteps"]:
        problems.append(Problem("model_options.sampler_steps",
                                f"{options['sampler_steps']} steps exceed timesteps = "
                                f"{options['timesteps']}"))
    if options["beta_end"] < options["beta_start"]:
        problems.append(Problem("model_options.beta_end", "must be >= beta_start"))
    lam = values.get("lam")
    if lam is not None and lam < 1 and options["label_dropout"] == 0:
        problems.append(Problem("model_options.label_dropout",
                                f"lam = {lam:g} samples with classifier-free guidance "
                                f"(w = 1/lam - 1 = {1 / lam - 1:.3g}), which needs the "
                                f"unconditional model that label dropout trains; set "
                                f"label_dropout > 0 (MAD: 0.1) or lam: 1"))
    if facts is None:
        return problems
    _, height, width = facts.shape
    size = options["pad_to"] or height
    if size < max(height, width):
        problems.append(Problem("model_options.pad_to", f"{size} is smaller than the "
                                f"{height}x{width} images; use at least {max(height, width)}"))
    levels = len(options["channel_multipliers"])
    if size % 2 ** (levels - 1):
        problems.append(Problem("model_options.channel_multipliers",
                                f"{levels} levels halve the image {levels - 1} times, which a "
                                f"{size}x{size} image cannot take; use fewer levels or "
                                f"pad_to a multiple of {2 ** (levels - 1)}"))
    resolutions = {size // 2 ** i for i in range(levels)}
    for resolution in options["attention_resolutions"]:
        if resolution not in resolutions:
            problems.append(Problem("model_options.attention_resolutions",
                                    f"{resolution} is not a UNet resolution; the levels are "
                                    f"{', '.join(map(str, sorted(resolutions, reverse=True)))}"))
    return problems
