"""The "folder" image source (unlabelled images, e.g. FFHQ thumbnails): facts before any
work, splits, the decoded-pixel cache, spec errors, and the label-free metrics on the
features of a cached convolutional autoencoder."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mad_core.features.autoencoder import (AutoencoderTraining, autoencoder_cache_key,
                                           cached_autoencoder, train_autoencoder)
from mad_core.images.datasets import folder_cache_key, image_files, load_image_folder
from mad_core.images.sources import IMAGE_SOURCE_FIELDS, image_facts, load_image_source
from mad_core.metrics.evaluators import ImageEvaluator
from mad_core.metrics.image_metrics import fid
from mad_core.samples import Samples
from mad_core.spec import SpecError, resolve_spec

COUNT, RESOLUTION = 60, 16


def disk_image(rng: np.random.Generator, width: int = 24, height: int = 20) -> Image.Image:
    """A real toy picture: a disk of a random colour, place and size on a random
    background (non-square, so loading center-crops)."""
    yy, xx = np.mgrid[0:height, 0:width] / height
    cx, cy = rng.uniform(0.3, 0.9), rng.uniform(0.25, 0.75)
    disk = ((xx - cx) ** 2 + (yy - cy) ** 2 < rng.uniform(0.1, 0.35) ** 2)[..., None]
    background, colour = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    return Image.fromarray(np.where(disk, colour, background).astype(np.uint8))


def write_disks(folder, count: int, seed: int, nested: bool = True) -> None:
    rng = np.random.default_rng(seed)
    for index in range(count):
        sub = folder / (f"{index // 25:02d}" if nested else "")
        sub.mkdir(parents=True, exist_ok=True)
        disk_image(rng).save(sub / f"{index:05d}.png")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """60 PNGs in two levels of subfolders, beside files that are not images: a text
    file and a hidden macOS resource file named like a PNG."""
    root = tmp_path_factory.mktemp("thumbnails")
    write_disks(root, COUNT, seed=0)
    (root / "LICENSE.txt").write_text("not an image")
    (root / "00" / "._00000.png").write_bytes(b"\x00\x05\x16\x07 not a png")
    return root


@pytest.fixture(scope="module")
def more_disks(tmp_path_factory):
    """300 more images from the same distribution, read through the same loader."""
    root = tmp_path_factory.mktemp("more_disks")
    write_disks(root, 300, seed=1, nested=False)
    return load_image_folder(root, resolution=RESOLUTION).samples


def folder_data(root, **changes) -> dict:
    defaults = {key: field.default for key, field in IMAGE_SOURCE_FIELDS["folder"].items()
                if key != "root"}
    return {"source": "folder", "root": str(root), **defaults, "resolution": RESOLUTION, **changes}


def test_facts_count_the_files_without_reading_them(folder):
    assert len(image_files(folder)) == COUNT  # the text file and the hidden file are skipped
    facts = image_facts(folder_data(folder))
    assert (facts.shape, facts.train_size, facts.test_size, facts.num_classes) == ((3, 16, 16), 54, 6, None)
    limited = image_facts(folder_data(folder, limit=20, channels=1, resolution=32, test_fraction=0.25))
    assert (limited.shape, limited.train_size, limited.test_size) == ((1, 32, 32), 15, 5)


def test_splits_are_a_seeded_partition_of_the_folder(folder):
    data = folder_data(folder, test_fraction=0.25, split_seed=3)
    train, test = load_image_source(data)
    facts = image_facts(data)
    assert (len(train), len(test)) == (facts.train_size, facts.test_size) == (45, 15)
    assert train.labels is None and test.labels is None
    assert train.samples.dtype == np.float32 and train.samples.shape[1:] == facts.shape
    assert train.samples.min() >= 0.0 and train.samples.max() <= 1.0
    everything = load_image_folder(folder, resolution=RESOLUTION).samples.reshape(COUNT, -1)
    together = np.concatenate([train.samples, test.samples]).reshape(COUNT, -1)
    assert np.array_equal(np.unique(together, axis=0), np.unique(everything, axis=0))
    assert len(np.unique(together, axis=0)) == COUNT  # no image in both splits
    again = load_image_source(data)
    assert np.array_equal(again.test.samples, test.samples)
    other = load_image_source({**data, "split_seed": 4})
    assert not np.array_equal(other.test.samples, test.samples)


def test_decoded_pixels_are_cached_until_a_file_changes(tmp_path):
    root = tmp_path / "images"
    write_disks(root, 8, seed=2, nested=False)
    cache = tmp_path / "cache"
    decoded = load_image_folder(root, resolution=8, cache_dir=cache).samples
    cached_files = list(cache.glob("*.npy"))
    key = folder_cache_key(root, image_files(root), resolution=8, channels=3)
    assert [path.name for path in cached_files] == [f"{key}.npy"]
    assert np.array_equal(load_image_folder(root, resolution=8).samples, decoded)
    # A second load reads the cache file: what the file holds is what comes back.
    np.save(cached_files[0], np.zeros((8, 3, 8, 8), np.uint8))
    assert load_image_folder(root, resolution=8, cache_dir=cache).samples.max() == 0.0
    # Rewriting an image changes its size or time, hence the key: decoded again.
    Image.new("RGB", (24, 20), (255, 255, 255)).save(root / "00003.png")
    reloaded = load_image_folder(root, resolution=8, cache_dir=cache).samples
    assert np.all(reloaded[3] == 1.0) and np.array_equal(reloaded[:3], decoded[:3])
    assert len(list(cache.glob("*.npy"))) == 2
    # Another resolution or channel count is another entry.
    assert folder_cache_key(root, image_files(root), resolution=16, channels=3) != key


def test_an_unreadable_image_is_named(tmp_path):
    write_disks(tmp_path, 2, seed=0, nested=False)
    (tmp_path / "broken.jpg").write_bytes(b"truncated")
    with pytest.raises(ValueError, match=r"broken\.jpg is not a readable image"):
        load_image_folder(tmp_path, resolution=8)


DDPM_ON_FOLDER = {"model": "ddpm", "loop": "fully_synthetic", "n_init": 40, "n_syn": 40}


def folder_problems(data: dict, **changes) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        resolve_spec({**DDPM_ON_FOLDER, "data": data, **changes})
    return {p.field: p.message for p in caught.value.problems}


def test_a_conditional_model_needs_labels_and_the_folder_is_otherwise_valid(folder):
    problems = folder_problems({"source": "folder", "root": str(folder), "resolution": 16})
    assert set(problems) == {"data.source"}  # the folder itself passes
    assert "class-conditional" in problems["data.source"]
    assert "digits, mnist" in problems["data.source"]


@pytest.mark.parametrize("changes, field, words", [
    ({"root": "/no/such/folder"}, "data.root", "does not exist"),
    ({"resolution": 2}, "data.resolution", "[4, 1024]"),
    ({"resolution": 4096}, "data.resolution", "[4, 1024]"),
    ({"channels": 4}, "data.channels", "allowed: 1, 3"),
    ({"limit": 0}, "data.limit", ">= 1"),
    ({"test_fraction": 0.05}, "data.test_fraction", "3 images, too few"),
    ({"resolution": 16, "pool_size": 10}, "data.pool_size", "remove pool_size"),
])
def test_each_folder_fault_is_named_before_any_work(folder, changes, field, words):
    problems = folder_problems({"source": "folder", "root": str(folder), **changes})
    assert field in problems, problems
    assert words in problems[field]


def test_an_empty_folder_or_a_file_is_a_data_root_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    empty = folder_problems({"source": "folder", "root": str(tmp_path)})
    assert "no image files (.png" in empty["data.root"] and str(tmp_path) in empty["data.root"]
    a_file = folder_problems({"source": "folder", "root": str(tmp_path / "notes.txt")})
    assert "is a file, not a folder" in a_file["data.root"]


@pytest.fixture(scope="module")
def splits(folder):
    return load_image_source(folder_data(folder, test_fraction=0.25))


@pytest.fixture(scope="module")
def trained(splits, tmp_path_factory):
    """The default autoencoder on the folder's training split, cached in a fresh folder
    (where ImageEvaluator looks: <cache_dir>/autoencoder)."""
    torch.set_num_threads(1)
    cache_dir = tmp_path_factory.mktemp("feature_cache")
    network = cached_autoencoder(splits.train, splits.test, cache_dir=cache_dir / "autoencoder",
                                 progress=False)
    return network, cache_dir


def test_autoencoder_features_tell_real_like_images_from_noise(trained, more_disks):
    network, cache_dir = trained
    # It learned to reconstruct held-out images: well below the mean image's error.
    assert network.unexplained_variance < 0.5
    record = json.loads((cache_dir / "autoencoder" / f"{network.cache_key}.json").read_text())
    assert record["unexplained_variance"] == network.unexplained_variance
    assert record["steps"] == AutoencoderTraining().min_steps and record["input_size"] == 16
    rng = np.random.default_rng(0)
    noise = rng.uniform(size=(150, 3, RESOLUTION, RESOLUTION)).astype(np.float32)
    noisy = np.clip(more_disks[150:] + rng.normal(0, 0.1, noise.shape), 0, 1).astype(np.float32)
    first, second = network.features(more_disks[:150]), network.features(more_disks[150:])
    assert first.shape == (150, 64 + 2 * 3) and first.dtype == np.float32
    same, to_noise, to_noisy = (fid(first, second), fid(first, network.features(noise)),
                                fid(first, network.features(noisy)))
    # Measured: ~3 between two draws of disks, ~7.5 to the same disks with noise of
    # std 0.1 (on the bottleneck alone: unchanged), ~95 to uniform noise.
    assert to_noise > 10 * same and to_noisy > 1.8 * same, (same, to_noisy, to_noise)


def test_autoencoder_training_is_deterministic_and_leaves_the_global_rng_alone(splits):
    short = AutoencoderTraining(min_steps=15, epochs=1)
    state = torch.get_rng_state()
    first = train_autoencoder(splits.train, splits.test, seed=3, training=short, progress=False)
    second = train_autoencoder(splits.train, splits.test, seed=3, training=short, progress=False)
    assert torch.equal(state, torch.get_rng_state())
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    other = train_autoencoder(splits.train, splits.test, seed=4, training=short, progress=False)
    assert not torch.equal(other.to_features.weight, first.to_features.weight)
    key = autoencoder_cache_key(splits.train, splits.test, seed=0, training=AutoencoderTraining())
    assert key != autoencoder_cache_key(splits.train, splits.test, seed=1, training=AutoencoderTraining())
    assert key != autoencoder_cache_key(splits.train, splits.test, seed=0, training=short)


def test_a_second_build_loads_the_cached_network(trained, splits):
    network, cache_dir = trained
    weights = cache_dir / "autoencoder" / f"{network.cache_key}.pt"
    written = weights.stat().st_mtime_ns
    loaded = cached_autoencoder(splits.train, splits.test, cache_dir=cache_dir / "autoencoder",
                                progress=False)
    assert weights.stat().st_mtime_ns == written  # not trained and written again
    assert loaded.cache_key == network.cache_key
    assert loaded.unexplained_variance == network.unexplained_variance
    for name, tensor in network.network.state_dict().items():
        assert torch.equal(tensor, loaded.network.state_dict()[name]), name


class Resampler:
    """A generative model that has learned its data perfectly: it samples from a fixed set
    of images (the metrics must judge it close to the real data)."""

    conditional = False

    def __init__(self, images: np.ndarray):
        self.images = images

    def sample(self, n: int, bias: float, rng: np.random.Generator) -> Samples:
        return Samples(self.images[rng.choice(len(self.images), size=n, replace=False)])


def test_image_evaluator_on_a_folder_uses_the_autoencoder(trained, splits, more_disks):
    network, cache_dir = trained
    cached = sorted((cache_dir / "autoencoder").iterdir())
    evaluator = ImageEvaluator(splits.train, splits.test, lam=1.0, k=3, n_eval=100,
                               conditional=False, inception=False, cache_dir=cache_dir)
    assert evaluator.feature_network == "conv_autoencoder" and evaluator.lenet is None
    assert evaluator.feature_extractor.cache_key == network.cache_key
    assert sorted((cache_dir / "autoencoder").iterdir()) == cached  # loaded, not retrained
    noise = np.random.default_rng(1).uniform(size=(300, 3, RESOLUTION, RESOLUTION)).astype(np.float32)
    good = evaluator(Resampler(more_disks), np.random.default_rng(0))
    bad = evaluator(Resampler(noise), np.random.default_rng(0))
    assert set(good) == {"fid", "kid", "precision", "recall", "density", "coverage"}
    assert all(np.isfinite(value) for value in good.values())
    assert bad["fid"] > 5 * good["fid"] and bad["kid"] > 5 * good["kid"]
    # Noise collapses to a few features near the real ones' centre: k-NN precision
    # cannot tell (as in any feature space), recall and coverage do.
    assert good["recall"] > 0.5 and bad["recall"] == 0.0
    assert good["coverage"] > 0.5 > bad["coverage"]
