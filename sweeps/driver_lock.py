"""One driver per sweep invocation: a lock held in the tracking store, on the parent run.

A driver writes tag DRIVER_TAG = {"host", "pid", "beat"} on its parent run when it
starts and renews "beat" every HEARTBEAT_S while Tune runs (``MlflowTrialLogger``);
``mad sweep --resume`` refuses an invocation whose lock is held: its driver is alive on
this host, or (on another host, where its process cannot be seen) it renewed the lock
less than STALE_S ago. A driver that was killed leaves its tag behind; on the same host
its dead process frees the lock at once, elsewhere it expires after STALE_S. The tag is
removed when an invocation closes.
"""

from __future__ import annotations

import json
import os
import socket
import time

from mlflow.entities import Run

DRIVER_TAG = "mad.driver"
HEARTBEAT_S = 20.0
STALE_S = 3 * HEARTBEAT_S


class DriverLockError(RuntimeError):
    """Another driver is running the invocation to resume."""


def driver_tag() -> str:
    """This process as the driver, now."""
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "beat": time.time()})


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def check_not_driven(parent: Run) -> None:
    """Raise DriverLockError if another live driver holds the parent run's lock."""
    text = parent.data.tags.get(DRIVER_TAG)
    if text is None or parent.info.status != "RUNNING":
        return
    driver = json.loads(text)
    here = driver["host"] == socket.gethostname()
    if here and driver["pid"] == os.getpid():
        return
    alive = _process_alive(driver["pid"]) if here else time.time() - driver["beat"] < STALE_S
    if alive:
        where = (f"process {driver['pid']} on this machine" if here else
                 f"process {driver['pid']} on {driver['host']} (renewed "
                 f"{time.time() - driver['beat']:.0f} s ago)")
        raise DriverLockError(
            f"invocation run {parent.info.run_id} is being run by {where}; wait for it to end "
            f"or stop it (a killed driver on another machine frees it after {STALE_S:.0f} s)")
