"""LeNet-5 on real digits: accuracy, disk cache, features, explicit generators, FID on its features."""

import json

import numpy as np
import pytest
import torch

from mad_core.features.lenet import LeNetTraining, cached_lenet, lenet_cache_key, train_lenet
from mad_core.images.datasets import load_digits
from mad_core.metrics.image_metrics import fid
from mad_core.sources import FiniteDataset


@pytest.fixture(scope="session")
def digits():
    return load_digits()


@pytest.fixture(scope="session")
def lenet_run(digits, tmp_path_factory):
    """One real training for the whole session, with the global torch RNG state around it."""
    # One thread: this small net gains little from two, and on a shared 2-core machine
    # OpenMP threads waiting for each other slow training down many times over.
    torch.set_num_threads(1)
    cache_dir = tmp_path_factory.mktemp("lenet_cache")
    rng_state_before = torch.get_rng_state()
    trained = cached_lenet(digits.train, digits.test, cache_dir=cache_dir, seed=0, progress=False)
    return trained, cache_dir, rng_state_before, torch.get_rng_state()


def test_lenet_reaches_97_percent_on_held_out_digits(lenet_run, digits):
    trained, cache_dir, _, _ = lenet_run
    assert trained.test_accuracy >= 0.97
    record = json.loads((cache_dir / f"{trained.cache_key}.json").read_text())
    assert record["test_accuracy"] == trained.test_accuracy
    assert record["test_size"] == len(digits.test) == 449 and record["seed"] == 0
    assert trained.cache_key.startswith("lenet5-digits-train-seed0-")


def test_training_and_loading_leave_the_global_torch_rng_alone(lenet_run, digits):
    trained, cache_dir, before, after = lenet_run
    assert torch.equal(before, after)
    state = torch.get_rng_state()
    loaded = cached_lenet(digits.train, digits.test, cache_dir=cache_dir, seed=0, progress=False)
    assert torch.equal(state, torch.get_rng_state())
    assert loaded.test_accuracy == trained.test_accuracy and loaded.cache_key == trained.cache_key
    for name, tensor in trained.network.state_dict().items():
        assert torch.equal(tensor, loaded.network.state_dict()[name])


def test_same_seed_same_network_and_the_key_tracks_seed_data_and_settings(digits):
    short = LeNetTraining(epochs=1)
    first = train_lenet(digits.train, digits.test, seed=5, training=short, progress=False)
    second = train_lenet(digits.train, digits.test, seed=5, training=short, progress=False)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name])
    key = lenet_cache_key(digits.train, digits.test, seed=0, training=LeNetTraining())
    assert key != lenet_cache_key(digits.train, digits.test, seed=1, training=LeNetTraining())
    assert key != lenet_cache_key(digits.train, digits.test, seed=0, training=short)
    other_split = load_digits(split_seed=1)
    assert key != lenet_cache_key(other_split.train, other_split.test, seed=0, training=LeNetTraining())


def test_features_are_84_dimensional_and_deterministic(lenet_run, digits):
    trained = lenet_run[0]
    features = trained.features(digits.test.samples, batch_size=100)
    assert features.shape == (449, 84) and features.dtype == np.float32
    assert np.abs(features).max() <= 1  # tanh layer
    assert np.array_equal(features, trained.features(torch.from_numpy(digits.test.samples), batch_size=100))
    assert np.allclose(features, trained.features(digits.test.samples), atol=1e-6)  # other batch size


def test_fid_on_lenet_features_is_smallest_for_the_same_set_and_grows_with_noise(lenet_run, digits):
    trained = lenet_run[0]
    images = np.concatenate([digits.train.samples, digits.test.samples])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    half_a, half_b = images[order[:898]], images[order[898:]]
    noise = rng.standard_normal(half_b.shape).astype(np.float32)  # one draw, scaled per level
    reference = trained.features(half_a)
    # Levels double so the noise's own effect (order sigma^2) dominates its chance
    # alignment with the difference between the halves (order sigma / sqrt(n)).
    values = [fid(reference, trained.features(np.clip(half_b + level * noise, 0, 1)))
              for level in (0.0, 0.2, 0.4, 0.8)]
    assert all(low < high for low, high in zip(values, values[1:]))


def test_training_needs_labels(digits):
    unlabelled = FiniteDataset(digits.train.samples, None, name="unlabelled")
    with pytest.raises(ValueError, match="unlabelled has no labels"):
        train_lenet(unlabelled, digits.test, seed=0, progress=False)
