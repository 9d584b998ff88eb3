"""Real image datasets as ``FiniteDataset``s of float32 (N, C, H, W) arrays in [0, 1].

- ``load_digits``: scikit-learn's 1,797 real 8x8 digits, shipped with the package
  (the default: no download, no folder);
- ``load_mnist``: MNIST read by torchvision from a local folder of IDX files;
- ``load_image_folder``: every image under a folder (e.g. FFHQ thumbnails), read with
  PIL at a chosen square resolution, without labels.

Labels are int64 class indices where the dataset has them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from mad_core.sources import FiniteDataset


class TrainTest(NamedTuple):
    """A dataset's training split and its held-out test split."""

    train: FiniteDataset
    test: FiniteDataset


def fingerprint(dataset: FiniteDataset) -> str:
    """16 hex digits of a hash of a dataset's name, samples and labels, for cache keys."""
    digest = hashlib.sha256(f"{dataset.name}|{dataset.samples.shape}|{dataset.samples.dtype}".encode())
    digest.update(np.ascontiguousarray(dataset.samples).data)
    if dataset.labels is not None:
        digest.update(np.ascontiguousarray(dataset.labels, dtype=np.int64).data)
    return digest.hexdigest()[:16]


def load_digits(*, test_fraction: float = 0.25, split_seed: int = 0) -> TrainTest:
    """scikit-learn's digits as (N, 1, 8, 8) images, split at random into train and test.

    Args:
        test_fraction: share of the 1,797 digits held out for testing.
        split_seed: seed of the split permutation (the same seed gives the same split).
    """
    from sklearn.datasets import load_digits as sklearn_digits  # slow import, only needed here

    digits = sklearn_digits()
    # Pixel values are integer ink counts 0..16.
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(split_seed).permutation(len(images))
    n_test = round(test_fraction * len(images))
    test, train = order[:n_test], order[n_test:]
    return TrainTest(FiniteDataset(images[train], labels[train], name="digits-train"),
                     FiniteDataset(images[test], labels[test], name="digits-test"))


# torchvision reads these four uncompressed files from ROOT/MNIST/raw/.
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_file_size(header: bytes) -> int | None:
    """Size in bytes of the unsigned-byte IDX file this header starts; None if it starts none."""
    if len(header) < 4 or header[:3] != b"\x00\x00\x08" or not 1 <= header[3] <= 3:
        return None
    n_dims = header[3]
    if len(header) < 4 + 4 * n_dims:
        return None
    sizes = [int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims)]
    return 4 + 4 * n_dims + int(np.prod(sizes))


def check_mnist_folder(root: str | Path) -> Path:
    """The folder holding MNIST's IDX files (ROOT/MNIST/raw); raises a clear error if incomplete.

    Raises:
        FileNotFoundError: a file is missing; the message lists every expected path.
        ValueError: a file is not an unsigned-byte IDX file or is truncated.
    """
    raw = Path(root) / "MNIST" / "raw"
    missing = [name for name in MNIST_FILES if not (raw / name).is_file()]
    if missing:
        compressed = [f"{name}.gz" for name in missing if (raw / f"{name}.gz").is_file()]
        hint = f" Decompress {', '.join(compressed)} (gunzip) there." if compressed else ""
        raise FileNotFoundError(
            f"MNIST not found: expected the IDX files {', '.join(MNIST_FILES)} in {raw}/ "
            f"(torchvision's layout ROOT/MNIST/raw/ with ROOT={Path(root)}); missing: "
            f"{', '.join(missing)}.{hint}")
    for name in MNIST_FILES:
        path = raw / name
        with path.open("rb") as file:
            expected = _idx_file_size(file.read(16))
        actual = path.stat().st_size
        if expected is None:
            raise ValueError(f"{path} is not an unsigned-byte IDX file (bad header)")
        if actual != expected:
            raise ValueError(f"{path} is incomplete or corrupt: its header announces "
                             f"{expected} bytes, the file has {actual}")
    return raw


def load_mnist(root: str | Path) -> TrainTest:
    """MNIST from local IDX files under ROOT/MNIST/raw/ as (N, 1, 28, 28) images (never downloads)."""
    from mad_core.images.torchvision_compat import import_torchvision  # imports torch: ~1 s

    check_mnist_folder(root)
    mnist = import_torchvision().datasets.MNIST
    splits = []
    for train, name in ((True, "mnist-train"), (False, "mnist-test")):
        split = mnist(str(root), train=train, download=False)
        images = (split.data.numpy().astype(np.float32) / 255.0)[:, None]
        splits.append(FiniteDataset(images, split.targets.numpy().astype(np.int64), name=name))
    return TrainTest(*splits)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def _square(image: Image.Image, resolution: int) -> Image.Image:
    """Center-crop to a square (so faces are not stretched), then resize to resolution^2."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        # Lanczos is antialiased: aliasing from a naive downsampling shifts FID (clean-fid's point).
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return image


def load_image_folder(root: str | Path, *, resolution: int, channels: int = 3,
                      limit: int | None = None) -> FiniteDataset:
    """Every image file under root (recursively, sorted by path) as (N, C, R, R) float32.

    Args:
        root: a folder of images in any PIL format with a suffix in ``IMAGE_SUFFIXES``.
        resolution: side R of the square output; images are center-cropped and resized.
        channels: 3 (RGB) or 1 (grayscale).
        limit: read only the first ``limit`` files (memory: N * C * R^2 * 4 bytes).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    paths = paths[:limit]
    mode = "RGB" if channels == 3 else "L"
    pixels = np.empty((len(paths), resolution, resolution, channels), dtype=np.uint8)
    for index, path in enumerate(paths):
        with Image.open(path) as image:
            square = _square(image.convert(mode), resolution)
        pixels[index] = np.asarray(square).reshape(resolution, resolution, channels)
    images = pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return FiniteDataset(images, None, name=f"folder:{root.name}")
