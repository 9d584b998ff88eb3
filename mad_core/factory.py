"""Objects a resolved spec names: its real data, its model, its evaluator."""

from __future__ import annotations

from dataclasses import dataclass

from mad_core.metrics.gaussian import GaussianReference
from mad_core.models import MODELS
from mad_core.seeding import Stream, generator
from mad_core.sources import FiniteDataset, GaussianGridMixture, GaussianSource, Rosenbrock
from mad_core.spec import IMAGE_SOURCES, TrialSpec

SOURCES = {"gaussian": GaussianSource, "gmm_grid": GaussianGridMixture, "rosenbrock": Rosenbrock}
_FINITE_KEYS = ("source", "pool_size", "reshuffle")


@dataclass(frozen=True)
class RealData:
    """A trial's real data.

    Attributes:
        source: what the loop draws real samples from: an infinite source, or a
            ``FiniteDataset`` (a pool, an image dataset's training split).
        held_out: an image dataset's test split (the image metrics' reference), else None.
        num_classes: classes of the labels, None for unlabelled data.
    """

    source: object
    held_out: FiniteDataset | None = None
    num_classes: int | None = None


def make_distribution(spec: TrialSpec):
    """The infinite source P_r the spec's data section describes (vector sources)."""
    options = {k: v for k, v in spec.data.items() if k not in _FINITE_KEYS}
    return SOURCES[spec.data["source"]](**options)


def make_real_data(spec: TrialSpec) -> RealData:
    """P_r itself, a finite pool of pool_size draws from it (drawn once from the trial
    seed), or an image dataset's splits."""
    if spec.data["source"] in IMAGE_SOURCES:
        from mad_core.images.sources import image_facts, load_image_source

        train, test = load_image_source(spec.data)
        train.reshuffle = spec.data["reshuffle"]
        return RealData(train, test, image_facts(spec.data).num_classes)
    distribution = make_distribution(spec)
    pool_size = spec.data.get("pool_size")
    if pool_size is None:
        return RealData(distribution)
    samples = distribution.draw(pool_size, generator(spec.seed, Stream.REAL, 2**31 - 1))
    return RealData(FiniteDataset(samples, name=f"{spec.data['source']} pool of {pool_size}",
                                  reshuffle=spec.data["reshuffle"]))


def build_model(name: str, options: dict, *, device: str = "cpu", num_classes: int | None = None):
    """An unfitted model `name` with `options`; neural ones on `device`."""
    entry = MODELS[name]
    runtime = {"device": device, "num_classes": num_classes} if entry.neural else {}
    return entry.load()(**options, **runtime)


def make_model(spec: TrialSpec, real: RealData, device: str = "cpu"):
    """An unfitted model with the spec's options."""
    return build_model(spec.model, dict(spec.model_options), device=device,
                       num_classes=real.num_classes)


def gaussian_reference(spec: TrialSpec) -> GaussianReference | None:
    """P_r as a GaussianReference when it is Gaussian (closed-form metrics apply)."""
    if spec.data["source"] != "gaussian":
        return None
    distribution = make_distribution(spec)
    return GaussianReference(distribution.mean, distribution.cov)


def make_evaluator(spec: TrialSpec, real: RealData, device: str = "cpu"):
    """The trial's metrics (mad_core.metrics.evaluators), reference side computed now."""
    from mad_core.metrics import evaluators

    if spec.model == "gaussian" and spec.data["source"] == "gaussian":
        return evaluators.GaussianEvaluator(gaussian_reference(spec))
    metrics = spec.metrics
    if real.held_out is not None:
        return evaluators.ImageEvaluator(
            real.source, real.held_out, lam=spec.lam, k=metrics["k"], n_eval=metrics["n_eval"],
            conditional=MODELS[spec.model].load().conditional, inception=metrics["inception"],
            device=device)
    reference = real.source.draw(metrics["n_eval"], generator(spec.seed, Stream.EVAL, 0))
    distribution = make_distribution(spec)
    modes = ((distribution.modes, distribution.std)
             if isinstance(distribution, GaussianGridMixture) else None)
    return evaluators.PointCloudEvaluator(reference, spec.lam, metrics["k"], modes=modes)
