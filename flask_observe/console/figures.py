"""The routes page's figures: rate, error ratio and p50/p95/p99 per route over a recent
window, the saturation gauges, and which alert conditions hold now.

Everything comes from the app's own metrics, read as a scrape reads them: the registry in
one process, every worker's files under prometheus_client's multiprocess mode. The metrics
are cumulative, so a window needs an earlier reading to subtract: :class:`History` keeps
readings in a bounded ring, taken when a console page or API call asks and at most every
few seconds, and the figures of a window are the difference between now and the newest
reading at least a window old (or the oldest there is, and the page says how long that
is). Quantiles are interpolated within buckets as Prometheus' ``histogram_quantile``
does, so the console's p99 is the p99 of the generated recording rules.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

from prometheus_client.metrics_core import Metric

from ..config import Settings, duration_seconds

__all__ = [
    "Alert",
    "Chart",
    "Counts",
    "Gauge",
    "History",
    "Reading",
    "RouteFigures",
    "alerts_now",
    "histogram_quantile",
    "read_metrics",
    "route_figures",
    "saturation_gauges",
]

INF = math.inf
#: The readings a history keeps: a window, and the charts' span beyond it.
_READINGS = 91
#: The charts cover this many windows, or 15 minutes if that is longer.
_CHART_WINDOWS = 3
_CHART_MIN_SECONDS = 900.0

RouteKey = tuple[str, str]
#: A chart's values: ``(seconds ago it began, seconds ago it ended, value)`` per interval
#: between two readings, ``None`` where there is none.
Series = list[tuple[float, float, Optional[float]]]


class Counts(NamedTuple):
    """One route's cumulative counts: requests, those answered 5xx, and the latency
    histogram as ``(upper bound, cumulative count)`` pairs, ``+Inf`` last."""

    requests: float
    errors: float
    buckets: tuple[tuple[float, float], ...]


class Reading(NamedTuple):
    """The counts of every route at one moment (``time.monotonic()``)."""

    at: float
    routes: Mapping[RouteKey, Counts]


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> Optional[float]:
    """The *q*-quantile of a histogram's cumulative *buckets*, as Prometheus'
    ``histogram_quantile`` computes it: linear interpolation within the bucket the rank
    falls in, from 0 for the first; the highest finite bound when it falls in ``+Inf``.
    ``None`` without observations (Prometheus says ``NaN``)."""
    if len(buckets) < 2 or buckets[-1][0] != INF:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, (_le, count) in enumerate(buckets) if count >= rank)
    if index == len(buckets) - 1:
        return buckets[-2][0]
    upper, count = buckets[index]
    if index == 0:
        if upper <= 0:
            return upper
        lower, below = 0.0, 0.0
    else:
        lower, below = buckets[index - 1]
    if count == below:
        return lower
    return lower + (upper - lower) * (rank - below) / (count - below)


def read_metrics(
    families: Iterable[Metric], skip: Callable[[str], bool]
) -> tuple[dict[RouteKey, Counts], list[Metric]]:
    """The HTTP counts per ``(method, endpoint)`` in *families*, but for endpoints *skip*
    says no to, and the other families, for the saturation gauges."""
    requests: dict[RouteKey, float] = {}
    errors: dict[RouteKey, float] = {}
    buckets: dict[RouteKey, dict[float, float]] = {}
    others = []
    for family in families:
        if family.name in ("http_requests", "http_requests_total"):
            for sample in family.samples:
                if sample.name != "http_requests_total":
                    continue
                labels = sample.labels
                key = (labels.get("method", ""), labels.get("endpoint", ""))
                if skip(key[1]):
                    continue
                requests[key] = requests.get(key, 0.0) + sample.value
                if labels.get("status", "").startswith("5"):
                    errors[key] = errors.get(key, 0.0) + sample.value
        elif family.name == "http_request_duration_seconds":
            for sample in family.samples:
                if not sample.name.endswith("_bucket"):
                    continue
                labels = sample.labels
                key = (labels.get("method", ""), labels.get("endpoint", ""))
                if skip(key[1]):
                    continue
                try:
                    bound = float(labels["le"])
                except (KeyError, ValueError):
                    continue
                of_route = buckets.setdefault(key, {})
                of_route[bound] = of_route.get(bound, 0.0) + sample.value
        else:
            others.append(family)
    counts = {
        key: Counts(total, errors.get(key, 0.0), tuple(sorted(buckets.get(key, {}).items())))
        for key, total in requests.items()
    }
    return counts, others


def _difference(now: Counts, then: Optional[Counts]) -> Counts:
    """*now* less *then*; *now* alone when the counts went down (a restart reset them) or
    the buckets changed."""
    if then is None or now.requests < then.requests:
        return now
    if [le for le, _ in now.buckets] != [le for le, _ in then.buckets]:
        return now
    return Counts(
        now.requests - then.requests,
        max(0.0, now.errors - then.errors),
        tuple((le, max(0.0, a - b)) for (le, a), (_, b) in zip(now.buckets, then.buckets)),
    )


@dataclass
class Chart:
    """A small chart of one series: SVG polyline points in a 120 x 30 box, each interval
    a level step (its mean over the interval), and the highest value, for the label."""

    points: str
    peak: Optional[float]

    @classmethod
    def of(cls, values: Series, span: float) -> Chart:
        """*values* per interval, the x axis covering the last *span* seconds."""
        known = [(began, ended, v) for began, ended, v in values if v is not None]
        if not known:
            return cls("", None)
        peak = max(value for _began, _ended, value in known)
        scale = 26.0 / peak if peak > 0 else 0.0

        def x(ago: float) -> str:
            return f"{120.0 * (1 - min(ago, span) / span):.1f}"

        points = " ".join(
            f"{x(began)},{28.0 - value * scale:.1f} {x(ended)},{28.0 - value * scale:.1f}"
            for began, ended, value in known
        )
        return cls(points, peak)


@dataclass
class RouteFigures:
    """One route's figures over the window."""

    method: str
    endpoint: str
    requests: float
    #: Requests per second; ``None`` when the window's length is unknown.
    rate: Optional[float]
    error_ratio: Optional[float]
    p50: Optional[float]
    p95: Optional[float]
    p99: Optional[float]
    rate_chart: Chart = field(default_factory=lambda: Chart("", None))
    p95_chart: Chart = field(default_factory=lambda: Chart("", None))


class Window(NamedTuple):
    """The window the figures cover: its length in seconds (``None`` when unknown, before
    a second reading under multiprocess mode), and whether it is the configured one."""

    seconds: Optional[float]
    full: bool
    configured: str


class History:
    """Readings of the route counts, for windows and charts: a bounded ring, one reading
    kept at most every ``window / 15`` seconds (5 s or more).

    :param window: the configured window, a Prometheus duration.
    :param from_zero: whether the counts were zero when the history began (one process,
        whose metrics began with it); under multiprocess mode they may not have been.
    :param clock: ``time.monotonic``; tests give their own.
    """

    def __init__(
        self,
        window: str,
        *,
        from_zero: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.seconds = duration_seconds(window)
        self.every = max(5.0, self.seconds / 15)
        self.chart_span = max(self.seconds * _CHART_WINDOWS, _CHART_MIN_SECONDS)
        self._clock = clock
        self._readings: deque[Reading] = deque(maxlen=_READINGS)
        if from_zero:
            self._readings.append(Reading(clock(), {}))
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._clock()

    def add(self, reading: Reading) -> list[Reading]:
        """Keep *reading* if the last one kept is old enough; the readings kept before it,
        oldest first."""
        with self._lock:
            earlier = list(self._readings)
            if not earlier or reading.at - earlier[-1].at >= self.every:
                self._readings.append(reading)
        return [r for r in earlier if r.at < reading.at]

    def figures(self, reading: Reading) -> tuple[list[RouteFigures], Window]:
        """The figures of every route over the window ending at *reading*, with charts."""
        earlier = self.add(reading)
        base: Optional[Reading] = None
        for kept in earlier:
            if kept.at <= reading.at - self.seconds:
                base = kept
        if base is None and earlier:
            base = earlier[0]
        span = None if base is None else reading.at - base.at
        window = Window(span, span is not None and span >= self.seconds * 0.95, self.window)
        recent = [r for r in earlier if reading.at - r.at <= self.chart_span] + [reading]
        figures = []
        for key, now in sorted(reading.routes.items(), key=lambda item: (item[0][1], item[0][0])):
            counts = _difference(now, None if base is None else base.routes.get(key))
            figures.append(_route(key, counts, span))
        charts = self._charts(recent, reading.at)
        for route in figures:
            rates, p95s = charts.get((route.method, route.endpoint), ([], []))
            route.rate_chart = Chart.of(rates, self.chart_span)
            route.p95_chart = Chart.of(p95s, self.chart_span)
        return figures, window

    @staticmethod
    def _charts(readings: Sequence[Reading], now: float) -> dict[RouteKey, tuple[Series, Series]]:
        series: dict[RouteKey, tuple[Series, Series]] = {}
        for before, after in zip(readings, readings[1:]):
            seconds = after.at - before.at
            if seconds <= 0:
                continue
            for key, counts in after.routes.items():
                delta = _difference(counts, before.routes.get(key))
                rates, p95s = series.setdefault(key, ([], []))
                began, ended = now - before.at, now - after.at
                rates.append((began, ended, delta.requests / seconds))
                p95s.append((began, ended, histogram_quantile(0.95, delta.buckets)))
        return series


def _route(key: RouteKey, counts: Counts, seconds: Optional[float]) -> RouteFigures:
    method, endpoint = key
    return RouteFigures(
        method=method,
        endpoint=endpoint,
        requests=counts.requests,
        rate=None if not seconds else counts.requests / seconds,
        error_ratio=counts.errors / counts.requests if counts.requests else None,
        p50=histogram_quantile(0.5, counts.buckets),
        p95=histogram_quantile(0.95, counts.buckets),
        p99=histogram_quantile(0.99, counts.buckets),
    )


def route_figures(
    history: History, families: Iterable[Metric], skip: Callable[[str], bool]
) -> tuple[list[RouteFigures], Window, list[Metric]]:
    """Read *families* once: the routes' figures over the window, and the other
    families (for :func:`saturation_gauges`)."""
    counts, others = read_metrics(families, skip)
    figures, window = history.figures(Reading(history.now(), counts))
    return figures, window, others


@dataclass
class Gauge:
    """One saturation figure: what it is, its value, and its limit where it has one."""

    kind: str
    name: str
    value: float
    limit: Optional[float] = None
    unit: str = ""

    @property
    def ratio(self) -> Optional[float]:
        return self.value / self.limit if self.limit else None


#: The process figures shown, by metric (sample) name, with their unit.
_PROCESS = {
    "process_resident_memory_bytes": ("resident memory", "bytes"),
    "process_open_fds": ("open file descriptors", ""),
    "process_threads": ("threads", ""),
    "process_cpu_seconds_total": ("CPU time", "s"),
}


def saturation_gauges(families: Iterable[Metric]) -> list[Gauge]:
    """The pools, queues, requests in flight and process figures among *families*."""
    in_use: dict[str, float] = {}
    limits: dict[str, float] = {}
    max_fds: dict[str, float] = {}
    gauges: list[Gauge] = []
    in_flight = None
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            worker = f" (pid {labels['pid']})" if "pid" in labels else ""
            if sample.name == "db_pool_connections_in_use":
                in_use[labels.get("pool", "")] = sample.value
            elif sample.name == "db_pool_connections_max":
                limits[labels.get("pool", "")] = sample.value
            elif sample.name == "app_queue_depth":
                gauges.append(Gauge("queue", labels.get("queue", ""), sample.value))
            elif sample.name == "http_requests_in_progress":
                in_flight = (in_flight or 0.0) + sample.value
            elif sample.name == "process_max_fds":
                max_fds[worker] = sample.value
            elif sample.name in _PROCESS:
                name, unit = _PROCESS[sample.name]
                gauges.append(Gauge("process", name + worker, sample.value, unit=unit))
    pools = [Gauge("pool", name, value, limits.get(name)) for name, value in sorted(in_use.items())]
    for gauge in gauges:
        if gauge.name.startswith("open file descriptors"):
            gauge.limit = max_fds.get(gauge.name[len("open file descriptors") :])
    requests = [] if in_flight is None else [Gauge("requests", "in flight", in_flight)]
    return pools + requests + gauges


@dataclass
class Alert:
    """One alert condition of the generated rules, and whether it holds now.

    ``holds`` is ``None`` for a condition the console does not evaluate, with the reason in
    ``detail``.
    """

    name: str
    severity: str
    condition: str
    holds: Optional[bool]
    detail: str


def alerts_now(
    settings: Settings, routes: Sequence[RouteFigures], gauges: Sequence[Gauge]
) -> list[Alert]:
    """The conditions of the rules :func:`flask_observe.rules.alerting_rules` writes,
    evaluated on the console's figures over its window. Their ``for`` durations are not:
    a condition that holds here fires in Prometheus once it has held that long."""
    s = settings
    alerts = []
    requests = sum(route.requests for route in routes)
    errors = sum(route.requests * (route.error_ratio or 0.0) for route in routes)
    ratio = errors / requests if requests else None
    alerts.append(
        Alert(
            "HighErrorRate",
            "page",
            f"5xx share of all requests > {s.alert_error_ratio:.4g}",
            None if ratio is None else ratio > s.alert_error_ratio,
            "no requests in the window" if ratio is None else f"{ratio:.2%} of {requests:.0f}",
        )
    )
    slow = [r for r in routes if r.p99 is not None and r.p99 > s.alert_latency_seconds]
    measured = [r for r in routes if r.p99 is not None]
    alerts.append(
        Alert(
            "HighLatencyP99",
            "notify",
            f"p99 of a route > {s.alert_latency_seconds:g} s",
            bool(slow) if measured else None,
            ", ".join(f"{r.method} {r.endpoint}: {r.p99:.3g} s" for r in slow if r.p99)
            or ("no requests in the window" if not measured else "every route below"),
        )
    )
    pools = [g for g in gauges if g.kind == "pool" and g.ratio is not None]
    full = [g for g in pools if (g.ratio or 0) > s.alert_saturation_ratio]
    alerts.append(
        Alert(
            "SaturationHigh",
            "warn",
            f"database pool in use / max > {s.alert_saturation_ratio:.4g}",
            bool(full) if pools else None,
            ", ".join(f"{g.name}: {g.ratio:.0%}" for g in full)
            or ("no pool tracked" if not pools else "every pool below"),
        )
    )
    if s.alert_in_flight_max is not None:
        flight = [g for g in gauges if g.kind == "requests"]
        busy = sum(g.value for g in flight)
        alerts.append(
            Alert(
                "SaturationHigh",
                "warn",
                f"requests in flight > {s.alert_in_flight_max}",
                busy > s.alert_in_flight_max,
                f"{busy:.0f} in flight",
            )
        )
    alerts.append(
        Alert(
            "TrafficDrop",
            "notify",
            f"rate < {s.alert_traffic_drop_ratio:.4g} x the rate "
            f"{s.alert_traffic_drop_offset} earlier",
            None,
            "not evaluated: the console keeps no figures that old",
        )
    )
    if s.slo_availability is not None:
        for name, severity in (("ErrorBudgetBurnFast", "page"), ("ErrorBudgetBurnSlow", "ticket")):
            alerts.append(
                Alert(
                    name,
                    severity,
                    "error budget burn rate over two windows",
                    None,
                    "not evaluated: its windows (1 hour to 3 days) are longer than the console's",
                )
            )
    return alerts
