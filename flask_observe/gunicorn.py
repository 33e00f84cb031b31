"""Server hooks for a ``gunicorn.conf.py``, for prometheus_client's multiprocess mode.

With ``PROMETHEUS_MULTIPROC_DIR`` set, every gunicorn worker keeps its metric values in
files of its own in that directory, and ``/metrics`` adds them all up. Two things are left
to the server, which alone sees workers come and go:

- at start, the files of an earlier run must go, or its counts would be added to this
  one's: :func:`on_starting` (or :func:`when_ready`, for a config that already has an
  ``on_starting`` of its own) removes them;
- when a worker exits, its gauges that speak only for live workers (requests in
  progress, the version info, health check results) must go with it:
  :func:`child_exit` marks it dead. Its counters and histograms stay, so that no request
  it completed is lost from the totals.

.. code-block:: python

    # gunicorn.conf.py
    from flask_observe.gunicorn import child_exit, on_starting

Set ``PROMETHEUS_MULTIPROC_DIR`` in the environment gunicorn starts in, to an existing
directory: see :doc:`/deployment`.

.. versionadded:: 0.1
"""

from __future__ import annotations

import glob
import os
from typing import Any

from prometheus_client import multiprocess

from .multiprocess import ENV_VAR, compact_dead_worker

__all__ = ["child_exit", "clear_multiprocess_dir", "on_starting", "when_ready"]


def clear_multiprocess_dir() -> int:
    """Remove the ``*.db`` files that prometheus_client left in ``PROMETHEUS_MULTIPROC_DIR``;
    return how many. Other files, and directories, are left alone.

    :raises RuntimeError: if the variable is not set, or names no directory.

    .. versionadded:: 0.1
    """
    path = os.environ.get(ENV_VAR)
    if not path:
        raise RuntimeError(
            f"{ENV_VAR} is not set: flask_observe.gunicorn's hooks are for prometheus_client's "
            "multiprocess mode, which needs it set, to an existing directory, in the "
            "environment gunicorn is started in."
        )
    if not os.path.isdir(path):
        raise RuntimeError(f"{ENV_VAR} = {path!r} is not a directory: create it first.")
    removed = 0
    for name in glob.glob(os.path.join(glob.escape(path), "*.db")):
        if os.path.isfile(name):
            os.remove(name)
            removed += 1
    return removed


def on_starting(server: Any) -> None:
    """gunicorn's ``on_starting`` hook: clear the files of an earlier run, before any worker
    starts.

    A master started by a running one (gunicorn's ``USR2`` upgrade) leaves them: the old
    master's workers still count into them.

    .. versionadded:: 0.1
    """
    if getattr(server, "master_pid", 0):
        server.log.info("flask-observe: a new master beside a running one keeps %s", ENV_VAR)
        return
    removed = clear_multiprocess_dir()
    server.log.info("flask-observe: removed %d metric files of an earlier run", removed)


#: gunicorn's ``when_ready`` hook, the same as :func:`on_starting`: it runs once the master
#: listens, still before the first worker starts. For a config that has an ``on_starting``
#: of its own; use one of the two.
when_ready = on_starting


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook, called in the master when a worker has exited, however
    it ended: remove the worker's live gauges (``livesum``, ``livemax``,
    ``livemostrecent``), so that its requests in flight no longer count as in progress, and
    fold its other files into the directory's archive files (counts kept, see
    :func:`~flask_observe.multiprocess.compact_dead_worker`), so that recycled workers
    (``max_requests``, ``kill -HUP``, crashes) never pile up files for scrapes to read.

    .. versionadded:: 0.1
    """
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
    try:
        compact_dead_worker(worker.pid)
    except Exception:  # the master goes on: the files stay, and are read as before
        server.log.exception("flask-observe: could not fold worker %s's metric files", worker.pid)
