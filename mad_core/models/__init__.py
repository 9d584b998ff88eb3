"""Generative models with one interface: fit(samples, rng, previous) and sample(n, bias, rng)."""

from mad_core.models.gaussian import GaussianModel
from mad_core.models.mixture import GaussianMixtureModel

MODELS = {"gaussian": GaussianModel, "gmm": GaussianMixtureModel}
