"""Environment variables through which Ray and Tune take settings that have no API.

Only defaults are set: a variable the user has set wins.
"""

from __future__ import annotations

import ipaddress
import os

# Read by Tune when a sweep runs (run_sweep applies them):
TUNE_SETTINGS = {
    # Tune's classic output, which verbose=0 silences: sweeps.progress prints instead.
    # (The newer one prints its own status tables whatever the verbosity.)
    "RAY_AIR_NEW_OUTPUT": "0",
    # A failed trial's traceback, logged by Tune: sweeps.progress prints its last line
    # and where the whole traceback is kept.
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",
    # num_to_keep makes Tune snapshot its experiment state whenever a trial has written
    # that many checkpoints; with frequent checkpoints that is often, by design, and Tune
    # would warn about it each time.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Tune's per-trial result.json, progress.csv and TensorBoard files: MLflow holds the
    # records, and writing them costs the driver time on every generation, which a
    # trial waits for (Tune's function trainables report synchronously).
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}
# Read by ray when it is first imported: without it a local Ray binds to the host's
# network address. Ray's switch for single-machine use; with it every process of a local
# Ray binds to 127.0.0.1.
LOOPBACK_RAY = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Token authentication guards a Ray reachable from the network; a local Ray on
    # 127.0.0.1 is not, and with it Ray writes ~/.ray/auth_token and warns on every start.
    "RAY_AUTH_MODE": "disabled",
}


def apply_tune_settings() -> None:
    for name, value in TUNE_SETTINGS.items():
        os.environ.setdefault(name, value)


# Read by every Ray process when it starts (a cluster's nodes need it in the environment
# of `ray start`, see cluster.yaml). A trial's result travels back to the driver inline
# up to this size instead of through the object store of the trial's node. Results carry
# a generation's sample grid and model snapshots (hundreds of kB to tens of MB); in the
# object store they die with a lost node before the driver has fetched them, and Tune
# then stops the whole sweep (ObjectReconstructionFailedError) instead of retrying the
# trial from its checkpoint.
RESULTS_INLINE = {"RAY_max_direct_call_object_size": str(256 * 2**20)}


def is_loopback(address: str) -> bool:
    """Whether a Ray address ("HOST:PORT", "ray://HOST:PORT", "auto") names this machine's
    loopback interface, where only a Ray started with the loopback setting listens."""
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def configure_local_ray() -> None:
    """Call before ray is imported, in a process that starts a local Ray: loopback only,
    and results sent inline."""
    for name, value in {**LOOPBACK_RAY, **RESULTS_INLINE}.items():
        os.environ.setdefault(name, value)
