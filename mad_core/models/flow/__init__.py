"""MAD's GLOW on vectors: a normalizing flow's spec options and rules.

The model (``model.NormalizingFlow``) and its layers (``layers``) import torch; this
module does not, so a spec validates fast. Defaults are MAD's GLOW on 2-D Rosenbrock:
8 coupling layers of hidden width 64, 20 epochs of batches of 256.
"""

from __future__ import annotations

from mad_core.fields import Field, Problem, size_field
from mad_core.models.neural.options import training_options

OPTIONS: dict[str, Field] = {
    "coupling_layers": size_field(8, help="flow steps, each actnorm, invertible linear map and "
                                          "affine coupling (MAD's GLOW: 8)"),
    "hidden": size_field(64, help="width of each coupling's MLP (MAD's GLOW: 64)"),
    "hidden_layers": size_field(2, help="hidden layers of each coupling's MLP"),
    **training_options(epochs=20, batch_size=256, lr=1e-3, ema_decay=0.0),
    # A flow's log-determinants and its inverse, stacked over every step, need float32;
    # networks this small gain nothing from bfloat16 anyway.
    "mixed_precision": Field(bool, False, help="bfloat16 autocast of the coupling MLPs on CUDA "
                                               "(ignored on CPU); the flow's own arithmetic "
                                               "stays float32"),
}


def check_options(values: dict, facts) -> list[Problem]:
    """Rules across keys: a coupling splits the coordinates in two, so d >= 2.

    Args:
        values: the spec's top-level values with ``data`` and ``model_options``.
        facts: None (the flow trains on vector sources only).
    """
    data = values["data"]
    if data.get("source") == "gaussian" and data.get("dim") is not None and data["dim"] < 2:
        return [Problem("data.dim", f"model flow needs d >= 2: each affine coupling splits the "
                                    f"coordinates in two halves, and d = {data['dim']} has "
                                    f"nothing to condition on; use the gaussian model for d = 1")]
    return []
