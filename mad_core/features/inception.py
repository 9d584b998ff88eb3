"""clean-fid's Inception-v3 features (2048-d, "clean" mode) from weights the user has locally.

Nothing is downloaded: clean-fid would fetch the TorchScript weights on first use,
which fails on a machine without internet. The weights file is looked up, in order,
at the path given, at ``$MAD_INCEPTION_WEIGHTS``, then in clean-fid's own download
folder (/tmp); if it is in none of them the error says where to get it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mad_core.images.torchvision_compat import import_cleanfid

INCEPTION_WEIGHTS_FILE = "inception-2015-12-05.pt"
INCEPTION_WEIGHTS_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                         + INCEPTION_WEIGHTS_FILE)
WEIGHTS_ENVIRONMENT_VARIABLE = "MAD_INCEPTION_WEIGHTS"
_CLEANFID_DOWNLOAD_FOLDER = Path("/tmp")  # where clean-fid's feature_extractor keeps it on Linux


class InceptionWeightsMissingError(FileNotFoundError):
    """The Inception TorchScript weights are not on this machine."""


def find_inception_weights(weights: str | Path | None = None) -> Path:
    """The folder holding ``inception-2015-12-05.pt`` (clean-fid loads it by that name).

    Args:
        weights: the weights file or a folder holding it; None looks at
            ``$MAD_INCEPTION_WEIGHTS`` and then clean-fid's download folder.
    """
    if weights is None:
        weights = os.environ.get(WEIGHTS_ENVIRONMENT_VARIABLE) or _CLEANFID_DOWNLOAD_FOLDER
    weights = Path(weights)
    weights_file = weights / INCEPTION_WEIGHTS_FILE if weights.is_dir() else weights
    if weights_file.name == INCEPTION_WEIGHTS_FILE and weights_file.is_file():
        return weights_file.parent
    raise InceptionWeightsMissingError(
        f"Inception weights not found at {weights_file} (looked for a file named "
        f"{INCEPTION_WEIGHTS_FILE}). mad_core never downloads them: fetch {INCEPTION_WEIGHTS_URL} "
        f"where there is internet, copy the file here under that name, and pass its path "
        f"(InceptionFeatures(weights=...)) or set {WEIGHTS_ENVIRONMENT_VARIABLE}=/path/to/{INCEPTION_WEIGHTS_FILE}.")


class InceptionFeatures:
    """Callable: (N, C, H, W) images in [0, 1] (C = 1 or 3) -> (N, 2048) float32 features.

    Images are scaled to [0, 255], resized to 299x299 with clean-fid's "clean" resizer
    (PIL bicubic on float channels) and passed through clean-fid's InceptionV3W on CPU.
    """

    feature_dim = 2048

    def __init__(self, weights: str | Path | None = None, *, batch_size: int = 64):
        folder = find_inception_weights(weights)
        network_class = import_cleanfid("inception_torchscript").InceptionV3W
        self.network = network_class(str(folder), download=False, resize_inside=False).eval()
        self.resize = import_cleanfid("resize").build_resizer("clean")
        self.batch_size = batch_size

    def _resized(self, images: np.ndarray) -> torch.Tensor:
        """(B, 3, 299, 299) float32 in [0, 255] from (B, 3, H, W) in [0, 1]."""
        channels_last = images.transpose(0, 2, 3, 1) * 255.0
        return torch.from_numpy(np.stack([self.resize(image) for image in channels_last]).transpose(0, 3, 1, 2))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images of shape (N, 1 or 3, H, W), got {images.shape}")
        if images.shape[1] == 1:
            images = np.repeat(images, 3, axis=1)
        features = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                features.append(self.network(self._resized(images[start:start + self.batch_size])).numpy())
        return np.concatenate(features).astype(np.float32) if features else np.empty((0, 2048), np.float32)
