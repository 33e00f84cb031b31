"""gunicorn hooks for bench/recycle.py's comparison: what prometheus_client's documentation
asks for alone, a dead worker's live gauges marked dead, and its other files left in place."""

from typing import Any

from prometheus_client import multiprocess


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
