"""Saturation, the fourth golden signal: how full the app's resources are.

- Database pools: :meth:`~flask_observe.Observe.track_pool` listens to an SQLAlchemy
  engine's pool events and times each checkout, for ``db_pool_connections_in_use``,
  ``db_pool_connections_max``, ``db_pool_wait_seconds`` and
  ``db_pool_checkout_failures_total``.
- Queues: :meth:`~flask_observe.Observe.track_queue` registers a depth function that a scrape
  calls, for ``app_queue_depth``; a failing one is counted in
  ``app_queue_depth_errors_total`` and its queue left out of that scrape.
- The process: prometheus_client's process collector (CPU seconds, memory, open fds) on a
  registry that does not have one yet, and ``process_threads``.

What is tracked is held by a :class:`Saturation`: one per ``Observe`` object, for every app
it serves, and one per app. Each registry has one :class:`SaturationMetrics`, whose collector
reads every :class:`Saturation` of the apps on that registry at scrape time, so several apps
in one process never register a family twice. SQLAlchemy is imported only when a pool is
tracked: it is an optional dependency.
"""

from __future__ import annotations

import contextlib
import decimal
import logging
import math
import numbers
import os
import re
import threading
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, TypeVar

from flask import Flask
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from .multiprocess import values_in_files
from .observation import Observation
from .registries import PerRegistry

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

__all__ = ["ProcessFiguresSink", "Saturation", "SaturationMetrics", "track_flask_sqlalchemy"]

_log = logging.getLogger("flask_observe")

T = TypeVar("T")

#: Upper bounds of ``db_pool_wait_seconds``: from a connection that was idle in the pool
#: (well under a millisecond) to SQLAlchemy's default pool timeout, 30 seconds.
POOL_WAIT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
#: The ``reason`` label of ``db_pool_checkout_failures_total``: the pool timed out waiting
#: for a free connection, or getting one raised anything else (the database refused).
FAILURE_REASONS = ("timeout", "error")

_WAIT_HELP = (
    "Seconds a checkout took from asking the pool for a connection to having one, failed "
    "checkouts included."
)
_FAILURES_HELP = "Checkouts that failed, by reason: timeout (the pool was exhausted) or error."
_NAME = re.compile(r"\S(?:.{0,98}\S)?")
_IN_USE_HELP = "Connections checked out of the pool."
_MAX_HELP = (
    "Connections the pool may have checked out at once: pool size + max overflow "
    "(+Inf when unbounded)."
)
_DEPTH_HELP = "Items waiting in the queue."
_DEPTH_ERRORS_HELP = "Scrapes whose depth function of the queue raised or returned no number."


_lock = threading.Lock()
_by_registry: PerRegistry[SaturationMetrics] = PerRegistry()


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"a {kind} name is a non-empty string of at most 100 characters, without "
            f"leading or trailing spaces; not {name!r}"
        )
    return name


def _pool_limit(pool: Pool) -> float:
    """How many connections *pool* may have checked out at once; infinite when unbounded."""
    from sqlalchemy.pool import AssertionPool, QueuePool, StaticPool

    if isinstance(pool, QueuePool):
        # No public accessor for the overflow limit; -1 means none (also for pool_size=0).
        overflow = getattr(pool, "_max_overflow", -1)
        return math.inf if overflow < 0 else float(pool.size() + overflow)
    if isinstance(pool, (StaticPool, AssertionPool)):
        return 1.0
    return math.inf  # NullPool and SingletonThreadPool open as many as asked for


class _PoolTracker:
    """One engine's pool, tracked under one name.

    In use: the connection records checked out and not yet back, a set kept by the
    ``checkout``, ``checkin`` and ``detach`` events (a set, so that no sequence of events
    makes it drift). Wait: SQLAlchemy has no event before a checkout starts, only after it
    succeeded, so the pool's public ``connect()`` is wrapped on the pool object to time
    each call, and wrapped again on the new pool that ``engine.dispose()`` makes.
    """

    def __init__(self, engine: Engine, name: str) -> None:
        from sqlalchemy import event

        self.name = name
        self._engine = weakref.ref(engine)
        self._checked_out: set[object] = set()
        self.wait = Histogram(
            "db_pool_wait_seconds", _WAIT_HELP, ["pool"], buckets=POOL_WAIT_BUCKETS, registry=None
        )
        self._observe_wait = self.wait.labels(name).observe
        self.failures = Counter(
            "db_pool_checkout_failures", _FAILURES_HELP, ["pool", "reason"], registry=None
        )
        self._timeouts = self.failures.labels(name, "timeout")
        self._errors = self.failures.labels(name, "error")
        # In multiprocess mode each worker writes its pool's figures to its files, and a
        # scrape adds up those of the live workers: every worker has a pool of its own.
        self._in_use_file: Optional[Gauge] = None
        self._max_file: Optional[Gauge] = None
        if values_in_files():
            self._in_use_file = Gauge(
                "db_pool_connections_in_use",
                _IN_USE_HELP,
                ["pool"],
                multiprocess_mode="livesum",
                registry=None,
            ).labels(name)
            self._max_file = Gauge(
                "db_pool_connections_max",
                _MAX_HELP,
                ["pool"],
                multiprocess_mode="livesum",
                registry=None,
            ).labels(name)
            self._in_use_file.set(0)
            self._max_file.set(_pool_limit(engine.pool))
        event.listen(engine, "checkout", self._on_checkout)
        event.listen(engine, "checkin", self._on_checkin)
        event.listen(engine, "detach", self._on_checkin)
        event.listen(engine, "engine_disposed", self._on_disposed)
        self._time_checkouts(engine.pool)

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        self._checked_out.add(record)
        if self._in_use_file is not None:
            self._in_use_file.set(len(self._checked_out))

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        self._checked_out.discard(record)
        if self._in_use_file is not None:
            self._in_use_file.set(len(self._checked_out))

    def _on_disposed(self, engine: Engine) -> None:
        self._time_checkouts(engine.pool)
        if self._max_file is not None:
            self._max_file.set(_pool_limit(engine.pool))

    def _time_checkouts(self, pool: Pool) -> None:
        from sqlalchemy.exc import TimeoutError as PoolTimeout

        # Another tracker's wrapper (a second Observe on the same engine) is kept inside.
        inner: Callable[[], Any] = pool.__dict__.get("connect") or pool.connect
        observe, timeouts, errors = self._observe_wait, self._timeouts, self._errors
        clock = time.perf_counter

        def connect() -> Any:
            start = clock()
            try:
                connection = inner()
            except PoolTimeout:
                observe(clock() - start)
                timeouts.inc()
                raise
            except Exception:
                observe(clock() - start)
                errors.inc()
                raise
            observe(clock() - start)
            return connection

        try:
            pool.connect = connect  # type: ignore[method-assign]
        except AttributeError:  # a pool class with slots: sizes are still tracked
            _log.warning("Cannot time checkouts of the pool %r (%s)", self.name, type(pool))

    def figures(self) -> Optional[tuple[int, float]]:
        """``(in use, limit)`` now; ``None`` once the engine is gone."""
        engine = self._engine()
        if engine is None:
            return None
        return len(self._checked_out), _pool_limit(engine.pool)


class Saturation:
    """The pools and queues of one ``Observe`` object, or of one app."""

    def __init__(self) -> None:
        self._pools: dict[str, _PoolTracker] = {}
        self._queues: dict[str, Callable[[], object]] = {}
        self._lock = threading.Lock()

    def add_pool(self, engine: Any, name: str) -> None:
        """Track *engine*'s pool (an ``Engine``, or an ``AsyncEngine``'s sync engine)."""
        _check_name("pool", name)
        engine = getattr(engine, "sync_engine", engine)
        try:
            from sqlalchemy.engine import Engine
        except ImportError:  # pragma: no cover - only without SQLAlchemy installed
            raise TypeError(
                "track_pool needs SQLAlchemy: pip install flask-observe[sqlalchemy]"
            ) from None
        if not isinstance(engine, Engine):
            raise TypeError(f"track_pool takes an SQLAlchemy Engine or AsyncEngine, not {engine!r}")
        with self._lock:
            if name in self._pools:
                raise ValueError(f"a pool named {name!r} is already tracked")
            self._pools[name] = _PoolTracker(engine, name)

    def add_queue(self, name: str, depth_fn: Callable[[], object]) -> None:
        _check_name("queue", name)
        if not callable(depth_fn):
            raise TypeError(f"the depth function of queue {name!r} must be callable")
        with self._lock:
            if name in self._queues:
                raise ValueError(f"a queue named {name!r} is already tracked")
            self._queues[name] = depth_fn

    def pools(self) -> list[_PoolTracker]:
        with self._lock:
            return list(self._pools.values())

    def queues(self) -> list[tuple[str, Callable[[], object]]]:
        with self._lock:
            return list(self._queues.items())


def track_flask_sqlalchemy(app: Flask, saturation: Saturation) -> None:
    """Track every engine Flask-SQLAlchemy made for *app*: ``default`` and the bind keys."""
    db = app.extensions.get("sqlalchemy")
    if db is None or not hasattr(type(db), "engines"):
        _log.warning(
            "OBSERVE_TRACK_SQLALCHEMY is True, but Flask-SQLAlchemy (3.0 or later) is not set "
            "up on the app %r yet: call db.init_app(app) before Observe(app), or "
            "observe.track_pool(db.engine, app=app) after both.",
            app.name,
        )
        return
    with app.app_context():
        engines = dict(db.engines)
    for key, engine in engines.items():
        saturation.add_pool(engine, "default" if key is None else str(key))


class _ProcessFigures(ProcessCollector):
    """prometheus_client's process collector, describing what it collects, so that a
    registry that already has one refuses this one as a duplicate."""

    def __init__(self) -> None:
        super().__init__(registry=None)

    def describe(self) -> list[Metric]:
        return list(self.collect())


class _ThreadsCollector(Collector):
    """``process_threads``: the process's OS threads, from ``/proc`` as the process
    collector reads it (so on Linux only, as the other ``process_*`` figures)."""

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily("process_threads", "")]

    def collect(self) -> Iterator[Metric]:
        try:
            with open("/proc/self/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            threads = int(fields[17])
        except (OSError, IndexError, ValueError):
            return
        yield GaugeMetricFamily("process_threads", "Number of OS threads.", value=threads)


def _merge(family: Metric, metric: Collector) -> None:
    """Add *metric*'s samples to *family*, without ``_created`` series (left out of the HTTP
    families too)."""
    for collected in metric.collect():
        family.samples.extend(s for s in collected.samples if not s.name.endswith("_created"))


class _SaturationCollector(Collector):
    def __init__(self, metrics: SaturationMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return [
            GaugeMetricFamily("db_pool_connections_in_use", ""),
            GaugeMetricFamily("db_pool_connections_max", ""),
            Metric("db_pool_wait_seconds", "", "histogram"),
            Metric("db_pool_checkout_failures", "", "counter"),
            GaugeMetricFamily("app_queue_depth", ""),
            CounterMetricFamily("app_queue_depth_errors", ""),
        ]

    def collect(self) -> Iterator[Metric]:
        in_use = GaugeMetricFamily("db_pool_connections_in_use", _IN_USE_HELP, labels=["pool"])
        limit = GaugeMetricFamily("db_pool_connections_max", _MAX_HELP, labels=["pool"])
        wait = Metric("db_pool_wait_seconds", _WAIT_HELP, "histogram")
        failures = Metric("db_pool_checkout_failures", _FAILURES_HELP, "counter")
        for tracker in self._metrics.pools():
            figures = tracker.figures()
            if figures is None:
                continue
            in_use.add_metric([tracker.name], figures[0])
            limit.add_metric([tracker.name], figures[1])
            _merge(wait, tracker.wait)
            _merge(failures, tracker.failures)
        depth = GaugeMetricFamily("app_queue_depth", _DEPTH_HELP, labels=["queue"])
        errors = CounterMetricFamily("app_queue_depth_errors", _DEPTH_ERRORS_HELP, labels=["queue"])
        for name, depth_fn in self._metrics.queues():
            value = self._metrics.read_depth(name, depth_fn)
            if value is not None:
                depth.add_metric([name], value)
            errors.add_metric([name], self._metrics.depth_errors.get(name, 0))
        for family in (in_use, limit, wait, failures, depth, errors):
            if family.samples:
                yield family


class SaturationMetrics:
    """The saturation families of one registry, read from every :class:`Saturation` of the
    apps on it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        #: Newest first, so that when two sources track the same name (an app factory that
        #: makes the app again), the newest app's is exported.
        self._sources: list[weakref.ref[Saturation]] = []
        self._sources_lock = threading.Lock()
        #: Failed reads of each queue's depth function.
        self.depth_errors: dict[str, int] = {}
        self._warned: set[tuple[str, ...]] = set()
        self._process = False
        registry.register(_SaturationCollector(self))
        #: In multiprocess mode: the queue families in the files, and the process figures.
        self._queue_files: Optional[tuple[Gauge, Counter]] = None
        self.process_files: Optional[_ProcessFiles] = None
        if values_in_files():
            self._queue_files = (
                # The value the worker answering the latest scrape read: right for a queue
                # every worker sees (a broker's), and that worker's own for one in memory.
                Gauge(
                    "app_queue_depth",
                    _DEPTH_HELP,
                    ["queue"],
                    multiprocess_mode="livemostrecent",
                    registry=None,
                ),
                Counter("app_queue_depth_errors", _DEPTH_ERRORS_HELP, ["queue"], registry=None),
            )

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> SaturationMetrics:
        """The registry's saturation families, made on first use."""
        return _by_registry.get(registry, lambda: cls(registry))

    def watch(self, source: Saturation) -> None:
        """Export what *source* tracks on this registry; held weakly (the app holds it)."""
        with self._sources_lock:
            self._sources = [ref for ref in self._sources if ref() not in (None, source)]
            self._sources.insert(0, weakref.ref(source))

    def add_process_figures(self) -> None:
        """Add the process figures to the registry, once; prometheus_client's collector only
        where the registry has none (the default registry has). In multiprocess mode they
        go to the files instead (:class:`_ProcessFiles`)."""
        with _lock:
            if self._process:
                return
            self._process = True
            if values_in_files():
                self.process_files = _ProcessFiles()
                return
        for collector in (_ProcessFigures(), _ThreadsCollector()):
            # "Duplicated timeseries": the registry has these already.
            with contextlib.suppress(ValueError):
                self._registry.register(collector)

    def _sources_now(self) -> list[Saturation]:
        with self._sources_lock:
            sources = [ref() for ref in self._sources]
        return [source for source in sources if source is not None]

    def pools(self) -> list[_PoolTracker]:
        """Every pool tracked on this registry, the first of each name."""
        pools = [(t.name, t) for s in self._sources_now() for t in s.pools()]
        return [tracker for _name, tracker in self._first_of_each_name("pool", pools)]

    def queues(self) -> list[tuple[str, Callable[[], object]]]:
        """Every queue tracked on this registry, the first of each name."""
        queues = [q for s in self._sources_now() for q in s.queues()]
        return self._first_of_each_name("queue", queues)

    def _first_of_each_name(self, kind: str, items: list[tuple[str, T]]) -> list[tuple[str, T]]:
        seen: dict[str, T] = {}
        for name, item in items:
            if name not in seen:
                seen[name] = item
            elif self._first_time(kind, name):
                _log.warning(
                    "Two apps on one registry track a %s named %r: only the newest app's is "
                    "exported; give them different names, or registries of their own.",
                    kind,
                    name,
                )
        return list(seen.items())

    def _first_time(self, *key: str) -> bool:
        with self._sources_lock:
            if key in self._warned:
                return False
            self._warned.add(key)
            return True

    def write_files(self) -> None:
        """Multiprocess mode, before a scrape of the files: write what this worker reads at
        scrape time (the queues' depths, its process figures) to its files."""
        if self._queue_files is not None:
            depth, errors = self._queue_files
            for name, depth_fn in self.queues():
                failed = self.depth_errors.get(name, 0)
                value = self.read_depth(name, depth_fn)
                if value is not None:
                    depth.labels(name).set(value)
                errors.labels(name).inc(self.depth_errors.get(name, 0) - failed)
        if self.process_files is not None:
            self.process_files.refresh()

    def read_depth(self, name: str, depth_fn: Callable[[], object]) -> Optional[float]:
        """Call *depth_fn*; count, and log the first time, one that raises or returns no
        number. Never raises: a broken queue must not break the scrape."""
        try:
            value = depth_fn()
            # Any real number (Decimal, Fraction, NumPy's) that is finite; not a bool.
            if isinstance(value, bool) or not isinstance(value, (numbers.Real, decimal.Decimal)):
                raise TypeError(f"the depth function returned {value!r}, not a number")
            depth = float(value)
            if not math.isfinite(depth):
                raise ValueError(f"the depth function returned {value!r}, not a finite number")
            return depth
        except Exception:
            with self._sources_lock:
                self.depth_errors[name] = self.depth_errors.get(name, 0) + 1
            if self._first_time("depth", name):
                _log.error(
                    "The depth function of queue %r failed; later failures are only counted "
                    "in app_queue_depth_errors_total.",
                    name,
                    exc_info=True,
                )
            return None


#: How often, at most, a worker writes its process figures from the request path.
_PROCESS_REFRESH_SECONDS = 1.0

#: The process figures in the files: name, how the workers' values add up, help text (as
#: prometheus_client's process collector words it, which gives them in one process).
_PROCESS_GAUGES: tuple[tuple[str, Literal["livesum", "livemax", "livemin"], str], ...] = (
    ("process_virtual_memory_bytes", "livesum", "Virtual memory size in bytes."),
    ("process_resident_memory_bytes", "livesum", "Resident memory size in bytes."),
    ("process_open_fds", "livesum", "Number of open file descriptors."),
    ("process_threads", "livesum", "Number of OS threads."),
    ("process_max_fds", "livemax", "Maximum number of open file descriptors."),
    (
        "process_start_time_seconds",
        "livemin",
        "Start time of the process since unix epoch in seconds.",
    ),
)


class _ProcessFiles:
    """The process figures in multiprocess mode, where prometheus_client leaves them out.

    Each worker reads its own with prometheus_client's process collector and writes them to
    its files: the memory, open fds and threads of the live workers add up, the CPU seconds
    of every worker that ever ran add up in a counter (so ``rate()`` is the CPU the service
    uses), ``process_max_fds`` is the highest limit, ``process_start_time_seconds`` the
    oldest live worker's start. A worker writes them when it answers a scrape, and at most
    once a second while it serves requests (:class:`ProcessFiguresSink`), so a busy worker's
    figures are never more than a second old and an idle one's do not change much.
    """

    def __init__(self) -> None:
        self._collector = ProcessCollector(registry=None)
        self._threads = _ThreadsCollector()
        self._gauges = {
            name: Gauge(name, documentation, multiprocess_mode=mode, registry=None)
            for name, mode, documentation in _PROCESS_GAUGES
        }
        self._cpu = Counter(
            "process_cpu_seconds", "Total user and system CPU time spent in seconds.", registry=None
        )
        self._lock = threading.Lock()
        #: ``(pid, CPU seconds)`` counted so far: a forked worker starts its own count.
        self._counted = (0, 0.0)
        #: ``time.monotonic()`` after which the request path writes the figures again.
        self.due = 0.0

    def refresh(self) -> None:
        """Read this process's figures and write them to its files."""
        with self._lock:
            self.due = time.monotonic() + _PROCESS_REFRESH_SECONDS
            figures: dict[str, float] = {}
            for collector in (self._collector, self._threads):
                for family in collector.collect():
                    for sample in family.samples:
                        figures[sample.name] = sample.value
            for name, gauge in self._gauges.items():
                if name in figures:
                    gauge.set(figures[name])
            cpu = figures.get("process_cpu_seconds_total")
            if cpu is not None:
                pid, counted = self._counted
                if pid != os.getpid():
                    pid, counted = os.getpid(), 0.0
                if cpu > counted:
                    self._cpu.inc(cpu - counted)
                    counted = cpu
                self._counted = (pid, counted)


class ProcessFiguresSink:
    """Multiprocess mode: keeps each worker's process figures in the files fresh, from the
    request path, at most once a second (one clock read a request otherwise)."""

    name = "saturation"
    start: Optional[Callable[[Observation], None]] = None

    def __init__(self, figures: _ProcessFiles) -> None:
        self._figures = figures

    def finish(self, observation: Observation) -> None:
        figures = self._figures
        if time.monotonic() >= figures.due:
            figures.refresh()
