"""Real image datasets, the torchvision import workaround and sample grids."""
