"""LeNet-5 trained once per real dataset; its 84-d penultimate layer is the feature space of MNIST FID.

The classifier is trained with an explicit ``torch.Generator`` and cached on disk
under a key made of the dataset (name and content hash), the architecture, the
training settings, the seed and a hash of this file, so a code change retrains. Its
held-out test accuracy is stored in a JSON record next to the weights.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mad_core.features.network_cache import cache_key, read_entry, write_entry
from mad_core.sources import FiniteDataset

logger = logging.getLogger(__name__)

ARCHITECTURE = "lenet5"
_CODE_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998): two conv + pool stages, then 120, 84 and class units.

    The modern variant (ReLU, max pooling) up to the 120 units: it reaches ~98.5 % on
    scikit-learn's digits where the original tanh / average pooling stays near 97.4 %.
    The 84-unit feature layer keeps LeNet's tanh: bounded features with no dead units,
    so their covariance (FID) is well conditioned.

    Inputs are (B, C, H, W) images in [0, 1] of any size: they are resized to LeNet's
    32x32 (8x8 digits up, 28x28 MNIST to its padded size) and mapped to [-1, 1].
    """

    input_size = 32
    feature_dim = 84

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5)  # 32 -> 28, pooled to 14
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)  # 14 -> 10, pooled to 5
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, self.feature_dim)
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations, (B, 84) in (-1, 1)."""
        if images.shape[-2:] != (self.input_size, self.input_size):
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        x = images * 2 - 1
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return torch.tanh(self.fc2(x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits, (B, num_classes)."""
        return self.classifier(self.features(images))


def _uninitialised_lenet(in_channels: int, num_classes: int) -> LeNet5:
    """A LeNet5 with allocated but unset parameters: building on "meta" draws no global random numbers."""
    with torch.device("meta"):
        network = LeNet5(in_channels=in_channels, num_classes=num_classes)
    return network.to_empty(device="cpu")


def _initialised_lenet(in_channels: int, num_classes: int, generator: torch.Generator) -> LeNet5:
    """A LeNet5 with torch's default initialisation, drawn from ``generator``."""
    network = _uninitialised_lenet(in_channels, num_classes)
    for layer in (network.conv1, network.conv2, network.fc1, network.fc2, network.classifier):
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(layer.weight[0].numel())
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return network


@dataclass(frozen=True)
class LeNetTraining:
    """Training settings (part of the cache key).

    Adam on cross-entropy with a one-cycle learning-rate schedule peaking at
    ``max_learning_rate``, batches reshuffled every epoch.
    """

    epochs: int = 20
    batch_size: int = 64
    max_learning_rate: float = 3e-3


@dataclass(frozen=True)
class TrainedLeNet:
    """A trained LeNet5, its accuracy on the held-out test split and its cache key."""

    network: LeNet5
    test_accuracy: float
    cache_key: str

    def features(self, images: np.ndarray | torch.Tensor, *, batch_size: int = 1024) -> np.ndarray:
        """84-d features of (N, C, H, W) images in [0, 1], shape (N, 84) float32, computed on the
        network's device."""
        device = next(self.network.parameters()).device
        images = torch.as_tensor(images, dtype=torch.float32, device=device)
        self.network.eval()
        with torch.inference_mode():
            chunks = [self.network.features(images[start:start + batch_size])
                      for start in range(0, len(images), batch_size)]
        return torch.cat(chunks).cpu().numpy() if chunks else np.empty((0, LeNet5.feature_dim), np.float32)


def _accuracy(network: LeNet5, dataset: FiniteDataset, batch_size: int = 1024) -> float:
    device = next(network.parameters()).device
    images = torch.from_numpy(dataset.samples).to(device)
    labels = torch.from_numpy(dataset.labels).to(device)
    network.eval()
    with torch.inference_mode():
        correct = sum(int((network(images[start:start + batch_size]).argmax(1)
                           == labels[start:start + batch_size]).sum())
                      for start in range(0, len(images), batch_size))
    return correct / len(images)


def train_lenet(train: FiniteDataset, test: FiniteDataset, *, seed: int,
                training: LeNetTraining = LeNetTraining(), progress: bool = True,
                device: str | torch.device = "cpu") -> LeNet5:
    """Train a LeNet5 on a labelled dataset of (N, C, H, W) images in [0, 1].

    Args:
        train: training split, with labels.
        test: held-out split, with labels; its accuracy is shown after each epoch.
        seed: seeds the ``torch.Generator`` for initialisation and batch order.
        progress: show a tqdm bar over epochs.
        device: where to train (MNIST's 60,000 images take minutes on a CPU).
    """
    for split in (train, test):
        if split.labels is None:
            raise ValueError(f"{split.name} has no labels; LeNet-5 training needs class labels")
    generator = torch.Generator().manual_seed(seed)
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    network = _initialised_lenet(train.samples.shape[1], num_classes, generator).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=training.max_learning_rate)
    images = torch.from_numpy(train.samples).to(device)
    labels = torch.from_numpy(train.labels).to(device)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, training.max_learning_rate, epochs=training.epochs,
        steps_per_epoch=math.ceil(len(images) / training.batch_size))
    epochs = tqdm(range(training.epochs), desc=f"LeNet-5 on {train.name}", disable=not progress)
    for _ in epochs:
        network.train()
        order = torch.randperm(len(images), generator=generator).to(device)
        for batch in order.split(training.batch_size):
            loss = F.cross_entropy(network(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if progress:
            epochs.set_postfix(loss=f"{loss.item():.3f}", test_accuracy=f"{_accuracy(network, test):.4f}")
    return network


def lenet_cache_key(train: FiniteDataset, test: FiniteDataset, *, seed: int, training: LeNetTraining,
                    device_type: str = "cpu") -> str:
    """The cache key of this network for (train, test, seed, training, device kind)."""
    return cache_key(ARCHITECTURE, train, test, seed=seed, training=training,
                     code_version=_CODE_VERSION, device_type=device_type)


def cached_lenet(train: FiniteDataset, test: FiniteDataset, *, cache_dir: str | Path, seed: int = 0,
                 training: LeNetTraining = LeNetTraining(), progress: bool = True,
                 device: str | torch.device = "cpu") -> TrainedLeNet:
    """The LeNet5 for (train, test, seed, training), trained on the first call and loaded after.

    Writes ``<cache_dir>/<key>.pt`` (weights, loaded with ``weights_only=True``) and
    ``<cache_dir>/<key>.json`` (test accuracy, dataset sizes, seed, settings, code version).
    """
    device = torch.device(device)
    key = lenet_cache_key(train, test, seed=seed, training=training, device_type=device.type)
    cached = read_entry(cache_dir, key, device)
    if cached is not None:
        checkpoint, record = cached
        network = _uninitialised_lenet(checkpoint["in_channels"], checkpoint["num_classes"])
        network.load_state_dict(checkpoint["state_dict"])
        network.to(device)
        return TrainedLeNet(network.eval(), record["test_accuracy"], key)

    started = time.perf_counter()
    network = train_lenet(train, test, seed=seed, training=training, progress=progress, device=device)
    accuracy = _accuracy(network, test)
    logger.info("LeNet-5 %s: test accuracy %.4f on %d held-out images", key, accuracy, len(test))
    write_entry(cache_dir, key, network,
                {"in_channels": network.in_channels, "num_classes": network.num_classes}, {
                    "key": key, "test_accuracy": accuracy, "train": train.name,
                    "train_size": len(train), "test": test.name, "test_size": len(test),
                    "seed": seed, "training": asdict(training), "architecture": ARCHITECTURE,
                    "code_version": _CODE_VERSION,
                    "training_seconds": round(time.perf_counter() - started, 2)})
    return TrainedLeNet(network.eval(), accuracy, key)
