"""Loop compositions, real data sources and the models' biased sampling."""

import numpy as np
import pytest

from mad_core.models.gaussian import GaussianModel
from mad_core.samples import Samples
from mad_core.models.mixture import GaussianMixtureModel
from mad_core.models.base import NotFittedError
from mad_core.policy import Composition, LoopPolicy
from mad_core.sources import (DatasetExhaustedError, FiniteDataset, GaussianGridMixture,
                              RealStream, Rosenbrock)
from mad_core.spec import resolve_spec


def policy(**raw):
    return LoopPolicy(resolve_spec({"model": "gaussian", "n_init": 50, "data": {"dim": 2},
                                    **raw}))


def test_generation_one_is_real_data_only():
    assert policy(loop="fully_synthetic", n_syn=10).composition(1) == Composition(50)


def test_compositions_of_each_loop():
    assert policy(loop="fully_synthetic", n_syn=10).composition(4) == Composition(
        0, 0, ((1, 10),))
    assert policy(loop="synthetic_augmentation", n_real=30, n_syn=10).composition(2) == \
        Composition(30, 0, ((1, 10),))
    assert policy(loop="fresh_data", n_real=30, n_syn=10).composition(2) == \
        Composition(0, 30, ((1, 10),))
    assert policy(loop="bertrand", lambda_b=0.4).composition(3) == \
        Composition(50, 0, ((1, 20),), warm_start=True)


def test_pool_and_last_k_sources():
    pooled = policy(loop="fresh_data", n_real=5, n_syn=10, synthetic_source="pool")
    assert pooled.composition(5).include_pool
    last_k = policy(loop="fully_synthetic", n_syn=10, synthetic_source="last_k", last_k=3)
    assert last_k.composition(2).synthetic_draws == ((1, 10),)
    assert last_k.composition(3).synthetic_draws == ((1, 5), (2, 5))
    assert last_k.composition(9).synthetic_draws == ((1, 4), (2, 3), (3, 3))
    assert last_k.models_kept == 3


def test_real_fraction_sets_the_real_share():
    fraction = policy(loop="synthetic_augmentation", n_total=1000, real_fraction=0.003)
    assert fraction.composition(2) == Composition(3, 0, ((1, 997),))


def test_records_report_the_training_set_sizes():
    from mad_core.loop import SelfConsumingLoop
    spec = resolve_spec({"model": "gaussian", "loop": "fresh_data", "n_init": 40, "n_real": 5,
                         "n_syn": 10, "synthetic_source": "pool", "generations": 4,
                         "data": {"dim": 2}})
    sizes = [(r["n_real"], r["n_synthetic"], r["n_train"]) for r in SelfConsumingLoop(spec)]
    assert sizes == [(40, 0, 40), (5, 10, 15), (5, 20, 25), (5, 30, 35)]


def test_finite_stream_never_repeats_until_exhausted():
    data = FiniteDataset(np.arange(20.0)[:, None], name="twenty")
    stream = RealStream(data, n_initial=5, seed=0)
    seen = np.concatenate([stream.initial.x, stream.fresh(10, 2).x, stream.fresh(5, 3).x]).ravel()
    assert sorted(seen) == list(range(20))
    with pytest.raises(DatasetExhaustedError, match="data.reshuffle"):
        stream.fresh(1, 4)


def test_finite_stream_reshuffles_when_asked():
    data = FiniteDataset(np.arange(6.0)[:, None], reshuffle=True)
    stream = RealStream(data, n_initial=4, seed=0)
    second_pass = np.concatenate([stream.fresh(2, 2).x, stream.fresh(6, 3).x]).ravel()
    assert sorted(second_pass[2:]) == list(range(6))


def test_rosenbrock_moments():
    samples = Rosenbrock().draw(200_000, np.random.default_rng(0))
    x, y = samples.T
    # x ~ N(1, 10); y | x ~ N(x^2, 0.1) so E y = E x^2 = 11. 4 standard errors.
    assert abs(x.mean() - 1) < 4 * np.sqrt(10 / len(x))
    assert abs(x.var() - 10) < 4 * 10 * np.sqrt(2 / len(x))
    assert abs(np.mean(y - x**2)) < 4 * np.sqrt(0.1 / len(x))


def test_grid_mixture_has_its_modes_equally_weighted():
    source = GaussianGridMixture()
    samples = source.draw(50_000, np.random.default_rng(0))
    nearest = np.argmin(((samples[:, None] - source.modes[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=25)
    assert len(source.modes) == 25
    expected = len(samples) / 25  # binomial sd sqrt(n p (1-p))
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected * 24 / 25))


def test_gaussian_model_bias_scales_the_covariance():
    rng = np.random.default_rng(0)
    model = GaussianModel().fit(Samples(rng.standard_normal((5000, 2)) @ np.diag([1.0, 3.0])))
    samples = model.sample(200_000, 0.5, rng).x
    ratio = np.cov(samples.T) / model.cov_
    assert np.allclose(np.diag(ratio), 0.5, atol=4 * 0.5 * np.sqrt(2 / len(samples)))


def test_mixture_bias_shrinks_components_keeps_weights():
    rng = np.random.default_rng(0)
    model = GaussianMixtureModel(n_components=4).fit(
        Samples(GaussianGridMixture(modes_per_side=2, std=0.2).draw(4000, rng)), rng)
    samples = model.sample(100_000, 0.25, rng).x
    labels = model.mixture_.predict(samples)
    weights = np.bincount(labels, minlength=4) / len(samples)
    assert np.allclose(weights, model.mixture_.weights_, atol=0.01)
    for k in range(4):
        members = samples[labels == k]
        ratio = np.diag(np.cov(members.T)) / (0.25 * np.diag(model.mixture_.covariances_[k]))
        assert np.allclose(ratio, 1.0, atol=4 * np.sqrt(2 / len(members)))  # sd of a variance


def test_sampling_before_fit_is_a_clear_error():
    with pytest.raises(NotFittedError):
        GaussianModel().sample(3, 1.0, np.random.default_rng(0))
