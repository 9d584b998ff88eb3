"""The training options every neural model has (torch-free, so specs validate fast).

Each model declares its own defaults for them next to its class.
"""

from __future__ import annotations

from mad_core.fields import Field, size_field


def training_options(*, epochs: int, batch_size: int, lr: float, ema_decay: float) -> dict[str, Field]:
    """Spec fields of the shared training loop, with a model's defaults."""
    return {
        "epochs": size_field(epochs, help="passes over the training set per generation"),
        "steps": size_field(None, nullable=True,
                            help="optimizer steps per generation instead of epochs (null: epochs)"),
        "batch_size": size_field(batch_size, help="training batch size"),
        "lr": Field(float, lr, low=0.0, low_open=True, help="Adam learning rate"),
        "ema_decay": Field(float, ema_decay, low=0.0, high=0.99999,
                           help="decay of the exponential moving average of the weights that "
                                "sampling uses; 0 = no EMA (sample with the trained weights)"),
        "grad_clip": Field(float, 1.0, low=0.0, low_open=True, nullable=True,
                           help="clip the gradient norm to this value (null: no clipping)"),
        "mixed_precision": Field(bool, True, help="bfloat16 autocast on CUDA (ignored on CPU)"),
        "sample_batch_size": size_field(1000, help="images generated per batch (GPU memory)"),
    }
