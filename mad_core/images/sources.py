"""Image data sources a trial spec can name (``data.source``): their keys, their facts
(known before any work: shape, size, classes) and their train/test splits.

The training split is the real data of the loop; the held-out test split is what the
image metrics compare every generation against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from mad_core.fields import Field
from mad_core.images.datasets import MNIST_FILES, TrainTest, check_mnist_folder

DIGITS_SIZE = 1797  # scikit-learn's digits

IMAGE_SOURCE_FIELDS: dict[str, dict[str, Field]] = {
    "digits": {
        "test_fraction": Field(float, 0.25, low=0.0, low_open=True, high=0.9,
                               help="share of the 1,797 digits held out as the metrics' reference"),
        "split_seed": Field(int, 0, low=0, help="seed of the train/test split"),
    },
    "mnist": {
        "root": Field(str, help="folder holding MNIST/raw/ with the four IDX files (torchvision's layout)"),
    },
}


@dataclass(frozen=True)
class ImageFacts:
    """What validation needs to know of an image source without loading it."""

    shape: tuple[int, int, int]  # (C, H, W)
    train_size: int
    num_classes: int


def image_facts(data: Mapping) -> ImageFacts:
    """Facts of the image source ``data`` describes.

    Raises:
        FileNotFoundError, ValueError: MNIST's folder is missing or incomplete (the
            message names the files and the folder expected).
    """
    if data["source"] == "digits":
        return ImageFacts((1, 8, 8), DIGITS_SIZE - round(data["test_fraction"] * DIGITS_SIZE), 10)
    raw = check_mnist_folder(data["root"])
    with open(raw / MNIST_FILES[1], "rb") as labels:  # header: magic, count (big-endian)
        count = int.from_bytes(labels.read(8)[4:], "big")
    return ImageFacts((1, 28, 28), count, 10)


def load_image_source(data: Mapping) -> TrainTest:
    """The (train, test) splits of the image source ``data`` describes, (N, C, H, W) in [0, 1]."""
    from mad_core.images.datasets import load_digits, load_mnist

    if data["source"] == "digits":
        return load_digits(test_fraction=data["test_fraction"], split_seed=data["split_seed"])
    return load_mnist(data["root"])
