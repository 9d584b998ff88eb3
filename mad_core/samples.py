"""A training set or a model's draw: samples and, where the data has them, class labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Samples:
    """n samples ``x`` (n, *sample_shape) and their int64 class labels ``y`` (n,), or None
    for unlabelled data (the Gaussian sources, an unconditional model's draws)."""

    x: np.ndarray
    y: np.ndarray | None = None

    def __post_init__(self):
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(f"{len(self.y)} labels for {len(self.x)} samples")

    def __len__(self) -> int:
        return len(self.x)

    def head(self, n: int) -> Samples:
        """The first n samples."""
        return Samples(self.x[:n], None if self.y is None else self.y[:n])

    @staticmethod
    def concatenate(parts: list[Samples]) -> Samples:
        """One set of every part's samples, in order. Labels are kept only when every
        non-empty part has them (an unconditional model's draws carry none)."""
        parts = [p for p in parts if len(p)] or parts[:1]
        labelled = all(p.y is not None for p in parts)
        return Samples(np.concatenate([p.x for p in parts]),
                       np.concatenate([p.y for p in parts]) if labelled else None)
