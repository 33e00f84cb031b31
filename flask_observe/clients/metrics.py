"""The metrics of outgoing calls: ``http_client_requests_total{method, peer, status}`` and
``http_client_request_duration_seconds{method, peer}``, in one process and in
prometheus_client's multiprocess mode.

They follow the server's families (:mod:`flask_observe.metrics`,
:mod:`flask_observe.multiprocess`): in one process, a store per ``(method, peer)`` that a
collector turns into metric families at scrape time, so no ``*_created`` series, and an
exemplar with the call's ``trace_id`` on each latency bucket; in multiprocess mode,
prometheus_client's own ``Counter`` and ``Histogram``, whose values live in the files.
The latency buckets are the server's.

Every label is bounded, since a host name or an exception class can come from anywhere: a
peer past the first :data:`~flask_observe.config.Settings.http_client_max_peers` is
counted as :data:`OTHER_PEER`, and an exception class past the first
:data:`MAX_ERROR_NAMES` as :data:`OTHER_ERROR`.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator
from typing import Optional, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..metrics import _cumulative, _les, _with_exemplars
from ..registries import PerRegistry

__all__ = [
    "CLIENT_HELP",
    "MAX_ERROR_NAMES",
    "OTHER_ERROR",
    "OTHER_PEER",
    "ClientMetrics",
    "client_metrics",
]

#: The help text of each family, the same in both modes.
CLIENT_HELP = {
    "http_client_requests": (
        "Outgoing HTTP calls finished, by method, peer (host:port) and status code, or "
        "exception class when no response came."
    ),
    "http_client_request_duration_seconds": (
        "Time from sending an outgoing HTTP call to its response, or its failure, in seconds."
    ),
}
#: The ``peer`` of every peer past the bound.
OTHER_PEER = "other"
#: The ``status`` of every exception class past :data:`MAX_ERROR_NAMES`, as OpenTelemetry
#: spells a fallback error type.
OTHER_ERROR = "_OTHER"
#: Distinct exception classes kept as ``status`` values.
MAX_ERROR_NAMES = 50
#: How much of an exception class's name a label keeps.
_MAX_ERROR_CHARS = 64


class ClientMetrics(Protocol):
    """Where an app's outgoing calls are counted."""

    def peer_label(self, peer: str, limit: int) -> str:
        """*peer* as a label value: itself if it is among the first *limit* peers seen,
        else :data:`OTHER_PEER`."""

    def error_label(self, name: str) -> str:
        """An exception class name as a ``status`` value, bounded likewise."""

    def record(
        self, method: str, peer: str, status: str, duration: float, trace_id: Optional[str]
    ) -> None:
        """Count one finished call; *trace_id* is the exemplar of its latency bucket."""


class _Bounds:
    """The peers and exception names admitted as label values so far. Admitted values are
    read without the lock (``in`` on a set is atomic); only a new one takes it."""

    def __init__(self) -> None:
        self._peers: set[str] = set()
        self._errors: set[str] = set()
        self._lock = threading.Lock()

    def peer_label(self, peer: str, limit: int) -> str:
        return self._admit(self._peers, peer, limit, OTHER_PEER)

    def error_label(self, name: str) -> str:
        return self._admit(self._errors, name[:_MAX_ERROR_CHARS], MAX_ERROR_NAMES, OTHER_ERROR)

    def _admit(self, admitted: set[str], value: str, limit: int, overflow: str) -> str:
        """*value*, if admitted already or while fewer than *limit* are; else *overflow*."""
        if value in admitted:
            return value
        with self._lock:
            if value in admitted:
                return value
            if len(admitted) >= limit:
                return overflow
            admitted.add(value)
        return value


class _PeerSeries:
    """The counts of one ``(method, peer)``: plain (not cumulative) bucket counts, one per
    bound plus ``+Inf``, with the latest exemplar of each."""

    __slots__ = ("duration", "duration_sum", "exemplars", "statuses")

    def __init__(self, bounds: int) -> None:
        self.duration = [0] * (bounds + 1)
        self.duration_sum = 0.0
        self.exemplars: list[Optional[tuple[str, float]]] = [None] * (bounds + 1)
        self.statuses: dict[str, int] = {}


class _Store(_Bounds, Collector):
    """One process's calls, exposed as the two families when scraped.

    A call is counted under a lock at once, not queued as requests are: a call costs far
    more than the few additions, and nothing here runs for a request that makes none.
    """

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        super().__init__()
        self._buckets = buckets
        self._les = _les(buckets)
        self._series: dict[tuple[str, str], _PeerSeries] = {}
        self._counts_lock = threading.Lock()
        registry.register(self)

    def record(
        self, method: str, peer: str, status: str, duration: float, trace_id: Optional[str]
    ) -> None:
        bucket = bisect_left(self._buckets, duration)
        with self._counts_lock:
            series = self._series.get((method, peer))
            if series is None:
                series = self._series[method, peer] = _PeerSeries(len(self._buckets))
            series.duration[bucket] += 1
            series.duration_sum += duration
            if trace_id is not None:
                series.exemplars[bucket] = (trace_id, duration)
            series.statuses[status] = series.statuses.get(status, 0) + 1

    def _families(self) -> tuple[CounterMetricFamily, HistogramMetricFamily]:
        return (
            CounterMetricFamily(
                "http_client_requests",
                CLIENT_HELP["http_client_requests"],
                labels=["method", "peer", "status"],
            ),
            HistogramMetricFamily(
                "http_client_request_duration_seconds",
                CLIENT_HELP["http_client_request_duration_seconds"],
                labels=["method", "peer"],
            ),
        )

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        requests, duration = self._families()
        with self._counts_lock:
            snapshot = [
                (
                    key,
                    list(series.duration),
                    list(series.exemplars),
                    series.duration_sum,
                    sorted(series.statuses.items()),
                )
                for key, series in self._series.items()
            ]
        for (method, peer), durations, exemplars, duration_sum, statuses in snapshot:
            duration.add_metric(
                [method, peer],
                _with_exemplars(_cumulative(durations, self._les), exemplars),
                duration_sum,
            )
            for status, count in statuses:
                requests.add_metric([method, peer, status], count)
        yield from (requests, duration)


class _Files(_Bounds):
    """The calls under prometheus_client's multiprocess mode: its own types, whose values
    live in the process's files. Exemplars are not kept there, so none is given."""

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        super().__init__()
        self._requests = Counter(
            "http_client_requests",
            CLIENT_HELP["http_client_requests"],
            ("method", "peer", "status"),
            registry=registry,
        )
        self._duration = Histogram(
            "http_client_request_duration_seconds",
            CLIENT_HELP["http_client_request_duration_seconds"],
            ("method", "peer"),
            buckets=buckets,
            registry=registry,
        )
        self._children: dict[tuple[str, ...], tuple[Counter, Histogram]] = {}

    def record(
        self, method: str, peer: str, status: str, duration: float, trace_id: Optional[str]
    ) -> None:
        key = (method, peer, status)
        children = self._children.get(key)
        if children is None:
            children = self._children.setdefault(
                key,
                (self._requests.labels(method, peer, status), self._duration.labels(method, peer)),
            )
        children[0].inc()
        children[1].observe(duration)


_stores: PerRegistry[ClientMetrics] = PerRegistry()


def client_metrics(
    registry: CollectorRegistry, buckets: tuple[float, ...], *, multiprocess: bool
) -> ClientMetrics:
    """The client families of *registry*, made on first use: apps that share a registry
    share them (and have agreed on the buckets already, for the server's histogram)."""
    if multiprocess:
        return _stores.get(registry, lambda: _Files(registry, buckets))
    return _stores.get(registry, lambda: _Store(registry, buckets))
