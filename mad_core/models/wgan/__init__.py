"""WGAN-GP (Gulrajani et al. 2017), unconditional: its spec options and rules.

The model (``model.WGANGP``) and its networks (``networks``) import torch; this module
does not, so a spec validates fast.

One step of the shared training loop is one critic update on one batch of the training
set; every ``n_critic``-th step the generator is updated too. An epoch therefore shows
every training sample to the critic once, and a fit of ``steps`` steps makes
``steps // n_critic`` generator updates.
"""

from __future__ import annotations

from mad_core.fields import Field, Problem, size_field
from mad_core.models.neural.options import training_options

OPTIONS: dict[str, Field] = {
    "latent_dim": size_field(64, help="dimension of the generator's Gaussian latent z"),
    # The WGAN-GP paper's toy networks have 3 hidden layers of 512 ReLUs; 128 cost 1/8 as
    # much per step on a CPU (about 8 ms per critic step at batch 256 on one core).
    "width": size_field(128, help="vectors: hidden units per layer of the MLP generator "
                                  "and critic"),
    "depth": size_field(3, help="vectors: hidden layers of the MLP generator and critic"),
    "channels": size_field(32, help="images: channels of the convolutional networks at full "
                                    "resolution; each level doubles them"),
    "levels": size_field(2, help="images: stride-2 up/downsamplings of the convolutional "
                                 "networks; the image side must be a multiple of 2^levels"),
    "n_critic": size_field(5, help="critic updates per generator update (WGAN-GP: 5); each "
                                   "training step is one critic update"),
    # 10 is the paper's weight for images. Its own toy experiments (the 25-mode grid among
    # them) used 0.1, and on the grid's sharp modes 10 keeps the generator from resolving
    # them in a CPU budget (see specs/wgan_gmm_grid_fully_synthetic.yaml).
    "gp_weight": Field(float, 10.0, low=0.0, help="weight of the gradient penalty "
                                                  "(WGAN-GP: 10 on images, 0.1 on its toy data)"),
    # WGAN-GP trains with Adam(lr 1e-4, betas (0.5, 0.9)) for 10^5 generator steps or more;
    # a CPU generation has a few thousand. At lr 1e-3 the generator gets there faster but
    # oscillates, and the EMA of its weights (decay per critic step; the generator moves
    # every n_critic-th) averages the oscillation out: measured on 8x8 digits, 1,500 steps
    # reach FID 4.3 at lr 1e-3 against 13.7 at 2e-4.
    **training_options(epochs=100, batch_size=256, lr=1e-3, ema_decay=0.999),
    # WGAN-GP clips nothing: its critic's gradients are large by design while the
    # penalty pulls ||grad|| to 1, and Adam normalises the step size anyway.
    "grad_clip": Field(float, None, low=0.0, low_open=True, nullable=True,
                       help="clip the gradient norm to this value (null: no clipping, as "
                            "WGAN-GP)"),
    "mixed_precision": Field(bool, False, help="bfloat16 autocast on CUDA (ignored on CPU); "
                                               "off by default: the networks are small and the "
                                               "penalty's double backward wants float32"),
}


def check_options(values: dict, facts) -> list[Problem]:
    """Rules across keys: the generator trains at all, and the convolutional networks
    take the images.

    Args:
        values: the spec's top-level values with ``model_options``.
        facts: the image source's ``ImageFacts``, or None for vector data.
    """
    options, problems = values["model_options"], []
    steps, n_critic = options["steps"], options["n_critic"]
    if steps is not None and steps < n_critic:
        problems.append(Problem("model_options.steps",
                                f"{steps} steps are fewer than n_critic = {n_critic}, so the "
                                f"generator would never be updated; use steps >= {n_critic} "
                                f"(each step is one critic update)"))
    if facts is None:
        return problems
    _, height, width = facts.shape
    if height != width:
        problems.append(Problem("data.source", f"wgan_gp's convolutional networks take square "
                                               f"images, got {height}x{width}"))
        return problems
    levels, possible = options["levels"], _halvings(height)
    folder = values["data"]["source"] == "folder"
    if possible == 0:
        problems.append(Problem("data.resolution" if folder else "data.source",
                                f"wgan_gp's convolutional networks halve the image side at "
                                f"least once, which odd {height}x{width} images cannot take"
                                + ("; use an even resolution" if folder else "")))
    elif levels > possible:
        problems.append(Problem("model_options.levels",
                                f"{levels} levels halve the image side {levels} times, which "
                                f"{height}x{width} images cannot take ({height} is not a "
                                f"multiple of {2 ** levels}); use levels <= {possible}"
                                + (f", or a data.resolution that is a multiple of "
                                   f"{2 ** levels}" if folder else "")))
    return problems


def _halvings(size: int) -> int:
    """How many times `size` halves to an integer (its factors of 2)."""
    count = 0
    while size > 0 and size % 2 == 0:
        size, count = size // 2, count + 1
    return count
