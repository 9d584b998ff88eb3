"""Explicit random generators derived from a trial seed.

Nothing in mad_core touches global random state. Every random draw comes from a
generator derived from (seed, purpose, generation, ...), so a generation's draws do
not depend on what ran before it: a loop resumed after generation t draws exactly
what an uninterrupted run would.
"""

from __future__ import annotations

import enum

import numpy as np


class Stream(enum.IntEnum):
    """What a generator is used for; part of its derivation key."""

    REAL = 1
    SYNTHETIC = 2
    FIT = 3
    EVAL = 4
    GRID = 5  # the fixed noise and labels of a trial's sample grids


def generator(seed: int, stream: Stream, *key: int) -> np.random.Generator:
    """A PCG64 generator for (seed, stream, *key); equal keys give equal streams."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(stream), *key)))


def int_seed(rng: np.random.Generator) -> int:
    """A 31-bit integer seed drawn from rng, for libraries that only take ints."""
    return int(rng.integers(2**31 - 1))
