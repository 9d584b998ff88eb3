"""Loop state and model snapshots on disk: dicts of tensors and arrays, never pickles.

``save_state`` writes a nested dict of dicts, lists, numbers, strings, numpy arrays and
torch tensors with ``torch.save``; ``load_state`` reads it back with
``torch.load(weights_only=True)``, which refuses anything but those types, so a
checkpoint or snapshot from a shared bucket cannot run code. numpy arrays travel as
tensors tagged ``NDARRAY_TAG`` and come back as numpy arrays of the same dtype.

torch is imported on first use: a sweep of Gaussian trials checkpoints with it, but its
trial processes should not pay its import (~2 s) before the first checkpoint.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

NDARRAY_TAG = "__ndarray__"


def _encode(value: Any) -> Any:
    import torch

    if isinstance(value, np.ndarray):
        return {NDARRAY_TAG: torch.from_numpy(np.array(value, copy=True))}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {NDARRAY_TAG}:
            return value[NDARRAY_TAG].numpy()
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def save_state(state: dict, target: str | Path | BinaryIO) -> None:
    """Write `state` to a path (atomically: a temporary file, then a rename) or a binary file."""
    import torch

    if isinstance(target, (str, Path)):
        path = Path(target)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(_encode(state), temporary)
        os.replace(temporary, path)
    else:
        torch.save(_encode(state), target)


def load_state(source: str | Path | BinaryIO | bytes) -> dict:
    """Read a ``save_state`` file (path, binary file or bytes) with weights_only=True.

    Tensors land on the CPU; a model's ``load_state_dict`` moves them to its device.
    """
    import torch

    if isinstance(source, bytes):
        source = io.BytesIO(source)
    return _decode(torch.load(source, map_location="cpu", weights_only=True))


def state_bytes(state: dict) -> bytes:
    """`state` as the bytes ``save_state`` would write (for artifacts sent over Ray)."""
    buffer = io.BytesIO()
    save_state(state, buffer)
    return buffer.getvalue()
