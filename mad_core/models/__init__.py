"""The model registry: every model's name, options and class in one place.

A model is built from keyword-only options (declared as ``OPTIONS`` beside its class),
then ``fit(samples, rng, previous) -> self`` trains it on a ``Samples`` training set
(``previous``: the preceding generation's model, for a warm start where the loop asks
for one) and ``sample(n, bias, rng) -> Samples`` draws n samples with sampling bias
``bias`` (lambda) in (0, 1], 1 being the plain unbiased path. ``state_dict()`` and
``load_state_dict()`` carry its fitted state as arrays and tensors (never pickles).

Classes load on first use: the neural ones import torch, which a sweep of Gaussian
trials should not pay for. Options are plain declarations and load with the registry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Mapping

from mad_core.fields import Field, Problem
from mad_core.models import ddpm, flow, gaussian, mixture, stylegan, wgan

# What a model trains on: "vectors" (n, d), "images" (n, C, H, W), or both.
VECTORS, IMAGES = ("vectors",), ("images",)


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        options: its spec keys (``model_options``).
        class_path: "module:Class", imported on first ``load``.
        inputs: the kinds of data it trains on (``VECTORS``, ``IMAGES`` or both).
        neural: built with ``device`` and ``num_classes`` (runtime facts, not options).
        conditional: trains on and samples class labels (needs a labelled source).
        check: cross-field rules, (options, data facts) -> problems; data facts is an
            ``ImageFacts`` for image sources, else None.
    """

    options: Mapping[str, Field]
    class_path: str
    inputs: tuple[str, ...]
    neural: bool = False
    conditional: bool = False
    check: Callable[[dict, object], list[Problem]] | None = None

    def load(self) -> type:
        module, name = self.class_path.split(":")
        return getattr(importlib.import_module(module), name)


MODELS: dict[str, ModelEntry] = {
    "gaussian": ModelEntry(gaussian.OPTIONS, "mad_core.models.gaussian:GaussianModel", VECTORS),
    "gmm": ModelEntry(mixture.OPTIONS, "mad_core.models.mixture:GaussianMixtureModel", VECTORS),
    "ddpm": ModelEntry(ddpm.OPTIONS, "mad_core.models.ddpm.model:ClassConditionalDDPM", IMAGES,
                       neural=True, conditional=True, check=ddpm.check_options),
    "wgan_gp": ModelEntry(wgan.OPTIONS, "mad_core.models.wgan.model:WGANGP", VECTORS + IMAGES,
                          neural=True, check=wgan.check_options),
    "flow": ModelEntry(flow.OPTIONS, "mad_core.models.flow.model:NormalizingFlow", VECTORS,
                       neural=True, check=flow.check_options),
    "stylegan2": ModelEntry(stylegan.OPTIONS, "mad_core.models.stylegan.model:StyleGAN2", IMAGES,
                            neural=True, check=stylegan.check_options),
}
