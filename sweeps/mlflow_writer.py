"""MLflow writes on one background thread, so a slow store never holds up Tune.

Tune runs its callbacks on its event loop: while a callback waits for the store, no
result is taken from any trial, and a trial's ``tune.report`` waits for its result to
be taken. The logger therefore hands its writes to this thread and goes on. Writes run
one at a time in the order they were submitted. The queue is bounded: a store slower
than the trials eventually slows the driver down rather than filling its memory.
``flush`` waits until every submitted write is done; the logger calls it before it
declares anything stored (a checkpoint's resume point, a finished run).

A failed write is not retried here: the error is raised by the next ``submit`` or
``flush``, in the event loop, and the writes submitted after it are dropped (the
sweep stops; ``mad sweep --resume`` re-runs what was not stored).
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

QUEUE_LENGTH = 256  # pending writes; each is one MLflow call of up to a few thousand values


class StoreWriteError(RuntimeError):
    """A write to the tracking store failed on the writer thread."""


class BackgroundWriter:
    """One daemon thread that runs submitted calls in order."""

    def __init__(self, queue_length: int = QUEUE_LENGTH):
        self._queue: queue.Queue = queue.Queue(maxsize=queue_length)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="mlflow-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            call = self._queue.get()
            try:
                if self._error is None:
                    call()
            except BaseException as error:  # re-raised in the submitting thread
                self._error = error
            finally:
                self._queue.task_done()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise StoreWriteError(f"writing to the MLflow tracking store failed: "
                                  f"{self._error!r}") from self._error

    def submit(self, call: Callable[[], object]) -> None:
        """Queue a call (blocks while the queue is full)."""
        self._raise_failure()
        self._queue.put(call)

    def flush(self) -> None:
        """Wait until every submitted call has run."""
        self._queue.join()
        self._raise_failure()
