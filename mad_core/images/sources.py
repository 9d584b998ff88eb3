"""Image data sources a trial spec can name (``data.source``): their keys, their facts
(known before any work: shape, size, classes) and their train/test splits.

The training split is the real data of the loop; the held-out test split is what the
image metrics compare every generation against. "digits" and "mnist" are labelled;
"folder" (any folder of images, e.g. FFHQ thumbnails) is not, so only unconditional
models train on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from mad_core.fields import Field, size_field
from mad_core.images.datasets import (MNIST_FILES, TrainTest, check_mnist_folder, image_files,
                                      split_counts)

DIGITS_SIZE = 1797  # scikit-learn's digits
LABELLED_SOURCES = ("digits", "mnist")  # the sources whose images carry class labels

IMAGE_SOURCE_FIELDS: dict[str, dict[str, Field]] = {
    "digits": {
        "test_fraction": Field(float, 0.25, low=0.0, low_open=True, high=0.9,
                               help="share of the 1,797 digits held out as the metrics' reference"),
        "split_seed": Field(int, 0, low=0, help="seed of the train/test split"),
    },
    "mnist": {
        "root": Field(str, help="folder holding MNIST/raw/ with the four IDX files (torchvision's layout)"),
    },
    "folder": {
        "root": Field(str, help="folder of images (.png, .jpg, .jpeg, .bmp, .webp, .tif, .tiff; "
                                "searched recursively, hidden files skipped), e.g. FFHQ "
                                "thumbnails; unlabelled"),
        "resolution": Field(int, 32, low=4, high=1024,
                            help="side in pixels of the square images (center-cropped, then "
                                 "resized with Lanczos)"),
        "channels": Field(int, 3, choices=(1, 3), help="3 (RGB) or 1 (grayscale)"),
        "test_fraction": Field(float, 0.1, low=0.0, low_open=True, high=0.9,
                               help="share of the images held out as the metrics' reference"),
        "split_seed": Field(int, 0, low=0, help="seed of the train/test split"),
        "limit": size_field(None, nullable=True,
                            help="use only the first this many files in path order (null: all)"),
    },
}


@dataclass(frozen=True)
class ImageFacts:
    """What validation needs to know of an image source without loading it."""

    shape: tuple[int, int, int]  # (C, H, W)
    train_size: int
    num_classes: int | None  # None: unlabelled (only unconditional models train on it)
    test_size: int  # the held-out split the image metrics compare against


def image_facts(data: Mapping) -> ImageFacts:
    """Facts of the image source ``data`` describes; a folder's files are counted, not read.

    Raises:
        FileNotFoundError, ValueError: MNIST's folder is missing or incomplete (the
            message names the files and the folder expected), or an image folder is
            missing or holds no image file.
    """
    if data["source"] == "digits":
        train_size, test_size = split_counts(DIGITS_SIZE, data["test_fraction"])
        return ImageFacts((1, 8, 8), train_size, 10, test_size)
    if data["source"] == "folder":
        count = len(image_files(data["root"])[:data["limit"]])
        train_size, test_size = split_counts(count, data["test_fraction"])
        resolution = data["resolution"]
        return ImageFacts((data["channels"], resolution, resolution), train_size, None, test_size)
    raw = check_mnist_folder(data["root"])
    train_size, test_size = (_idx_count(raw / MNIST_FILES[index]) for index in (1, 3))
    return ImageFacts((1, 28, 28), train_size, 10, test_size)


def _idx_count(path) -> int:
    """The first size in an IDX file's header (magic, then big-endian sizes)."""
    with open(path, "rb") as file:
        return int.from_bytes(file.read(8)[4:], "big")


def load_image_source(data: Mapping) -> TrainTest:
    """The (train, test) splits of the image source ``data`` describes, (N, C, H, W) in [0, 1].

    A folder's decoded pixels are cached under ``<cache dir>/images``
    (``mad_core.metrics.evaluators.default_cache_dir``), so later trials skip decoding.
    """
    from mad_core.images.datasets import load_digits, load_image_folder_split, load_mnist

    if data["source"] == "digits":
        return load_digits(test_fraction=data["test_fraction"], split_seed=data["split_seed"])
    if data["source"] == "folder":
        from mad_core.metrics.evaluators import default_cache_dir

        return load_image_folder_split(
            data["root"], resolution=data["resolution"], channels=data["channels"],
            test_fraction=data["test_fraction"], split_seed=data["split_seed"],
            limit=data["limit"], cache_dir=default_cache_dir() / "images")
    return load_mnist(data["root"])
