"""The HTTP metrics under prometheus_client's multiprocess mode, and the files' exposition.

A server such as gunicorn runs the app in several worker processes, and a scrape reaches
one of them. The per-route store of :mod:`flask_observe.metrics` lives in one process's
memory, and its in-progress gauge is read from that process's requests in flight, so it
cannot speak for the others. When ``PROMETHEUS_MULTIPROC_DIR`` is set, prometheus_client
keeps the value of every metric made with its own types in a memory-mapped file per process
in that directory, and ``/metrics`` adds the files of all the workers up. So in that mode
the HTTP metrics are recorded in those files by :class:`MultiprocessRecorder`, with the same
names, labels and buckets: the in-progress gauge through prometheus_client's ``Gauge``, the
counters and histograms written by flask-observe in files of its own, in prometheus_client's
format, at a seventh of the cost (:class:`_Values`).

What the mode changes (see :doc:`/deployment`): the latency buckets carry no exemplars
(prometheus_client's files keep none), counters have no ``_created`` series, and
collectors that are not made of prometheus_client's metric types, such as the ``process_*``
and ``python_*`` metrics, are not exported.

prometheus_client chooses how values are stored when ``prometheus_client.values`` is first
imported, from the environment of that moment; :func:`multiprocess_dir` refuses to go on
when the choice and the environment disagree.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import math
import os
import tempfile
import threading
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, Callable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .config import ConfigError
from .metrics import HTTP_HELP, ROUTE_LABELS
from .observation import Observation
from .registries import PerRegistry

__all__ = [
    "ENV_VAR",
    "MultiprocessRecorder",
    "compact_dead_worker",
    "files_registry",
    "multiprocess_dir",
    "registry_for_families",
    "values_in_files",
]

#: The variable that turns prometheus_client's multiprocess mode on, and names its directory.
ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"

_lock = threading.Lock()
_first_registry: Optional[CollectorRegistry] = None


def values_in_files() -> bool:
    """Whether prometheus_client keeps metric values in the multiprocess files: chosen once,
    when ``prometheus_client.values`` was first imported."""
    return values.ValueClass is not values.MutexValue


def multiprocess_dir() -> Optional[str]:
    """The directory of prometheus_client's multiprocess files, or ``None`` when the mode
    is off.

    :raises ConfigError: naming ``PROMETHEUS_MULTIPROC_DIR`` when the directory is missing
        or not writable, or when prometheus_client was imported before the variable was
        set (its metrics would then be kept in memory, and no other worker would see them).
    """
    path = os.environ.get(ENV_VAR)
    in_memory = not values_in_files()
    if not path:
        if not in_memory:
            raise ConfigError(
                ENV_VAR,
                path,
                "the directory of prometheus_client's multiprocess files: prometheus_client "
                "is in multiprocess mode (the deprecated prometheus_multiproc_dir, or a "
                "ValueClass of its own), so flask-observe needs the upper-case variable",
            )
        return None
    if not os.path.isdir(path):
        raise ConfigError(
            ENV_VAR,
            path,
            "an existing directory: create it (empty) before the server starts, as "
            "flask_observe.gunicorn's hooks expect",
        )
    try:
        # Written to, not asked about with os.access: root passes that test on a read-only
        # file system too.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(
            ENV_VAR, path, f"a directory this process can write files in ({exc.strerror})"
        ) from None
    if in_memory:
        raise ConfigError(
            ENV_VAR,
            path,
            "to be set in the environment before prometheus_client is first imported; this "
            "process imported it earlier, so its metrics stay in its own memory. Set the "
            "variable where the server is started (the shell, the container's env), not "
            "from Python code",
        )
    return path


def registry_for_families(registry: CollectorRegistry) -> CollectorRegistry:
    """The registry flask-observe's own metric families go on in multiprocess mode: the
    first one any app of this process used.

    In this mode a value lives in the process's files under the metric's name and labels,
    whatever its registry; two families of one name in one process would each keep a count
    of their own and write it over the other's. So the apps of a process share one set.
    """
    global _first_registry
    if _first_registry is not None:  # set once, never changed: no lock for later calls
        return _first_registry
    with _lock:
        if _first_registry is None:
            _first_registry = registry
        return _first_registry


class _RouteKeys:
    """The file keys of one ``(method, endpoint)``'s counters and histograms."""

    __slots__ = (
        "duration",
        "duration_sum",
        "endpoint",
        "exceptions",
        "in_progress",
        "method",
        "request_size",
        "request_size_sum",
        "response_size",
        "response_size_sum",
        "statuses",
    )

    def __init__(self, method: str, endpoint: str, in_progress: Gauge) -> None:
        self.method = method
        self.endpoint = endpoint
        self.in_progress = in_progress
        self.duration_sum = self.request_size_sum = self.response_size_sum = ""
        self.duration: list[str] = []
        self.request_size: list[str] = []
        self.response_size: list[str] = []
        #: status -> key of its ``http_requests_total``; exception class -> key.
        self.statuses: dict[int, str] = {}
        self.exceptions: dict[str, str] = {}


#: The word between the type and the PID in the names of the files :class:`_Values` writes.
#: prometheus_client's own files are ``<type>_<pid>.db``; two writers of one file in one
#: process would write over each other's keys.
OWN_FILES = "observe"


class _Values:
    """This process's values of the HTTP counters and histograms, in files of flask-observe's
    own in the multiprocess directory (``counter_observe_<pid>.db``,
    ``histogram_observe_<pid>.db``), written in prometheus_client's format with its
    :class:`~prometheus_client.mmap_dict.MmapedDict` and keys of its ``mmap_key``. Its
    collector reads them with every other file, by the type their name starts with.

    A prometheus_client value takes a lock, reads the PID and writes its file on each
    change: seven times for the counters and histograms of one request. Here the request's
    seven changes take one lock and one PID check. Each value is a float added to as
    prometheus_client adds to its own, so the files hold the same numbers, to the bit:
    ``tests/test_multiprocess.py`` proves it against prometheus_client's metrics.

    On a fork, as prometheus_client does, the child opens files of its own PID and starts
    from what they hold.
    """

    def __init__(self, families: _Families, buckets: tuple[float, ...], sizes: tuple[float, ...]):
        self._families = families
        self._bounds = (*buckets, math.inf)
        self._sizes = (*sizes, math.inf)
        self._lock = threading.Lock()
        self._pid = -1
        self._counters: Optional[MmapedDict] = None
        self._histograms: Optional[MmapedDict] = None
        #: Key -> its value, as the files hold it.
        self._values: dict[str, float] = {}
        self.routes: dict[tuple[str, str], _RouteKeys] = {}

    def _open(self, pid: int) -> None:
        """Open this process's files (a fork's child: its own), forgetting the parent's."""
        for file in (self._counters, self._histograms):
            if file is not None:
                file.close()  # type: ignore[no-untyped-call]
        path = os.environ[ENV_VAR]
        self._counters = MmapedDict(os.path.join(path, f"counter_{OWN_FILES}_{pid}.db"))  # type: ignore[no-untyped-call]
        self._histograms = MmapedDict(os.path.join(path, f"histogram_{OWN_FILES}_{pid}.db"))  # type: ignore[no-untyped-call]
        self._values = {}
        for route in self.routes.values():
            for key in self._histogram_keys(route):
                self._values[key] = self._histograms.read_value(key)[0]  # type: ignore[no-untyped-call]
            for key in (*route.statuses.values(), *route.exceptions.values()):
                self._values[key] = self._counters.read_value(key)[0]  # type: ignore[no-untyped-call]
        self._pid = pid

    @staticmethod
    def _histogram_keys(route: _RouteKeys) -> Iterator[str]:
        yield route.duration_sum
        yield from route.duration
        yield route.request_size_sum
        yield from route.request_size
        yield route.response_size_sum
        yield from route.response_size

    def _key(self, file: MmapedDict, *args: Any) -> str:
        """The key prometheus_client writes a value under, made in *file* as its metrics
        make it when a child is first labelled: a zero, unless the file holds a value."""
        key: str = mmap_key(*args)
        self._values[key] = file.read_value(key)[0]  # type: ignore[no-untyped-call]
        return key

    def _histogram(
        self, name: str, route: _RouteKeys, bounds: tuple[float, ...]
    ) -> tuple[str, list[str]]:
        """A histogram's ``_sum`` key and bucket keys, made in the order of
        prometheus_client's ``Histogram``."""
        file = self._histograms
        assert file is not None
        labels = [route.method, route.endpoint]
        help_text = HTTP_HELP[name]
        total = self._key(file, name, f"{name}_sum", ROUTE_LABELS, labels, help_text)
        buckets = [
            self._key(
                file,
                name,
                f"{name}_bucket",
                [*ROUTE_LABELS, "le"],
                [*labels, floatToGoString(bound)],  # type: ignore[no-untyped-call]
                help_text,
            )
            for bound in bounds
        ]
        return total, buckets

    def _route(self, method: str, endpoint: str) -> _RouteKeys:
        route = _RouteKeys(method, endpoint, self._families.in_progress.labels(method, endpoint))
        route.duration_sum, route.duration = self._histogram(
            "http_request_duration_seconds", route, self._bounds
        )
        route.request_size_sum, route.request_size = self._histogram(
            "http_request_size_bytes", route, self._sizes
        )
        route.response_size_sum, route.response_size = self._histogram(
            "http_response_size_bytes", route, self._sizes
        )
        self.routes[(method, endpoint)] = route
        return route

    def route(self, method: str, endpoint: str) -> _RouteKeys:
        """The keys of a route, made on its first request."""
        route = self.routes.get((method, endpoint))
        if route is not None:
            return route
        with self._lock:
            if self._pid != os.getpid():
                self._open(os.getpid())
            return self.routes.get((method, endpoint)) or self._route(method, endpoint)

    def record(self, route: _RouteKeys, observation: Observation) -> None:
        """Add one finished request to the files."""
        duration = observation.duration
        request_size = observation.request_size
        response_size = observation.response_size or 0
        status = observation.status or 500
        exception = observation.exception
        sizes = self._sizes
        with self._lock:
            if self._pid != os.getpid():
                self._open(os.getpid())
            values = self._values
            histograms = self._histograms
            counters = self._counters
            assert histograms is not None
            assert counters is not None
            for key, amount in (
                (route.duration_sum, duration),
                (route.duration[bisect_left(self._bounds, duration)], 1.0),
                (route.request_size_sum, request_size),
                (route.request_size[bisect_left(sizes, request_size)], 1.0),
                (route.response_size_sum, response_size),
                (route.response_size[bisect_left(sizes, response_size)], 1.0),
            ):
                value = values[key] + amount
                values[key] = value
                histograms.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]
            self._count(counters, route, route.statuses, status, "http_requests", "status")
            if exception is not None:
                self._count(
                    counters,
                    route,
                    route.exceptions,
                    exception,
                    "http_request_exceptions",
                    "exception",
                )

    def _count(
        self,
        counters: MmapedDict,
        route: _RouteKeys,
        keys: dict[Any, str],
        label_value: Any,
        name: str,
        label: str,
    ) -> None:
        """Add one to the counter *name* of *route* whose *label* is *label_value*, its key
        made on first use and kept in *keys*. The lock is held."""
        key = keys.get(label_value)
        if key is None:
            key = keys[label_value] = self._key(
                counters,
                name,
                f"{name}_total",
                [*ROUTE_LABELS, label],
                [route.method, route.endpoint, str(label_value)],
                HTTP_HELP[name],
            )
        value = self._values[key] + 1.0
        self._values[key] = value
        counters.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]


class _Families:
    """The six HTTP families as prometheus_client metrics, on one registry."""

    def __init__(
        self, registry: CollectorRegistry, buckets: tuple[float, ...], sizes: tuple[float, ...]
    ) -> None:
        self.requests = Counter(
            "http_requests",
            HTTP_HELP["http_requests"],
            (*ROUTE_LABELS, "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            HTTP_HELP["http_request_duration_seconds"],
            ROUTE_LABELS,
            buckets=buckets,
            registry=registry,
        )
        # livesum: the requests of each live worker, added up. A worker that dies with
        # requests in flight takes its file along, through flask_observe.gunicorn.child_exit.
        self.in_progress = Gauge(
            "http_requests_in_progress",
            HTTP_HELP["http_requests_in_progress"],
            ROUTE_LABELS,
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.exceptions = Counter(
            "http_request_exceptions",
            HTTP_HELP["http_request_exceptions"],
            (*ROUTE_LABELS, "exception"),
            registry=registry,
        )
        self.request_size = Histogram(
            "http_request_size_bytes",
            HTTP_HELP["http_request_size_bytes"],
            ROUTE_LABELS,
            buckets=sizes,
            registry=registry,
        )
        self.response_size = Histogram(
            "http_response_size_bytes",
            HTTP_HELP["http_response_size_bytes"],
            ROUTE_LABELS,
            buckets=sizes,
            registry=registry,
        )
        #: The counters' and histograms' values, written by flask-observe itself.
        self.values = _Values(self, buckets, sizes)


_families: PerRegistry[_Families] = PerRegistry()


class MultiprocessRecorder:
    """The metrics sink in multiprocess mode: records each request in the process's files,
    the in-progress gauge through prometheus_client's ``Gauge``, the counters and histograms
    through :class:`_Values`.

    The in-progress gauge is counted up once Flask has routed the request (its ``routed``
    hook, as one process counts requests whose route is known) and down when it finishes,
    since no other process could ask this one what it is serving.

    :param registry: the registry of the families; one set per registry, made on first use
        (the caller has checked that apps sharing it agree on the buckets).
    """

    name = "metrics"

    def __init__(
        self, registry: CollectorRegistry, buckets: tuple[float, ...], sizes: tuple[float, ...]
    ) -> None:
        families = _families.get(registry, lambda: _Families(registry, buckets, sizes))
        self._values = families.values
        #: The requests counted in progress, not yet finished.
        self._in_progress: set[Observation] = set()

    #: Nothing to do before Flask routes the request.
    start = None

    def routed(self, observation: Observation) -> None:
        self._values.route(observation.method, observation.endpoint).in_progress.inc()
        self._in_progress.add(observation)  # set.add is atomic: no lock

    def finish(self, observation: Observation) -> None:
        route = self._values.route(observation.method, observation.endpoint)
        if observation in self._in_progress:
            self._in_progress.discard(observation)
            route.in_progress.dec()
        self._values.record(route, observation)


class _Files(Collector):
    """Every worker's files, merged by prometheus_client, with ``flask_observe_info`` put
    back to the ``info`` type it has in one process (the files only know gauges). Read under
    a shared lock, so that a dead worker's files are never counted twice, or not at all,
    while :func:`compact_dead_worker` folds them into the archive."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._merged = MultiProcessCollector(None, path)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Metric]:
        with _files_lock(self._path, exclusive=False):
            merged: list[Metric] = list(self._merged.collect())  # type: ignore[no-untyped-call]
        for metric in merged:
            if metric.name == "flask_observe_info" and metric.type == "gauge":
                info = Metric("flask_observe", metric.documentation, "info")
                info.samples = metric.samples
                yield info
            else:
                yield metric


def files_registry(path: str) -> CollectorRegistry:
    """A fresh registry that reads every worker's files in *path*: one per scrape, as
    prometheus_client's documentation has it, since the files change between scrapes."""
    registry = CollectorRegistry()
    registry.register(_Files(path))
    return registry


# -- the files of dead workers --

#: The name that stands for a process in the files dead workers' values are kept in.
ARCHIVE = "archive"
#: The lock file of a multiprocess directory: not a ``.db``, so prometheus_client ignores it.
_LOCK_FILE = ".flask-observe.lock"

#: How the values of one key in two files combine, by file type (a gauge's by its mode);
#: ``None`` drops a dead process's values. Each takes and gives ``(value, timestamp)``.
_Combine = Optional[Callable[[tuple[float, float], tuple[float, float]], tuple[float, float]]]


def _add(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return a[0] + b[0], max(a[1], b[1])


_COMBINE: dict[str, _Combine] = {
    "counter": _add,
    "histogram": _add,
    "summary": _add,
    "gauge_sum": _add,
    "gauge_max": lambda a, b: a if a[0] >= b[0] else b,
    "gauge_min": lambda a, b: a if a[0] <= b[0] else b,
    "gauge_mostrecent": lambda a, b: a if a[1] >= b[1] else b,
    # One series per process: a dead process's have nothing left to say.
    "gauge_all": None,
    "gauge_liveall": None,
    "gauge_livesum": None,
    "gauge_livemax": None,
    "gauge_livemin": None,
    "gauge_livemostrecent": None,
}


@contextlib.contextmanager
def _files_lock(path: str, *, exclusive: bool) -> Iterator[None]:
    """An advisory lock on the directory's files: shared to read them all, exclusive to
    rewrite some."""
    fd = os.open(os.path.join(path, _LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # which releases the lock


def _kind(file_name: str) -> Optional[str]:
    """``counter``, ``histogram``, ``summary`` or ``gauge_<mode>`` of a file name:
    prometheus_client's (``<type>_<pid>.db``, ``gauge_<mode>_<pid>.db``) and
    flask-observe's own (``<type>_observe_<pid>.db``)."""
    parts = file_name[: -len(".db")].split("_")
    if len(parts) == 3 and parts[1] == OWN_FILES and parts[0] in ("counter", "histogram"):
        return parts[0]
    if parts[0] == "gauge" and len(parts) == 3:
        return f"gauge_{parts[1]}"
    if parts[0] in ("counter", "histogram", "summary") and len(parts) == 2:
        return parts[0]
    return None


def _values(path: str) -> dict[str, tuple[float, float]]:
    found = MmapedDict.read_all_values_from_file(path)  # type: ignore[no-untyped-call]
    return {key: (value, timestamp) for key, value, timestamp, _pos in found}


def compact_dead_worker(pid: int, path: Optional[str] = None) -> int:
    """Fold the files of the dead process *pid* into the directory's archive files, one per
    type, and remove them; return how many were removed.

    Counters, histograms and summaries are added to the archive, so no count is lost;
    gauges combine as their mode says (``sum`` added, ``max``/``min`` the larger/smaller,
    ``mostrecent`` the later), and those kept per live process or per process (``all``,
    ``live*``) are dropped. The directory then holds the live workers' files and a few
    archives, however many workers come and go. prometheus_client leaves the files of dead
    processes where they are: a server that recycles workers would otherwise pile them up,
    and every scrape would read them all.

    It must run after the process has exited (gunicorn's ``child_exit`` hook calls it).
    Scrapes through flask-observe wait for it, and it for them, on a lock file in the
    directory.

    :param pid: the process that exited.
    :param path: the directory; default ``PROMETHEUS_MULTIPROC_DIR``.

    .. versionadded:: 0.1
    """
    path = path or os.environ.get(ENV_VAR)
    if not path:
        return 0
    removed = 0
    with _files_lock(path, exclusive=True):
        for dead in sorted(glob.glob(os.path.join(glob.escape(path), f"*_{pid}.db"))):
            name = os.path.basename(dead)
            kind = _kind(name)
            if kind is None or kind not in _COMBINE:
                continue  # not a file of prometheus_client's that we know how to combine
            combine = _COMBINE[kind]
            if os.path.getsize(dead) == 0:
                combine = None  # made and never written to (a crash at once): nothing in it
            if combine is not None:
                archive = os.path.join(path, f"{kind}_{ARCHIVE}.db")
                values = _values(archive) if os.path.exists(archive) else {}
                for key, pair in _values(dead).items():
                    values[key] = combine(values[key], pair) if key in values else pair
                temporary = os.path.join(path, f".{kind}_{ARCHIVE}.{os.getpid()}.tmp")
                written = MmapedDict(temporary)  # type: ignore[no-untyped-call]
                try:
                    for key, (value, timestamp) in values.items():
                        written.write_value(key, value, timestamp)  # type: ignore[no-untyped-call]
                finally:
                    written.close()  # type: ignore[no-untyped-call]
                os.replace(temporary, archive)  # readers see the old archive or the new
            os.remove(dead)
            removed += 1
    return removed
