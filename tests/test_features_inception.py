"""clean-fid Inception features: the clear error without weights, and the loading path with them."""

import numpy as np
import pytest
import torch
from torch import nn

from mad_core.features.inception import (INCEPTION_WEIGHTS_FILE, INCEPTION_WEIGHTS_URL,
                                         WEIGHTS_ENVIRONMENT_VARIABLE, InceptionFeatures,
                                         InceptionWeightsMissingError)


def test_missing_weights_say_how_to_provide_them(tmp_path):
    with pytest.raises(InceptionWeightsMissingError) as error:
        InceptionFeatures(tmp_path)
    message = str(error.value)
    assert str(tmp_path / INCEPTION_WEIGHTS_FILE) in message
    assert INCEPTION_WEIGHTS_URL in message and WEIGHTS_ENVIRONMENT_VARIABLE in message


def test_missing_weights_from_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENVIRONMENT_VARIABLE, str(tmp_path / "elsewhere" / INCEPTION_WEIGHTS_FILE))
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        InceptionFeatures()


class _InceptionLayers(nn.Module):
    """Per-channel means, tiled to 2048 values: shows what the network receives."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True).repeat(1, 683, 1, 1)[:, :2048]


class _InceptionStandIn(nn.Module):
    """The TorchScript interface clean-fid's InceptionV3W loads (a ``layers`` submodule).

    The real weights cannot be downloaded here; this file goes through the same
    loader, resizing and scaling.
    """

    def __init__(self):
        super().__init__()
        self.layers = _InceptionLayers()

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.layers(x)


def test_features_go_through_clean_fid_loader_resize_and_scaling(tmp_path):
    torch.jit.script(_InceptionStandIn()).save(str(tmp_path / INCEPTION_WEIGHTS_FILE))
    extractor = InceptionFeatures(tmp_path / INCEPTION_WEIGHTS_FILE, batch_size=2)
    images = np.zeros((3, 3, 16, 16), dtype=np.float32)
    images[:, 0] = 1.0  # red: 255 -> (255 - 128) / 128 after clean-fid's scaling
    images[:, 2] = 0.5
    features = extractor(images)
    assert features.shape == (3, 2048) and features.dtype == np.float32
    assert np.allclose(features[:, :3], [(255 - 128) / 128, -1.0, (127.5 - 128) / 128], atol=1e-5)
    gray = extractor(np.full((1, 1, 8, 8), 1.0, dtype=np.float32))
    assert np.allclose(gray[:, :3], (255 - 128) / 128, atol=1e-5)


def test_a_trial_with_inception_fid_records_it(tmp_path, monkeypatch):
    """metrics.inception: true validates only with weights present, then every generation
    records fid_inception beside the LeNet metrics."""
    from mad_core.loop import SelfConsumingLoop
    from mad_core.spec import SpecError, resolve_spec

    raw = {"model": "ddpm", "loop": "fully_synthetic", "n_init": 120, "n_syn": 120,
           "generations": 1, "data": {"source": "digits"},
           "metrics": {"n_eval": 40, "k": 3, "inception": True},
           "model_options": {"base_channels": 8, "steps": 5, "sampler": "ddim",
                             "sampler_steps": 2}}
    monkeypatch.setenv(WEIGHTS_ENVIRONMENT_VARIABLE, str(tmp_path / INCEPTION_WEIGHTS_FILE))
    with pytest.raises(SpecError, match="metrics.inception: Inception weights not found"):
        resolve_spec(raw)
    torch.jit.script(_InceptionStandIn()).save(str(tmp_path / INCEPTION_WEIGHTS_FILE))
    record = SelfConsumingLoop(resolve_spec(raw)).step()
    assert np.isfinite(record["fid_inception_mean"]) and record["fid_inception_mean"] >= 0
    assert np.isfinite(record["fid_mean"])
