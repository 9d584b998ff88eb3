"""Neural models: the one training loop they share and the options it reads."""
