"""Per-generation metrics of a fitted model, chosen once per trial from its spec.

- ``GaussianEvaluator``: closed-form distances of a fitted Gaussian to P_r.
- ``PointCloudEvaluator``: low-dimensional sources. k-NN precision/recall with density
  and coverage, and W2 by optimal transport between n_eval samples and n_eval held-out
  real points: POT's sliced W2 (``w2_sq_sliced``, O(n log n) per projection) always,
  and the exact EMD (``w2_sq_emp``, O(n^3)) only up to ``EXACT_EMD_MAX`` points.
- ``ImageEvaluator``: image sources. FID, KID, precision/recall/density/coverage against
  the held-out test split, on the features of a network trained once per dataset:
  LeNet-5's 84-d layer for labelled sources (MAD's MNIST FID), a convolutional
  autoencoder's 64-d bottleneck for unlabelled ones (an image folder); class fidelity
  (the share of generated images that the LeNet classifies as the label they were
  generated for) for conditional models on labelled sources; FID on clean-fid's
  Inception features when ``metrics.inception`` is on.

The real side of every metric (reference statistics, features, held-out points) is
computed once in the constructor. ``evaluator(model, rng)`` draws ``n_eval`` samples
with the trial's lambda and returns {metric: float}.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from mad_core.metrics.gaussian import GaussianReference, gaussian_metrics
from mad_core.metrics.modes import mode_metrics
from mad_core.metrics.precision_recall import precision_recall
from mad_core.seeding import int_seed
from mad_core.sources import FiniteDataset

EXACT_EMD_MAX = 2000  # points per side; the network simplex is cubic beyond
SLICED_PROJECTIONS = 200
CACHE_ENVIRONMENT_VARIABLE = "MAD_CACHE_DIR"


def default_cache_dir() -> Path:
    """Where trained feature networks and reference features are kept: $MAD_CACHE_DIR,
    else ~/.cache/mad-sweep."""
    return Path(os.environ.get(CACHE_ENVIRONMENT_VARIABLE) or Path.home() / ".cache" / "mad-sweep")


class GaussianEvaluator:
    """w2_sq, w2, trace, ... of a fitted GaussianModel against the Gaussian P_r."""

    def __init__(self, reference: GaussianReference):
        self.reference = reference

    def __call__(self, model, rng: np.random.Generator) -> dict[str, float]:
        values = gaussian_metrics(model.mean_[None], model.cov_[None], self.reference)
        return {name: float(v[0]) for name, v in values.items()}


def _precision_recall_metrics(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    scores = precision_recall(real, fake, k=k, density_coverage=True)
    return {"precision": scores.precision, "recall": scores.recall,
            "density": scores.density, "coverage": scores.coverage}


class PointCloudEvaluator:
    """Sample-based metrics for low-dimensional sources.

    Besides precision/recall and W2: ``trace``, the trace of the samples' covariance
    (the spread that a biased loop shrinks; for a fitted Gaussian it is tr Sigma_t), and
    on a grid of modes, ``modes_covered`` and ``high_quality`` (``metrics.modes``).

    Args:
        reference: (n_eval, d) held-out real points.
        lam: the trial's sampling bias (metrics judge the samples the loop would use).
        k: neighbour index of precision/recall.
        modes: (m, d) mode centres and their std, for a grid-of-modes source.
    """

    def __init__(self, reference: np.ndarray, lam: float, k: int,
                 modes: tuple[np.ndarray, float] | None = None):
        self.reference, self.lam, self.k, self.modes = reference, lam, k, modes

    def __call__(self, model, rng: np.random.Generator) -> dict[str, float]:
        import ot  # POT imports in ~1 s; Gaussian-only trial processes never need it

        samples = model.sample(len(self.reference), self.lam, rng).x
        metrics = _precision_recall_metrics(self.reference, samples, self.k)
        metrics["trace"] = float(np.trace(np.atleast_2d(np.cov(samples, rowvar=False))))
        if self.modes is not None:
            metrics.update(mode_metrics(samples, *self.modes))
        sliced = ot.sliced_wasserstein_distance(samples, self.reference,
                                                n_projections=SLICED_PROJECTIONS, p=2,
                                                seed=int_seed(rng))
        metrics["w2_sq_sliced"] = float(sliced) ** 2
        if len(self.reference) <= EXACT_EMD_MAX:
            uniform = np.full(len(samples), 1.0 / len(samples))
            cost = ot.dist(samples, self.reference, metric="sqeuclidean")
            w2_sq = float(ot.emd2(uniform, uniform, cost, numItermax=10_000_000))
            metrics.update(w2_sq_emp=w2_sq, w2_emp=float(np.sqrt(w2_sq)))
        return metrics


class ImageEvaluator:
    """Image metrics against a held-out test split (see the module docstring).

    The feature network, trained on train and cached, is chosen by the data: LeNet-5
    when train has labels, else the autoencoder (``feature_extractor``; ``feature_network``
    names it: "lenet5" or "conv_autoencoder"). Metric names are the same for both.

    Args:
        train, test: the dataset's splits (N, C, H, W) in [0, 1], with or without labels;
            the feature network is trained on train (cached), test is the reference.
        lam, k, n_eval: the trial's sampling bias, P/R neighbour index, samples drawn.
        conditional: the model samples labels (class fidelity is measured, when the
            data has labels).
        inception: also FID on Inception features (its weights must be on the machine).
        device: where the feature networks run.
    """

    def __init__(self, train: FiniteDataset, test: FiniteDataset, *, lam: float, k: int,
                 n_eval: int, conditional: bool, inception: bool, device="cpu",
                 cache_dir: Path | None = None):
        from mad_core.images.datasets import fingerprint
        from mad_core.metrics.image_metrics import reference_features

        cache_dir = Path(cache_dir or default_cache_dir())
        self.lam, self.k, self.n_eval, self.conditional = lam, k, n_eval, conditional
        self.device = device
        self.lenet = None  # labelled data only: its classifier also gives class fidelity
        if train.labels is not None:
            from mad_core.features.lenet import ARCHITECTURE, cached_lenet

            self.lenet = cached_lenet(train, test, cache_dir=cache_dir / "lenet", progress=False,
                                      device=device)
            self.feature_extractor = self.lenet
        else:
            from mad_core.features.autoencoder import ARCHITECTURE, cached_autoencoder

            # Minutes on a CPU for a large folder: its progress bar shows on a terminal.
            self.feature_extractor = cached_autoencoder(train, test, device=device,
                                                        cache_dir=cache_dir / "autoencoder")
        self.feature_network = ARCHITECTURE
        self.reference = reference_features(
            cache_dir / "reference", f"{fingerprint(test)}-{self.feature_extractor.cache_key}",
            lambda: self.feature_extractor.features(self._tensor(test.samples)))
        self.inception = None
        if inception:
            from mad_core.features.inception import (INCEPTION_WEIGHTS_FILE, InceptionFeatures,
                                                     find_inception_weights)

            weights = find_inception_weights() / INCEPTION_WEIGHTS_FILE
            weights_digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
            self.inception = InceptionFeatures()  # clean-fid's resizer runs on the CPU
            self.inception_reference = reference_features(
                cache_dir / "reference", f"{fingerprint(test)}-inception-{weights_digest}",
                lambda: self.inception(test.samples))

    def _tensor(self, images: np.ndarray):
        import torch

        return torch.as_tensor(images, dtype=torch.float32, device=self.device)

    def __call__(self, model, rng: np.random.Generator) -> dict[str, float]:
        import torch

        from mad_core.metrics.image_metrics import FeatureStatistics, fid_from_statistics, kid

        samples = model.sample(self.n_eval, self.lam, rng)
        images = self._tensor(samples.x)
        features = self.feature_extractor.features(images)
        metrics = {"fid": fid_from_statistics(FeatureStatistics.of(features),
                                              self.reference.statistics),
                   "kid": kid(features, self.reference.features, seed=int_seed(rng)),
                   **_precision_recall_metrics(self.reference.features, features, self.k)}
        if self.conditional and samples.y is not None and self.lenet is not None:
            with torch.inference_mode():
                logits = torch.cat([self.lenet.network(chunk) for chunk in images.split(1024)])
            predicted = logits.argmax(1).cpu().numpy()
            metrics["class_fidelity"] = float(np.mean(predicted == samples.y))
        if self.inception is not None:
            inception_features = self.inception(samples.x)
            metrics["fid_inception"] = fid_from_statistics(
                FeatureStatistics.of(inception_features), self.inception_reference.statistics)
        return metrics
