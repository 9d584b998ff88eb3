"""Process environment a sweep driver sets before Ray is imported.

Only defaults: a variable the user has set wins.
"""

from __future__ import annotations

import os

# Tune prints our progress table (sweeps.progress) only with its classic output.
# num_to_keep makes Tune snapshot the experiment state whenever a trial has written that
# many checkpoints (so a resume never points at a deleted one); with checkpoints every
# generation that is often, by design, and Tune would warn about it every time.
QUIET_TUNE = {"RAY_AIR_NEW_OUTPUT": "0",
              "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
# Ray uses the host's network address unless this is 0 when ray is first imported (its
# switch for single-machine use); then every Ray process of a local instance binds
# to 127.0.0.1.
LOOPBACK_RAY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def prepare_driver_environment(local_ray: bool) -> None:
    """Set QUIET_TUNE (and LOOPBACK_RAY for a local Ray) where the user has not."""
    for name, value in {**QUIET_TUNE, **(LOOPBACK_RAY if local_ray else {})}.items():
        os.environ.setdefault(name, value)
