"""Model snapshots: a generation's fitted model as a file a researcher can reload.

A snapshot is a ``mad_core.checkpoint`` file (tensors and arrays, read with
``weights_only=True``) holding the model's name, options and fitted state, plus the
trial spec and generation for provenance. Sweeps log them to the trial's MLflow run
under ``snapshots/``; ``mad run`` writes them to its output folder. To sample from
generation t's model::

    from mad_core.snapshots import load_snapshot
    model = load_snapshot("snapshots/generation_0005.pt")          # device="cuda" on a GPU
    images = model.sample(64, bias=1.0, rng=numpy.random.default_rng(0)).x  # (64, C, H, W)
"""

from __future__ import annotations

from pathlib import Path

from mad_core.spec import TrialSpec

SNAPSHOT_FORMAT = "mad-sweep model snapshot 1"


def snapshot_state(spec: TrialSpec, model, generation: int, chain: int,
                   num_classes: int | None) -> dict:
    """The content of a snapshot file (weights only: no optimizer state)."""
    state = model.state_dict()
    state.pop("optimizers", None)
    return {"format": SNAPSHOT_FORMAT, "model": spec.model,
            "model_options": dict(spec.model_options), "num_classes": num_classes,
            "generation": generation, "chain": chain, "lam": spec.lam,
            "spec": spec.to_dict(), "state": state}


def load_snapshot(path: str | Path | bytes, device: str = "cpu"):
    """The fitted model a snapshot file (or its bytes) holds, ready to ``sample``."""
    from mad_core.checkpoint import load_state
    from mad_core.factory import build_model

    content = load_state(path)
    if content.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"{path if not isinstance(path, bytes) else 'the data'} is not a "
                         f"{SNAPSHOT_FORMAT!r} file (format {content.get('format')!r})")
    model = build_model(content["model"], content["model_options"], device=device,
                        num_classes=content["num_classes"])
    return model.load_state_dict(content["state"])
