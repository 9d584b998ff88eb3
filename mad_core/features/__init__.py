"""Feature networks for image metrics: a cached LeNet-5 and clean-fid's Inception."""
