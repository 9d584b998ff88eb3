"""The sample grid PNG: tiling, padding, scaling and pixel values."""

import numpy as np
import torch
from PIL import Image

from mad_core.images.grid import save_sample_grid


def test_grid_png_has_the_tiles_and_values(tmp_path):
    images = np.zeros((5, 1, 4, 4), dtype=np.float32)
    images[0] = 1.0  # first tile white
    images[1, 0, 0, 0] = 0.5
    path = save_sample_grid(images, tmp_path / "gen" / "grid.png", columns=3, padding=1, scale=2)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        pixels = np.asarray(image)
    # 3 columns, 2 rows of 4-pixel tiles, 1-pixel padding around each, then x2.
    assert pixels.shape == (2 * (2 * 5 + 1), 2 * (3 * 5 + 1), 3)
    assert (pixels[2:10, 2:10] == 255).all()  # tile 0 starts at padding 1 -> 2 after scaling
    assert (pixels[0:2, :] == 0).all()
    assert (pixels[2:4, 12:14] == 128).all()  # 0.5 * 255 rounded, tile 1 at column 1 + 5
    assert (pixels[12:20, 22:30] == 0).all()  # the empty sixth slot stays black


def test_grid_accepts_rgb_tensors_and_clips(tmp_path):
    images = torch.full((2, 3, 3, 3), 2.0)
    path = save_sample_grid(images, tmp_path / "grid.png", columns=2, padding=0)
    with Image.open(path) as image:
        assert image.size == (6, 3)
        assert (np.asarray(image) == 255).all()
