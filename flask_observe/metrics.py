"""The HTTP metrics of the contract: a per-route store, its collector, and the recorder sink.

Every request updates six series (requests, duration, in progress, request and response size,
and sometimes exceptions). Done through prometheus_client's labelled children, that costs
about 4.5 microseconds a request in place, most of it per-call validation and one lock per
value; the budget for the whole of flask-observe is about 7. So the counts live here, one
:class:`_RouteSeries` per ``(method, endpoint)``, and a collector turns them into
prometheus_client metric families at scrape time. The registry, the exposition formats and
the parsers remain prometheus_client's.

A finished request costs one ``deque.append`` of its values, which is atomic and takes no
lock. Every ``_FOLD_AT`` requests, and before every scrape, whoever notices drains the queue
into the buckets under one lock: the bucket search and the additions run once per batch in a
tight loop instead of once per request between the rest of Flask's work, and a scrape always
sees every request that finished before it. The in-progress gauge is not counted at all: a
scrape asks each app's pipeline which requests it is serving and labels them then.

``*_created`` series are not exported: they are optional in OpenMetrics and, in the
Prometheus text format, would each become a separate gauge series.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from bisect import bisect_left
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Optional, Protocol, Union

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from ._version import __version__
from .config import ConfigError
from .observation import Observation
from .registries import PerRegistry

__all__ = ["HTTP_HELP", "ROUTE_LABELS", "HttpMetrics", "HttpRecorder"]

#: The labels of every HTTP family, before its own (``status``, ``exception``) if it has one.
ROUTE_LABELS = ["method", "endpoint"]

#: The help text of each HTTP family, by family name; the same in both modes (see
#: :mod:`flask_observe.multiprocess`).
HTTP_HELP = {
    "http_requests": "HTTP requests finished, by method, route and status code.",
    "http_request_duration_seconds": (
        "Time from the start of the request to the end of its response, in seconds."
    ),
    "http_requests_in_progress": "HTTP requests being served now.",
    "http_request_exceptions": "Requests ended by an unhandled exception, by exception class.",
    "http_request_size_bytes": "Request body sizes, in bytes (Content-Length; 0 when absent).",
    "http_response_size_bytes": "Response body sizes, in bytes.",
}

#: Pending requests that make the request adding the last of them fold the queue.
_FOLD_AT = 64

#: What the recorder queues per request: ``(method, endpoint)``, duration, request size,
#: response size, status, exception class name, and trace ID.
_Finished = tuple[tuple[str, str], float, int, int, int, Optional[str], Optional[str]]

_INFO_HELP = "The flask-observe version serving each service."

_log = logging.getLogger("flask_observe")
_by_registry: PerRegistry[HttpMetrics] = PerRegistry()


class _RouteSeries:
    """The counts of one ``(method, endpoint)``, guarded by :attr:`HttpMetrics.fold_lock`.

    Buckets hold plain (not cumulative) counts, one per upper bound plus one for ``+Inf``;
    ``bisect_left`` finds the first bound >= the value, which is Prometheus' ``le``.
    """

    __slots__ = (
        "duration",
        "duration_sum",
        "exceptions",
        "exemplars",
        "request_size",
        "request_size_sum",
        "response_size",
        "response_size_sum",
        "statuses",
    )

    def __init__(self, duration_bounds: int, size_bounds: int) -> None:
        self.duration = [0] * (duration_bounds + 1)
        self.duration_sum = 0.0
        #: Per duration bucket, the trace ID and duration of its latest sampled request.
        self.exemplars: list[Optional[tuple[str, float]]] = [None] * (duration_bounds + 1)
        self.request_size = [0] * (size_bounds + 1)
        self.request_size_sum = 0
        self.response_size = [0] * (size_bounds + 1)
        self.response_size_sum = 0
        self.statuses: dict[int, int] = {}
        self.exceptions: dict[str, int] = {}


class InFlight(Protocol):
    """Something that knows the requests it is serving: an app's request pipeline."""

    def in_flight(self) -> list[tuple[str, str]]:
        """``(method, endpoint)`` of each request being served."""


def _les(bounds: tuple[float, ...]) -> list[str]:
    """``le`` label values, spelled as prometheus_client spells them."""
    return [floatToGoString(b) for b in bounds] + ["+Inf"]  # type: ignore[no-untyped-call]


def _cumulative(counts: list[int], les: list[str]) -> list[tuple[str, float]]:
    total, out = 0, []
    for le, count in zip(les, counts):
        total += count
        out.append((le, float(total)))
    return out


def _with_exemplars(
    buckets: list[tuple[str, float]], exemplars: list[Optional[tuple[str, float]]]
) -> list[Any]:
    """Bucket samples with their exemplars: ``trace_id`` of the latest sampled request in
    each. Only the OpenMetrics format shows them; the Prometheus text format leaves them
    out. They carry no timestamp: it is optional, Prometheus then takes the scrape's, and
    reading the clock on every request would cost more than it tells."""
    if not any(exemplars):
        return buckets
    return [
        (le, count, Exemplar({"trace_id": ex[0]}, ex[1])) if ex else (le, count)
        for (le, count), ex in zip(buckets, exemplars)
    ]


class _HttpCollector(Collector):
    """Exposes the route store as the contract's metric families."""

    def __init__(self, metrics: HttpMetrics) -> None:
        self._metrics = metrics
        self._duration_les = _les(metrics.buckets)
        self._size_les = _les(metrics.size_buckets)

    def _families(
        self,
    ) -> tuple[
        CounterMetricFamily,
        HistogramMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
        HistogramMetricFamily,
        HistogramMetricFamily,
    ]:
        return (
            CounterMetricFamily(
                "http_requests", HTTP_HELP["http_requests"], labels=[*ROUTE_LABELS, "status"]
            ),
            HistogramMetricFamily(
                "http_request_duration_seconds",
                HTTP_HELP["http_request_duration_seconds"],
                labels=ROUTE_LABELS,
            ),
            GaugeMetricFamily(
                "http_requests_in_progress",
                HTTP_HELP["http_requests_in_progress"],
                labels=ROUTE_LABELS,
            ),
            CounterMetricFamily(
                "http_request_exceptions",
                HTTP_HELP["http_request_exceptions"],
                labels=[*ROUTE_LABELS, "exception"],
            ),
            HistogramMetricFamily(
                "http_request_size_bytes", HTTP_HELP["http_request_size_bytes"], labels=ROUTE_LABELS
            ),
            HistogramMetricFamily(
                "http_response_size_bytes",
                HTTP_HELP["http_response_size_bytes"],
                labels=ROUTE_LABELS,
            ),
        )

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        requests, duration, in_progress, exceptions, request_size, response_size = self._families()
        metrics = self._metrics
        busy = Tally(metrics.in_flight())
        with metrics.fold_lock:
            metrics.fold_locked()
            for key in busy:
                metrics.series(key)  # a route's first request, still running
            snapshot = [
                (
                    key,
                    busy.get(key, 0),
                    list(series.duration),
                    list(series.exemplars),
                    series.duration_sum,
                    list(series.request_size),
                    series.request_size_sum,
                    list(series.response_size),
                    series.response_size_sum,
                    sorted(series.statuses.items()),
                    sorted(series.exceptions.items()),
                )
                for key, series in list(metrics.routes.items())
            ]
        for (
            labels,
            running,
            durations,
            exemplars,
            duration_sum,
            request_sizes,
            request_size_sum,
            response_sizes,
            response_size_sum,
            statuses,
            raised,
        ) in snapshot:
            method, endpoint = labels
            in_progress.add_metric(labels, running)
            if not sum(durations):
                continue  # started, never finished yet: no histogram with a zero count
            duration.add_metric(
                labels,
                _with_exemplars(_cumulative(durations, self._duration_les), exemplars),
                duration_sum,
            )
            request_size.add_metric(
                labels, _cumulative(request_sizes, self._size_les), request_size_sum
            )
            response_size.add_metric(
                labels, _cumulative(response_sizes, self._size_les), response_size_sum
            )
            for status, count in statuses:
                requests.add_metric([method, endpoint, str(status)], count)
            for name, count in raised:
                exceptions.add_metric([method, endpoint, name], count)
        yield from (requests, duration, in_progress, exceptions, request_size, response_size)


class HttpMetrics:
    """The HTTP families on one registry: the route store, ``flask_observe_info`` and
    ``flask_observe_errors_total``. Apps that share a registry share this object.

    With *multiprocess* (prometheus_client's multiprocess mode), the route store and its
    collector are left out: :class:`~flask_observe.multiprocess.MultiprocessRecorder`
    records the requests instead, and ``flask_observe_info`` is a gauge, since
    prometheus_client's files cannot hold an ``Info``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        buckets: tuple[float, ...],
        size_buckets: tuple[float, ...],
        *,
        multiprocess: bool = False,
    ) -> None:
        self.buckets = buckets
        self.size_buckets = size_buckets
        #: ``(method, endpoint)`` -> its series; entries are added, never removed.
        self.routes: dict[tuple[str, str], _RouteSeries] = {}
        #: Finished requests not yet counted into ``routes``: appended without a lock.
        self.pending: deque[_Finished] = deque()
        #: Guards the counts of every series while they are folded into or read.
        self.fold_lock = threading.Lock()
        #: The pipelines whose requests in flight make the in-progress gauge.
        self._sources: weakref.WeakSet[InFlight] = weakref.WeakSet()
        self._sources_lock = threading.Lock()
        self.multiprocess = multiprocess
        self.info: Union[Info, Gauge]
        if multiprocess:
            # livemax: 1 while a worker of that version lives; a reload to a new version
            # drops the old one's series with its workers' files.
            self.info = Gauge(
                "flask_observe_info",
                _INFO_HELP,
                ("service", "version"),
                multiprocess_mode="livemax",
                registry=registry,
            )
        else:
            registry.register(_HttpCollector(self))
            self.info = Info("flask_observe", _INFO_HELP, ("service",), registry=registry)
        self.errors = Counter(
            "flask_observe_errors",
            "Failures inside flask-observe itself, by the sink that failed; requests go on.",
            ("sink",),
            registry=registry,
        )
        self.log_lines_lost = Counter(
            "flask_observe_log_lines_lost",
            "Log lines not written, by reason: a closed or broken stream, an encoding, or a "
            "repeated warning of a library held back.",
            ("reason",),
            registry=registry,
        )
        self.spans_dropped = Counter(
            "flask_observe_spans_dropped",
            "Finished spans that never reached the exporter's backend, by reason.",
            ("reason",),
            registry=registry,
        )
        self._warned: set[str] = set()

    @classmethod
    def for_registry(
        cls,
        registry: CollectorRegistry,
        buckets: tuple[float, ...],
        size_buckets: tuple[float, ...],
        *,
        multiprocess: bool = False,
    ) -> HttpMetrics:
        """The registry's families, made on first use; later apps must agree on buckets."""
        metrics = _by_registry.get(
            registry, lambda: cls(registry, buckets, size_buckets, multiprocess=multiprocess)
        )
        if metrics.buckets != buckets:
            raise ConfigError(
                "OBSERVE_BUCKETS",
                buckets,
                f"the buckets this registry already uses, {metrics.buckets}: apps that share "
                "a registry share http_request_duration_seconds; give this app its own "
                "registry with Observe(registry=...). (Without OBSERVE_BUCKETS, the buckets "
                "are the default ones with OBSERVE_ALERT_LATENCY_SECONDS added.)",
            )
        if metrics.size_buckets != size_buckets:
            raise ConfigError(
                "OBSERVE_SIZE_BUCKETS",
                size_buckets,
                f"the size buckets this registry already uses, {metrics.size_buckets}",
            )
        return metrics

    def log_line_lost(self, reason: str) -> None:
        """Count one log line lost for *reason*."""
        self.log_lines_lost.labels(reason).inc()

    def spans_dropped_by(self, reason: str, count: int, check: Optional[str] = None) -> None:
        """Count *count* spans lost for *reason*; warn the first time for each reason, with
        *check*, what to look at (the exporter's destination), if given."""
        self.spans_dropped.labels(reason).inc(count)
        if reason not in self._warned:
            self._warned.add(reason)
            _log.warning(
                "Spans are being dropped (%s); they are counted in "
                "flask_observe_spans_dropped_total{reason=%r}. %s",
                reason,
                reason,
                "A larger OBSERVE_TRACING_QUEUE_SIZE, or a faster exporter, keeps them."
                if reason == "queue_full"
                else check or "Check where the exporter sends them.",
            )

    def set_info(self, service: str) -> None:
        if isinstance(self.info, Info):
            self.info.labels(service=service).info({"version": __version__})
            return
        gauge = self.info.labels(service=service, version=__version__)
        gauge.set(1)
        # A worker forked from a master that made the app (gunicorn's preload_app) starts
        # its own files, where the value is 0 until set again.
        os.register_at_fork(after_in_child=lambda: gauge.set(1))

    def watch(self, source: InFlight) -> None:
        """Count *source*'s requests in flight in ``http_requests_in_progress``; held weakly."""
        with self._sources_lock:
            self._sources.add(source)

    def in_flight(self) -> list[tuple[str, str]]:
        """``(method, endpoint)`` of every request in flight, over all watched sources."""
        with self._sources_lock:
            sources = list(self._sources)
        return [key for source in sources for key in source.in_flight()]

    def fold(self) -> None:
        """Count every pending request into its series."""
        with self.fold_lock:
            self.fold_locked()

    def fold_locked(self) -> None:
        """:meth:`fold`, for a caller that holds :attr:`fold_lock`."""
        pending, routes, series_of = self.pending, self.routes, self.series
        buckets, size_buckets = self.buckets, self.size_buckets
        pop = pending.popleft
        while pending:
            key, duration, request_size, response_size, status, exception, trace_id = pop()
            series = routes.get(key) or series_of(key)
            bucket = bisect_left(buckets, duration)
            series.duration[bucket] += 1
            if trace_id is not None:
                series.exemplars[bucket] = (trace_id, duration)
            series.duration_sum += duration
            if request_size:
                series.request_size[bisect_left(size_buckets, request_size)] += 1
                series.request_size_sum += request_size
            else:
                series.request_size[0] += 1
            series.response_size[bisect_left(size_buckets, response_size)] += 1
            series.response_size_sum += response_size
            statuses = series.statuses
            statuses[status] = statuses.get(status, 0) + 1
            if exception is not None:
                series.exceptions[exception] = series.exceptions.get(exception, 0) + 1

    def series(self, key: tuple[str, str]) -> _RouteSeries:
        """The series of *key*, made on first use (``setdefault`` settles a race)."""
        series = self.routes.get(key)
        if series is None:
            series = self.routes.setdefault(
                key, _RouteSeries(len(self.buckets), len(self.size_buckets))
            )
        return series


class HttpRecorder:
    """The metrics sink: queues each finished request's values to be counted."""

    name = "metrics"

    def __init__(self, metrics: HttpMetrics) -> None:
        self._metrics = metrics
        self._pending = metrics.pending

    #: Nothing to do at the start: the in-progress gauge is read from the pipeline when
    #: scraped.
    start: Optional[Callable[[Observation], None]] = None

    def finish(self, observation: Observation) -> None:
        key = (observation.method, observation.endpoint)
        pending = self._pending
        pending.append(
            (
                key,
                observation.duration,
                observation.request_size,
                observation.response_size or 0,
                observation.status or 500,
                observation.exception,
                observation.trace_id,
            )
        )
        if len(pending) >= _FOLD_AT:
            self._metrics.fold()
