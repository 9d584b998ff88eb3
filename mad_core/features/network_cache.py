"""The on-disk cache of feature networks trained once per dataset (LeNet-5, the
autoencoder): ``<key>.pt`` (weights and constructor facts, read with weights_only) and
``<key>.json`` (a record of how it was trained and how well it does).

Files are written under a temporary name, then renamed: trials sharing a cache never
read a half-written file. The record goes last: an entry counts once both files exist.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn


def cache_key(architecture: str, train, test, *, seed: int, training, code_version: str,
              device_type: str = "cpu") -> str:
    """``<architecture>-<train name>-seed<seed>-<digest>``; the digest covers the data
    (train and test fingerprints), the training settings (a dataclass), the code and the
    kind of device it trained on (a GPU's kernels give other weights than a CPU's)."""
    from mad_core.images.datasets import fingerprint

    identity = {"architecture": architecture, "train": fingerprint(train),
                "test": fingerprint(test), "training": asdict(training), "seed": seed,
                "code": code_version}
    if device_type != "cpu":
        identity["device"] = device_type
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return f"{architecture}-{train.name}-seed{seed}-{digest}"


def cache_paths(cache_dir: str | Path, key: str) -> tuple[Path, Path]:
    """(weights, record) paths of the entry `key`."""
    return Path(cache_dir) / f"{key}.pt", Path(cache_dir) / f"{key}.json"


def read_entry(cache_dir: str | Path, key: str, device) -> tuple[dict, dict] | None:
    """(checkpoint, record) of a complete entry, or None."""
    weights_path, record_path = cache_paths(cache_dir, key)
    if not (weights_path.is_file() and record_path.is_file()):
        return None
    checkpoint = torch.load(weights_path, map_location=device, weights_only=True)
    return checkpoint, json.loads(record_path.read_text())


def write_entry(cache_dir: str | Path, key: str, network: nn.Module, facts: dict,
                record: dict) -> None:
    """Stores the network's weights (on the CPU) with its constructor `facts`, then the
    JSON `record`."""
    weights_path, record_path = cache_paths(cache_dir, key)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = weights_path.with_suffix(f".{os.getpid()}.tmp")
    cpu_state = {name: tensor.cpu() for name, tensor in network.state_dict().items()}
    torch.save({"state_dict": cpu_state, **facts}, temporary)
    os.replace(temporary, weights_path)
    temporary.write_text(json.dumps(record, indent=2))
    os.replace(temporary, record_path)
