"""Mode metrics of the 2-D grid of Gaussian modes (GAN papers' companions to precision
and recall: Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN).

A generated sample is of high quality when it lies within ``radius_in_std`` standard
deviations of its nearest mode. A mode is covered when it holds at least ``min_share``
of the high-quality samples a perfect model would give it (n / modes): with 2,500
samples and 25 modes a perfect model puts ~100 on each, and a mode counts from 10.
A fixed share rather than a fixed count keeps the rule meaningful at every n_eval.
"""

from __future__ import annotations

import numpy as np

RADIUS_IN_STD = 3.0
MIN_SHARE = 0.1


def mode_metrics(samples: np.ndarray, modes: np.ndarray, std: float, *,
                 radius_in_std: float = RADIUS_IN_STD,
                 min_share: float = MIN_SHARE) -> dict[str, float]:
    """Modes covered and the high-quality fraction of ``samples``.

    Args:
        samples: (n, d) generated points.
        modes: (m, d) mode centres.
        std: the modes' isotropic standard deviation.

    Returns:
        modes_covered: number of modes with at least min_share * n / m high-quality
            samples (0..m); high_quality: share of samples within radius_in_std * std
            of their nearest mode (0..1).
    """
    squared = ((samples[:, None, :] - modes[None, :, :]) ** 2).sum(axis=-1)
    nearest = squared.argmin(axis=1)
    close = squared[np.arange(len(samples)), nearest] <= (radius_in_std * std) ** 2
    counts = np.bincount(nearest[close], minlength=len(modes))
    needed = min_share * len(samples) / len(modes)
    return {"modes_covered": float((counts >= needed).sum()),
            "high_quality": float(close.mean()) if len(samples) else 0.0}
