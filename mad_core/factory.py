"""Objects a resolved spec names: its real source, its model, its Gaussian reference."""

from __future__ import annotations

from mad_core.metrics.gaussian import GaussianReference
from mad_core.models import MODELS
from mad_core.sources import FiniteDataset, GaussianGridMixture, GaussianSource, Rosenbrock
from mad_core.seeding import Stream, generator
from mad_core.spec import TrialSpec

SOURCES = {"gaussian": GaussianSource, "gmm_grid": GaussianGridMixture, "rosenbrock": Rosenbrock}
_FINITE_KEYS = ("source", "pool_size", "reshuffle")


def make_distribution(spec: TrialSpec):
    """The infinite source P_r the spec's data section describes."""
    options = {k: v for k, v in spec.data.items() if k not in _FINITE_KEYS}
    return SOURCES[spec.data["source"]](**options)


def make_source(spec: TrialSpec):
    """The real data of a trial: P_r itself, or a finite dataset of pool_size draws from it
    (drawn once from the trial seed)."""
    distribution = make_distribution(spec)
    pool_size = spec.data.get("pool_size")
    if pool_size is None:
        return distribution
    samples = distribution.draw(pool_size, generator(spec.seed, Stream.REAL, 2**31 - 1))
    return FiniteDataset(samples, name=f"{spec.data['source']} pool of {pool_size}",
                         reshuffle=spec.data["reshuffle"])


def make_model(spec: TrialSpec):
    """An unfitted model with the spec's options."""
    return MODELS[spec.model](**spec.model_options)


def gaussian_reference(spec: TrialSpec) -> GaussianReference | None:
    """P_r as a GaussianReference when it is Gaussian (closed-form metrics apply)."""
    distribution = make_distribution(spec)
    if isinstance(distribution, GaussianSource):
        return GaussianReference(distribution.mean, distribution.cov)
    return None
