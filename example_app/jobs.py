"""Background jobs: a :class:`queue.Queue` and one worker thread that runs them.

The order service tells the warehouse about each new order after answering the client, in
the background, so a burst of orders makes a queue. Its depth is exported by flask-observe as
``app_queue_depth{queue="jobs"}``, read from :meth:`JobQueue.depth` at each scrape.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Optional

from flask_observe import get_logger

__all__ = ["JobQueue", "notify_warehouse"]

_log = get_logger(__name__)

#: A job: a function and its arguments.
Job = tuple[Callable[..., object], tuple[Any, ...]]


def notify_warehouse(order_id: int, items: int, delay: float) -> None:
    """Tell the warehouse to pick and ship an order (simulated: it takes *delay* seconds,
    ``EXAMPLE_WAREHOUSE_DELAY``, so that a burst of orders queues up behind it)."""
    if delay > 0:
        time.sleep(delay)
    _log.info("warehouse_notified", order_id=order_id, items=items)


class JobQueue:
    """Jobs run one at a time, in order, by a worker thread started with the first job.

    :param maxsize: the most jobs waiting; a job submitted beyond it is dropped and logged.
    """

    def __init__(self, maxsize: int = 1000) -> None:
        #: ``None`` tells the worker to end.
        self._queue: queue.Queue[Optional[Job]] = queue.Queue(maxsize)
        self._worker: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._stopped = False

    def depth(self) -> int:
        """How many jobs are waiting (the one running is not counted)."""
        return self._queue.qsize()

    def submit(self, fn: Callable[..., object], *args: Any) -> bool:
        """Queue ``fn(*args)``; False if the queue is full or stopped."""
        with self._lock:
            if self._stopped:
                return False
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="jobs", daemon=True)
                self._worker.start()
            try:
                self._queue.put_nowait((fn, args))
            except queue.Full:
                _log.warning("job_dropped", job=getattr(fn, "__name__", repr(fn)))
                return False
        return True

    def drain(self) -> None:
        """Wait until every job queued so far has run."""
        self._queue.join()

    def stop(self, timeout: float = 10.0) -> None:
        """Run the jobs already queued, then end the worker and wait for it."""
        with self._lock:
            self._stopped = True
            worker = self._worker
        if worker is not None:
            self._queue.put(None)
            worker.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                fn, args = job
                try:
                    fn(*args)
                except Exception:
                    _log.exception("job_failed", job=getattr(fn, "__name__", repr(fn)))
            finally:
                self._queue.task_done()
