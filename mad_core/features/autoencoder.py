"""A convolutional autoencoder trained once per unlabelled image dataset: the feature space
of the image metrics on an image folder (FFHQ thumbnails and the like).

Why an autoencoder: the metrics must work without labels (LeNet-5 is a classifier) and
without downloaded weights (Inception), on a CPU, deterministically. An autoencoder
needs nothing but the images, trains in seconds to minutes, and its bottleneck must
encode whatever varies across the real images to reconstruct them; a contrastive
encoder would depend on a choice of augmentations and large batches.

The features are the 64-d bottleneck plus 2 x C numbers on what the autoencoder could
not reconstruct. A bottleneck alone is blind to fine detail: a squared-error
reconstruction is smooth, so noise, blur or a generator's high-frequency artifacts
barely move it (measured on toy images: noise of std 0.1 left FID unchanged). The
residual (input minus reconstruction) is where such detail goes; its log mean energy
per channel, at full resolution and 2x2-averaged, moves with it. These are calibrated
once on the held-out split (unseen images, as generated ones are): standardised, then
scaled so that the two blocks have the same total variance there, and so weigh alike
in FID and in k-NN distances. Inception FID (``metrics.inception``) remains the
reference for natural images.

Like the LeNet (``mad_core.features.lenet``), the network is trained with an explicit
``torch.Generator`` and cached on disk under a key made of the dataset (name and
content hash), the architecture, the training settings, the seed and a hash of this
file. A JSON record next to the weights keeps the held-out reconstruction quality.
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

ARCHITECTURE = "conv_autoencoder"
_CODE_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
_BOTTOM = 4  # side of the smallest feature map


INPUT_SIZES = (16, 32, 64)


def input_size_for(resolution: int) -> int:
    """The autoencoder's input side for images of ``resolution``: the smallest of 16, 32
    and 64 that holds them (larger images are downsampled to 64: the features stay cheap
    on a CPU)."""
    return next((size for size in INPUT_SIZES if resolution <= size), INPUT_SIZES[-1])


class ConvAutoencoder(nn.Module):
    """Stride-2 convolutions (16, 32, 64, 128 channels) down to 4x4, a linear 64-d tanh
    bottleneck, and the mirror image back up with transposed convolutions and a sigmoid.

    Inputs are (B, C, H, W) images in [0, 1] of any size, resized (antialiased) to
    ``input_size`` (16, 32 or 64) and mapped to [-1, 1]. The bottleneck keeps a tanh, as
    LeNet's feature layer does: bounded features, a well-conditioned covariance for FID.
    ``features`` appends the calibrated residual energies (``feature_dim`` = 64 + 2 C).
    """

    bottleneck_dim = 64

    def __init__(self, *, in_channels: int = 3, input_size: int = 32):
        super().__init__()
        if input_size not in INPUT_SIZES:
            raise ValueError(f"input_size must be one of {INPUT_SIZES}, got {input_size}")
        self.in_channels, self.input_size = in_channels, input_size
        stages = int(math.log2(input_size // _BOTTOM))
        widths = (in_channels, 16, 32, 64, 128)[:stages + 1]
        down, up = [], []
        for index, (narrow, wide) in enumerate(zip(widths[:-1], widths[1:])):
            down += [nn.Conv2d(narrow, wide, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            up = [nn.ConvTranspose2d(wide, narrow, kernel_size=4, stride=2, padding=1)] + (
                [nn.LeakyReLU(0.2)] if index > 0 else []) + up
        self.encoder, self.decoder = nn.Sequential(*down), nn.Sequential(*up)
        self.bottom_width = widths[-1]
        self.to_features = nn.Linear(widths[-1] * _BOTTOM ** 2, self.bottleneck_dim)
        self.from_features = nn.Linear(self.bottleneck_dim, widths[-1] * _BOTTOM ** 2)
        self.feature_dim = self.bottleneck_dim + 2 * in_channels
        # Centre and scale of the log residual energies (``calibrate``).
        self.register_buffer("residual_mean", torch.zeros(2 * in_channels))
        self.register_buffer("residual_scale", torch.ones(2 * in_channels))

    def resized(self, images: torch.Tensor) -> torch.Tensor:
        """Images at the network's input size (what it reconstructs), in [0, 1]."""
        if images.shape[-2:] != (self.input_size, self.input_size):
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        return images

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Bottleneck activations, (B, 64) in (-1, 1)."""
        x = self.encoder(self.resized(images) * 2 - 1)
        return torch.tanh(self.to_features(x.flatten(1)))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, C, input_size, input_size) images in (0, 1) from (B, 64) bottleneck codes."""
        x = self.from_features(codes).view(-1, self.bottom_width, _BOTTOM, _BOTTOM)
        return torch.sigmoid(self.decoder(F.leaky_relu(x, 0.2)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``resized(images)``."""
        return self.decode(self.encode(images))

    def log_residual_energy(self, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(B, 2 C): log mean squared residual per channel, at full size and 2x2-averaged."""
        residual = self.resized(images) - self.decode(codes)
        energies = ((residual ** 2).mean((2, 3)), (F.avg_pool2d(residual, 2) ** 2).mean((2, 3)))
        return torch.log(torch.cat(energies, 1) + 1e-8)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 64 + 2 C): the bottleneck, then the calibrated log residual energies."""
        codes = self.encode(images)
        residual = (self.log_residual_energy(images, codes) - self.residual_mean) / self.residual_scale
        return torch.cat([codes, residual], 1)

    @torch.no_grad()
    def calibrate(self, images: np.ndarray) -> None:
        """Centre and scale the residual energies on ``images`` (N >= 2): each gets the
        same variance, and all 2 C together the bottleneck's total variance."""
        codes, energies = [], []
        for batch in _batches(images, self.residual_mean.device):
            codes.append(self.encode(batch))
            energies.append(self.log_residual_energy(batch, codes[-1]))
        codes, energies = torch.cat(codes), torch.cat(energies)
        block = (codes.var(0).sum() / energies.shape[1]).sqrt().clamp_min(1e-3)
        self.residual_mean.copy_(energies.mean(0))
        # A floor on the spread: a channel reconstructed equally well in every image must
        # not turn a tiny change into a huge feature.
        self.residual_scale.copy_(energies.std(0).clamp_min(0.1) / block)


def _uninitialised_autoencoder(in_channels: int, input_size: int) -> ConvAutoencoder:
    """Allocated but unset parameters: building on "meta" draws no global random numbers."""
    with torch.device("meta"):
        network = ConvAutoencoder(in_channels=in_channels, input_size=input_size)
    return network.to_empty(device="cpu")


def _initialised_autoencoder(in_channels: int, input_size: int,
                             generator: torch.Generator) -> ConvAutoencoder:
    """A ConvAutoencoder with torch's default initialisation, drawn from ``generator``."""
    network = _uninitialised_autoencoder(in_channels, input_size)
    for layer in network.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(layer.weight[0].numel())  # torch's fan-in, transposed convs too
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    network.residual_mean.zero_()
    network.residual_scale.fill_(1.0)
    return network


@dataclass(frozen=True)
class AutoencoderTraining:
    """Training settings (part of the cache key).

    Adam on the mean squared reconstruction error with a one-cycle learning rate peaking
    at ``max_learning_rate``, batches reshuffled every epoch, for ``epochs`` epochs but at
    least ``min_steps`` (a tiny folder still converges) and at most ``max_steps`` (70,000
    thumbnails: 2,000 steps, about two epochs; at 64 px a step took ~0.23 s on one busy
    CPU core, so ~8 minutes once per dataset, seconds on a GPU).
    """

    epochs: int = 20
    min_steps: int = 200
    max_steps: int = 2000
    batch_size: int = 64
    max_learning_rate: float = 2e-3

    def steps(self, size: int) -> int:
        """Optimizer steps for a training set of ``size`` images."""
        per_epoch = math.ceil(size / self.batch_size)
        return min(self.max_steps, max(self.min_steps, self.epochs * per_epoch))


@dataclass(frozen=True)
class TrainedAutoencoder:
    """A trained ConvAutoencoder, its held-out reconstruction quality and its cache key.

    ``unexplained_variance`` is the held-out split's mean squared reconstruction error
    divided by that of reconstructing every image as the training split's mean image
    (1 - R^2 of the pixels): 0 is perfect, 1 no better than the mean image.
    """

    network: ConvAutoencoder
    unexplained_variance: float
    cache_key: str

    def features(self, images: np.ndarray | torch.Tensor, *, batch_size: int = 512) -> np.ndarray:
        """Features of (N, C, H, W) images in [0, 1], shape (N, 64 + 2 C) float32, computed on
        the network's device."""
        device = next(self.network.parameters()).device
        self.network.eval()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                chunk = torch.as_tensor(images[start:start + batch_size], dtype=torch.float32, device=device)
                chunks.append(self.network.features(chunk).cpu())
        return torch.cat(chunks).numpy() if chunks else np.empty((0, self.network.feature_dim), np.float32)


def _batches(images: np.ndarray, device: torch.device, batch_size: int = 512):
    """float32 tensors on ``device`` of consecutive chunks of ``images``."""
    for start in range(0, len(images), batch_size):
        yield torch.as_tensor(images[start:start + batch_size], dtype=torch.float32, device=device)


def unexplained_variance(network: ConvAutoencoder, train: FiniteDataset, test: FiniteDataset) -> float:
    """Held-out reconstruction error over the error of the training split's mean image."""
    device = next(network.parameters()).device
    network.eval()
    with torch.inference_mode():
        total = sum(network.resized(batch).sum(0) for batch in _batches(train.samples, device))
        mean_image = total / len(train)
        error = baseline = 0.0
        for batch in _batches(test.samples, device):
            target = network.resized(batch)
            error += float(((network(batch) - target) ** 2).sum())
            baseline += float(((mean_image - target) ** 2).sum())
    return error / baseline if baseline > 0 else float("nan")


def train_autoencoder(train: FiniteDataset, held_out: FiniteDataset, *, seed: int,
                      training: AutoencoderTraining = AutoencoderTraining(),
                      progress: bool | None = None,
                      device: str | torch.device = "cpu") -> ConvAutoencoder:
    """Train a ConvAutoencoder on (N, C, H, W) images in [0, 1]; labels are not used.

    Args:
        train: the images it learns to reconstruct.
        held_out: at least 2 other images of the same kind, which ``calibrate`` the
            residual features (the weights never see them).
        seed: seeds the ``torch.Generator`` for initialisation and batch order.
        progress: a tqdm bar over steps; None shows it on a terminal only.
        device: where to train; batches move there one at a time.
    """
    samples = train.samples
    if samples.ndim != 4 or len(samples) < 1:
        raise ValueError(f"{train.name}: expected (N, C, H, W) images, got shape {samples.shape}")
    if len(held_out) < 2 or held_out.samples.shape[1:] != samples.shape[1:]:
        raise ValueError(f"{held_out.name}: calibration needs at least 2 images shaped like "
                         f"{train.name}'s {samples.shape[1:]}, got {held_out.samples.shape}")
    generator = torch.Generator().manual_seed(seed)
    network = _initialised_autoencoder(samples.shape[1], input_size_for(max(samples.shape[-2:])),
                                       generator).to(device)
    steps = training.steps(len(samples))
    optimizer = torch.optim.Adam(network.parameters(), lr=training.max_learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, training.max_learning_rate,
                                                   total_steps=steps)
    network.train()
    bar = tqdm(total=steps, desc=f"autoencoder on {train.name}",
               disable=None if progress is None else not progress)
    step = 0
    while step < steps:
        order = torch.randperm(len(samples), generator=generator).numpy()
        for start in range(0, len(order), training.batch_size):
            if step == steps:
                break
            batch = torch.as_tensor(samples[np.sort(order[start:start + training.batch_size])],
                                    dtype=torch.float32, device=device)
            loss = F.mse_loss(network(batch), network.resized(batch))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            bar.update()
            if step % 50 == 0 or step == steps:
                bar.set_postfix(mse=f"{loss.item():.4f}")
    bar.close()
    network.eval().calibrate(held_out.samples)
    return network


def autoencoder_cache_key(train: FiniteDataset, test: FiniteDataset, *, seed: int,
                          training: AutoencoderTraining, device_type: str = "cpu") -> str:
    """The cache key of this network for (train, test, seed, training, device kind)."""
    return cache_key(ARCHITECTURE, train, test, seed=seed, training=training,
                     code_version=_CODE_VERSION, device_type=device_type)


def cached_autoencoder(train: FiniteDataset, test: FiniteDataset, *, cache_dir: str | Path,
                       seed: int = 0, training: AutoencoderTraining = AutoencoderTraining(),
                       progress: bool | None = None,
                       device: str | torch.device = "cpu") -> TrainedAutoencoder:
    """The autoencoder for (train, test, seed, training), trained on the first call and loaded after.

    Writes ``<cache_dir>/<key>.pt`` (weights, loaded with ``weights_only=True``) and
    ``<cache_dir>/<key>.json`` (held-out unexplained variance, sizes, seed, settings,
    code version, training time).
    """
    device = torch.device(device)
    key = autoencoder_cache_key(train, test, seed=seed, training=training, device_type=device.type)
    cached = read_entry(cache_dir, key, "cpu")
    if cached is not None:
        checkpoint, record = cached
        network = _uninitialised_autoencoder(checkpoint["in_channels"], checkpoint["input_size"])
        network.load_state_dict(checkpoint["state_dict"])
        return TrainedAutoencoder(network.to(device).eval(), record["unexplained_variance"], key)

    started = time.perf_counter()
    network = train_autoencoder(train, test, seed=seed, training=training, progress=progress,
                                device=device)
    seconds = time.perf_counter() - started
    score = unexplained_variance(network, train, test)
    logger.info("autoencoder %s: held-out unexplained variance %.3f on %d images (%.1f s)",
                key, score, len(test), seconds)
    write_entry(cache_dir, key, network,
                {"in_channels": network.in_channels, "input_size": network.input_size}, {
                    "key": key, "unexplained_variance": score, "train": train.name,
                    "train_size": len(train), "test": test.name, "test_size": len(test),
                    "seed": seed, "training": asdict(training),
                    "steps": training.steps(len(train)), "input_size": network.input_size,
                    "architecture": ARCHITECTURE, "code_version": _CODE_VERSION,
                    "training_seconds": round(seconds, 2)})
    return TrainedAutoencoder(network.eval(), score, key)
