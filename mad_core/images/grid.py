"""A per-generation grid of samples written as a PNG file (a sweep logs it as an artifact)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from mad_core.images.torchvision_compat import import_torchvision


def save_sample_grid(images: np.ndarray | torch.Tensor, path: str | Path | BinaryIO, *,
                     columns: int = 8, padding: int = 2, scale: int = 1) -> str | Path | BinaryIO:
    """Tile images into one grid (torchvision's ``make_grid``) and write it as a PNG with PIL.

    Args:
        images: (N, C, H, W) with C in {1, 3} and values in [0, 1] (clipped).
        path: the PNG file to write (parent folders are created), or a binary file.
        columns: images per row.
        padding: pixels of black between tiles.
        scale: integer nearest-neighbour upscaling, so 8x8 digits stay visible.

    Returns:
        The path (or file) written.
    """
    if isinstance(images, torch.Tensor):
        tensor = images.detach().cpu().float()
    else:
        tensor = torch.from_numpy(np.asarray(images, dtype=np.float32))
    if tensor.ndim != 4 or tensor.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, 1 or 3, H, W), got {tuple(tensor.shape)}")
    grid = import_torchvision().utils.make_grid(tensor.clamp(0, 1), nrow=columns, padding=padding)
    # Same rounding as torchvision's save_image (whose torchvision.io writer is broken here).
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    if isinstance(path, (str, Path)):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
