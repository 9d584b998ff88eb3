"""Real image datasets as ``FiniteDataset``s of float32 (N, C, H, W) arrays in [0, 1].

- ``load_digits``: scikit-learn's 1,797 real 8x8 digits, shipped with the package
  (the default: no download, no folder);
- ``load_mnist``: MNIST read by torchvision from a local folder of IDX files;
- ``load_image_folder`` / ``load_image_folder_split``: every image under a folder (e.g.
  FFHQ thumbnails), read with PIL at a chosen square resolution, without labels; the
  decoded pixels can be cached on disk, keyed by the files' paths, sizes and times.

Labels are int64 class indices where the dataset has them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
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
    train, test = _split_order(len(images), test_fraction, split_seed)
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
# Part of the key of cached decoded folders: a change to this file (the crop, the resizer)
# decodes again.
_CODE_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def _safe_name(name: str) -> str:
    """A folder name fit for dataset names and cache file names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "images"


def image_files(root: str | Path) -> list[str]:
    """The paths (strings, each starting with root) of every image file under root,
    recursively, sorted as strings; found by suffix (``IMAGE_SUFFIXES``, any case) without
    opening a file (70,000: ~0.3 s). Hidden files and folders (a leading dot, e.g. macOS's
    ``._x.png``) are skipped.

    Raises:
        FileNotFoundError: root does not exist, or holds no image file.
        NotADirectoryError: root is a file.
    """
    root = Path(root)
    where = "" if root.is_absolute() else f" (relative to {Path.cwd()})"
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist{where}; give the folder "
                                f"that holds the image files ({', '.join(IMAGE_SUFFIXES)})")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is a file, not a folder; give the folder that holds "
                                 f"the image files")
    paths = []
    for folder, subfolders, names in os.walk(root):  # scandir: no stat per file
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        # Strings, not Paths: building 70,000 Path objects alone takes longer than the walk.
        paths.extend(os.path.join(folder, name) for name in names
                     if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {root}{where} "
                                f"(searched recursively, hidden files skipped); give the folder "
                                f"that holds the images")
    return sorted(paths)


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


def _decode(path: str, mode: str, resolution: int) -> np.ndarray:
    """One image file as a uint8 (R, R) or (R, R, 3) array."""
    try:
        with Image.open(path) as image:
            return np.asarray(_square(image.convert(mode), resolution))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path} is not a readable image ({error}); remove it from the "
                         f"folder") from error


def decode_images(paths: list[str], *, resolution: int, channels: int = 3,
                  progress: bool | None = None, workers: int | None = None) -> np.ndarray:
    """The images at ``paths`` as uint8 (N, C, R, R): center-cropped, resized (Lanczos).

    Args:
        progress: a tqdm bar; None shows it on a terminal only.
        workers: decoding threads (Pillow releases the GIL while it decompresses and
            resamples); None: one per available core, at most 8. The result does not
            depend on it.

    Raises:
        ValueError: a file is not a readable image (the message names it).
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    mode = "RGB" if channels == 3 else "L"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = workers or min(8, cores or 1)
    pixels = np.empty((len(paths), channels, resolution, resolution), dtype=np.uint8)
    with ThreadPoolExecutor(workers) as pool:
        squares = pool.map(_decode, paths, [mode] * len(paths), [resolution] * len(paths))
        for index, square in enumerate(tqdm(squares, total=len(paths), unit="image",
                                            desc=f"decoding images at {resolution}px",
                                            disable=None if progress is None else not progress)):
            pixels[index] = square.reshape(resolution, resolution, channels).transpose(2, 0, 1)
    return pixels


def folder_cache_key(root: str | Path, paths: list[str], *, resolution: int, channels: int) -> str:
    """``folder-<name>-<R>px-<C>ch-<digest>``: the digest covers every file's path under
    root, size and modification time, the resolution, the channels, Pillow's version and
    this module's code, so an added, removed or rewritten file decodes again."""
    from PIL import __version__ as pillow_version

    digest = hashlib.sha256(json.dumps({"resolution": resolution, "channels": channels,
                                        "code": _CODE_VERSION, "pillow": pillow_version}).encode())
    prefix = os.path.join(str(Path(root)), "")  # how image_files' paths start
    for path in paths:
        stat = os.stat(path)
        relative = path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root)
        relative = relative.replace(os.sep, "/")
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return f"folder-{_safe_name(Path(root).resolve().name)}-{resolution}px-{channels}ch-{digest.hexdigest()[:16]}"


def _folder_pixels(root: str | Path, *, resolution: int, channels: int, limit: int | None,
                   cache_dir: str | Path | None, progress: bool | None) -> np.ndarray:
    """uint8 (N, C, R, R) of the first ``limit`` image files under root, decoded or cached."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if resolution < 1:
        raise ValueError(f"resolution must be a positive number of pixels, got {resolution}")
    paths = image_files(root)[:limit]
    if cache_dir is None:
        return decode_images(paths, resolution=resolution, channels=channels, progress=progress)
    cache_path = Path(cache_dir) / f"{folder_cache_key(root, paths, resolution=resolution, channels=channels)}.npy"
    if cache_path.is_file():
        pixels = np.load(cache_path)
        if pixels.shape == (len(paths), channels, resolution, resolution) and pixels.dtype == np.uint8:
            return pixels
    pixels = decode_images(paths, resolution=resolution, channels=channels, progress=progress)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name, then renamed: trials sharing a cache never read a
    # half-written file.
    with tempfile.NamedTemporaryFile(dir=cache_path.parent, suffix=".tmp", delete=False) as file:
        np.save(file, pixels)
    os.replace(file.name, cache_path)
    return pixels


def _to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1] with a single float32 array allocated."""
    images = pixels.astype(np.float32)
    images /= 255.0
    return images


def load_image_folder(root: str | Path, *, resolution: int, channels: int = 3,
                      limit: int | None = None, cache_dir: str | Path | None = None,
                      progress: bool | None = None) -> FiniteDataset:
    """Every image file under root (``image_files``) as one unlabelled (N, C, R, R) float32 set.

    Args:
        root: a folder of images in any PIL format with a suffix in ``IMAGE_SUFFIXES``.
        resolution: side R of the square output; images are center-cropped and resized.
        channels: 3 (RGB) or 1 (grayscale).
        limit: read only the first ``limit`` files (memory: N * C * R^2 * 4 bytes).
        cache_dir: keep the decoded uint8 pixels there as ``<folder_cache_key>.npy`` and
            read them back while the files are unchanged (None: decode every time).
        progress: a tqdm bar over the decoding; None shows it on a terminal only.
    """
    pixels = _folder_pixels(root, resolution=resolution, channels=channels, limit=limit,
                            cache_dir=cache_dir, progress=progress)
    return FiniteDataset(_to_unit_float(pixels), None, name=f"folder-{_safe_name(Path(root).resolve().name)}")


def split_counts(size: int, test_fraction: float) -> tuple[int, int]:
    """(train, test) sizes of a random split: round(test_fraction * size) held out."""
    n_test = round(test_fraction * size)
    return size - n_test, n_test


def _split_order(size: int, test_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: a permutation seeded by split_seed, its first share held out."""
    order = np.random.default_rng(split_seed).permutation(size)
    n_test = split_counts(size, test_fraction)[1]
    return order[n_test:], order[:n_test]


def load_image_folder_split(root: str | Path, *, resolution: int, channels: int = 3,
                            test_fraction: float = 0.1, split_seed: int = 0,
                            limit: int | None = None, cache_dir: str | Path | None = None,
                            progress: bool | None = None) -> TrainTest:
    """``load_image_folder`` split at random into train and held-out test, both unlabelled.

    The split is a permutation seeded by ``split_seed`` over the (first ``limit``) files
    in path order: the same files and seed give the same split.
    """
    pixels = _folder_pixels(root, resolution=resolution, channels=channels, limit=limit,
                            cache_dir=cache_dir, progress=progress)
    train, test = _split_order(len(pixels), test_fraction, split_seed)
    name = f"folder-{_safe_name(Path(root).resolve().name)}"
    return TrainTest(FiniteDataset(_to_unit_float(pixels[train]), None, name=f"{name}-train"),
                     FiniteDataset(_to_unit_float(pixels[test]), None, name=f"{name}-test"))
