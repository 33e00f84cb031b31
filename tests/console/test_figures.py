"""The route figures: Prometheus' quantile interpolation, windows from readings kept in a
bounded history, the saturation gauges and the alert conditions."""

from __future__ import annotations

import math
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, Histogram

from flask_observe.config import load_settings
from flask_observe.console.figures import (
    Counts,
    Gauge,
    History,
    Reading,
    RouteFigures,
    alerts_now,
    histogram_quantile,
    read_metrics,
    saturation_gauges,
)

INF = math.inf


def _buckets(*pairs: tuple[float, float]) -> tuple[tuple[float, float], ...]:
    return tuple(pairs)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        # 100 observations: 50 up to 0.1, 40 more up to 0.5, 10 more up to 1.
        (0.5, 0.1),  # the rank falls on a bound exactly
        (0.25, 0.05),  # half way into the first bucket, from 0
        (0.7, 0.3),  # 0.1 + 0.4 * (70 - 50) / 40
        (0.95, 0.75),  # 0.5 + 0.5 * (95 - 90) / 10
        (0.99, 0.95),
    ],
)
def test_quantiles_interpolate_within_buckets_as_prometheus_does(q: float, expected: float) -> None:
    buckets = _buckets((0.1, 50), (0.5, 90), (1.0, 100), (INF, 100))
    assert histogram_quantile(q, buckets) == pytest.approx(expected)


def test_a_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.99, _buckets((0.1, 10), (1.0, 50), (INF, 100))) == 1.0


def test_no_observations_give_no_quantile() -> None:
    assert histogram_quantile(0.5, _buckets((0.1, 0), (INF, 0))) is None
    assert histogram_quantile(0.5, ()) is None


def test_quantiles_match_a_histogram_of_prometheus_client() -> None:
    registry = CollectorRegistry()
    histogram = Histogram(
        "http_request_duration_seconds",
        "",
        ["method", "endpoint"],
        buckets=(0.01, 0.1, 1.0),
        registry=registry,
    )
    for value in [0.005] * 20 + [0.05] * 70 + [0.5] * 10:
        histogram.labels("GET", "/a").observe(value)
    requests = _requests_family({("GET", "/a", "200"): 100})
    counts, _others = read_metrics([*registry.collect(), requests], lambda endpoint: False)
    buckets = counts["GET", "/a"].buckets
    assert buckets == ((0.01, 20.0), (0.1, 90.0), (1.0, 100.0), (INF, 100.0))
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01 + 0.09 * 30 / 70)


def _requests_family(values: dict[tuple[str, str, str], float]) -> Any:
    from prometheus_client.metrics_core import CounterMetricFamily

    family = CounterMetricFamily("http_requests", "", labels=["method", "endpoint", "status"])
    for labels, value in values.items():
        family.add_metric(list(labels), value)
    return family


def test_requests_and_server_errors_are_counted_per_route_and_skipped_routes_left_out() -> None:
    family = _requests_family(
        {
            ("GET", "/a", "200"): 90,
            ("GET", "/a", "503"): 6,
            ("GET", "/a", "500"): 4,
            ("GET", "/a", "404"): 7,
            ("GET", "/observe/", "200"): 5,
        }
    )
    counts, _ = read_metrics([family], lambda endpoint: endpoint.startswith("/observe"))
    assert set(counts) == {("GET", "/a")}
    assert counts["GET", "/a"].requests == 107
    assert counts["GET", "/a"].errors == 10


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reading(at: float, requests: float, errors: float, fast: float) -> Reading:
    """One route: *fast* requests up to 0.1 s, the rest up to 1 s."""
    buckets = ((0.1, fast), (1.0, requests), (INF, requests))
    return Reading(at, {("GET", "/a"): Counts(requests, errors, buckets)})


def test_a_window_is_the_difference_from_the_newest_reading_a_window_old() -> None:
    clock = Clock()
    history = History("1m", from_zero=True, clock=clock)
    clock.now += 30
    history.figures(_reading(clock.now, 100, 0, 100))  # 30 s in: all fast, no errors
    clock.now += 60
    (route,), window = history.figures(_reading(clock.now, 160, 30, 110))
    # The reading 60 s old is the one of 30 s in: 60 requests since, 30 of them 5xx.
    assert window.seconds == pytest.approx(60)
    assert window.full
    assert route.requests == 60
    assert route.rate == pytest.approx(1.0)
    assert route.error_ratio == pytest.approx(0.5)
    assert route.p50 == pytest.approx(0.1 + 0.9 * (30 - 10) / 50)


def test_a_short_history_states_the_span_it_covers() -> None:
    clock = Clock()
    history = History("5m", from_zero=True, clock=clock)
    clock.now += 42
    (route,), window = history.figures(_reading(clock.now, 84, 0, 84))
    assert window.seconds == pytest.approx(42)
    assert not window.full
    assert route.rate == pytest.approx(2.0)


def test_without_a_baseline_the_first_look_has_no_rate() -> None:
    clock = Clock()
    history = History("1m", from_zero=False, clock=clock)
    (route,), window = history.figures(_reading(clock.now, 50, 5, 50))
    assert window.seconds is None
    assert route.rate is None
    assert route.error_ratio == pytest.approx(0.1)  # over everything there is


def test_the_history_keeps_readings_spaced_and_bounded() -> None:
    clock = Clock()
    history = History("1m", from_zero=True, clock=clock)
    assert history.every == 5.0
    for i in range(1000):
        clock.now += 1
        history.figures(_reading(clock.now, i, 0, i))
    assert len(history._readings) <= 91
    times = [reading.at for reading in history._readings]
    assert all(b - a >= history.every for a, b in zip(times, times[1:]))


def test_charts_have_a_point_per_kept_interval() -> None:
    clock = Clock()
    history = History("1m", from_zero=True, clock=clock)
    for i in range(1, 5):
        clock.now += 10
        (route,), _ = history.figures(_reading(clock.now, 10 * i, 0, 10 * i))
    points = route.rate_chart.points.split()
    assert len(points) == 2 * 4  # each interval a level step
    assert route.rate_chart.peak == pytest.approx(1.0)
    assert all(0 <= float(p.split(",")[0]) <= 120 for p in points)


def test_a_reset_counts_from_zero_again() -> None:
    clock = Clock()
    history = History("1m", from_zero=True, clock=clock)
    clock.now += 60
    history.figures(_reading(clock.now, 500, 0, 500))
    clock.now += 60
    (route,), _ = history.figures(_reading(clock.now, 20, 0, 20))  # a restart
    assert route.requests == 20


def test_saturation_gauges_pair_pools_with_their_limits() -> None:
    from prometheus_client.metrics_core import GaugeMetricFamily

    in_use = GaugeMetricFamily("db_pool_connections_in_use", "", labels=["pool"])
    in_use.add_metric(["orders"], 9)
    limit = GaugeMetricFamily("db_pool_connections_max", "", labels=["pool"])
    limit.add_metric(["orders"], 10)
    depth = GaugeMetricFamily("app_queue_depth", "", labels=["queue"])
    depth.add_metric(["jobs"], 4)
    gauges = saturation_gauges([in_use, limit, depth])
    pool = next(g for g in gauges if g.kind == "pool")
    assert (pool.name, pool.value, pool.limit, pool.ratio) == ("orders", 9, 10, 0.9)
    assert any(g.kind == "queue" and g.name == "jobs" and g.value == 4 for g in gauges)


def _settings(**config: Any) -> Any:
    app = Flask("shop")
    app.config.update(config)
    return load_settings(app.config, app_name="shop", overrides={})


def _route(endpoint: str, requests: float, errors: float, p99: float) -> RouteFigures:
    return RouteFigures("GET", endpoint, requests, 1.0, errors / requests, 0.01, 0.02, p99)


def test_alert_conditions_hold_on_the_figures_with_the_rules_thresholds() -> None:
    settings = _settings(OBSERVE_ALERT_IN_FLIGHT_MAX=5)
    routes = [_route("/a", 90, 9, 0.1), _route("/b", 10, 0, 3.0)]
    gauges = [Gauge("pool", "orders", 9, 10), Gauge("requests", "in flight", 2)]
    alerts = {(a.name, a.condition): a for a in alerts_now(settings, routes, gauges)}
    by_name = {}
    for (name, _condition), alert in alerts.items():
        by_name.setdefault(name, []).append(alert)
    (error_rate,) = by_name["HighErrorRate"]
    assert error_rate.holds is True  # 9 of 100 > 5%
    (latency,) = by_name["HighLatencyP99"]
    assert latency.holds is True
    assert "/b" in latency.detail
    assert "/a" not in latency.detail
    pool, in_flight = by_name["SaturationHigh"]
    assert pool.holds is True  # 90% > 80%
    assert in_flight.holds is False
    (drop,) = by_name["TrafficDrop"]
    assert drop.holds is None  # not evaluated, and says so
    assert "not evaluated" in drop.detail


def test_without_requests_no_condition_is_said_to_hold() -> None:
    alerts = alerts_now(_settings(), [], [])
    assert all(alert.holds is None for alert in alerts)
