"""Real image loaders: digits, MNIST from a local IDX folder, a folder of images."""

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits as sklearn_digits

from mad_core.images.datasets import (MNIST_FILES, check_mnist_folder, decode_images, fingerprint,
                                      image_files, load_digits, load_image_folder, load_mnist)
from mad_core.sources import FiniteDataset, RealStream


def test_digits_split_is_a_seeded_partition_of_all_1797_digits():
    train, test = load_digits(test_fraction=0.25, split_seed=3)
    assert (len(train), len(test)) == (1348, 449)
    for split in (train, test):
        assert isinstance(split, FiniteDataset)
        assert split.samples.dtype == np.float32 and split.samples.shape[1:] == (1, 8, 8)
        assert split.samples.min() == 0.0 and split.samples.max() == 1.0
        assert split.labels.dtype == np.int64 and set(split.labels) == set(range(10))
    together = np.concatenate([train.samples, test.samples]).reshape(1797, 64)
    full = (sklearn_digits().images / 16).astype(np.float32).reshape(1797, 64)
    assert np.array_equal(together[np.lexsort(together.T)], full[np.lexsort(full.T)])
    again = load_digits(test_fraction=0.25, split_seed=3)
    assert np.array_equal(again.test.samples, test.samples) and fingerprint(again.test) == fingerprint(test)
    assert fingerprint(load_digits(split_seed=4).test) != fingerprint(test)


def test_digits_work_with_real_streams():
    train, _ = load_digits()
    stream = RealStream(train, n_initial=100, seed=0)
    fresh = stream.fresh(50, generation=1)
    assert stream.initial.x.shape == (100, 1, 8, 8) and fresh.x.shape == (50, 1, 8, 8)
    # Labels travel with their images.
    assert fresh.y.shape == (50,) and fresh.y.dtype == np.int64


def _write_idx(path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file: magic 0x0000080N (N dims), big-endian sizes, then the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path):
    """A tiny real MNIST-layout folder: sklearn digits enlarged to 28x28 as uint8 IDX files."""
    train, test = load_digits()
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, split, count in (("train", train, 20), ("t10k", test, 10)):
        images = np.kron(split.samples[:count, 0], np.ones((3, 3)))  # 24x24
        images = np.pad(images, ((0, 0), (2, 2), (2, 2)))
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", np.round(images * 255))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", split.labels[:count])
    return tmp_path


def test_mnist_loads_a_real_idx_folder_through_torchvision(mnist_root):
    train, test = load_mnist(mnist_root)
    digits_train, digits_test = load_digits()
    assert train.samples.shape == (20, 1, 28, 28) and test.samples.shape == (10, 1, 28, 28)
    assert train.samples.dtype == np.float32
    assert np.array_equal(train.labels, digits_train.labels[:20])
    assert np.array_equal(test.labels, digits_test.labels[:10])
    # The uint8 round trip rounds to the nearest 1/255: within 1/510 (plus float32 rounding).
    assert np.abs(train.samples[:, 0, 2:26:3, 2:26:3] - digits_train.samples[:20, 0]).max() <= 0.5 / 255 + 1e-6


def test_missing_mnist_folder_says_which_files_are_expected_where(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_mnist(tmp_path / "nowhere")
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert all(name in message for name in MNIST_FILES)


def test_incomplete_mnist_folder_names_the_missing_file(mnist_root):
    missing = mnist_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    missing.rename(missing.with_name("t10k-labels-idx1-ubyte.gz"))
    with pytest.raises(FileNotFoundError, match=r"missing: t10k-labels-idx1-ubyte\.") as error:
        check_mnist_folder(mnist_root)
    assert "gunzip" in str(error.value)


def test_truncated_mnist_file_is_reported(mnist_root):
    images = mnist_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte is incomplete"):
        load_mnist(mnist_root)


def test_image_folder_reads_nested_images_at_a_chosen_resolution(tmp_path):
    (tmp_path / "faces" / "00000").mkdir(parents=True)
    Image.new("RGB", (40, 30), (255, 0, 51)).save(tmp_path / "faces" / "00000" / "a.png")
    Image.new("L", (16, 16), 102).save(tmp_path / "faces" / "b.jpg", quality=100)
    (tmp_path / "faces" / "notes.txt").write_text("not an image")
    dataset = load_image_folder(tmp_path / "faces", resolution=8)
    assert dataset.samples.shape == (2, 3, 8, 8) and dataset.labels is None
    assert np.allclose(dataset.samples[0].reshape(3, -1).T, [1.0, 0.0, 0.2], atol=1 / 255)
    assert np.allclose(dataset.samples[1], 0.4, atol=2 / 255)
    gray = load_image_folder(tmp_path / "faces", resolution=4, channels=1, limit=1)
    assert gray.samples.shape == (1, 1, 4, 4)


def test_missing_or_empty_image_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "absent", resolution=8)
    with pytest.raises(FileNotFoundError, match=r"no image files \(\.png"):
        load_image_folder(tmp_path, resolution=8)


def test_decoding_threads_do_not_change_the_pixels(tmp_path):
    rng = np.random.default_rng(0)
    for index in range(7):
        size = (int(rng.integers(9, 30)), int(rng.integers(9, 30)))
        Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(tmp_path / f"{index}.png")
    paths = image_files(tmp_path)
    one = decode_images(paths, resolution=8, workers=1, progress=False)
    assert one.shape == (7, 3, 8, 8) and one.dtype == np.uint8
    assert np.array_equal(one, decode_images(paths, resolution=8, workers=3, progress=False))
    assert not np.array_equal(one[0], one[1])
