"""The generated Prometheus rules: promtool accepts them, and its unit tests, written here
from synthetic series, prove that each alert fires where it should and nowhere else."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from flask_observe import _yaml
from flask_observe.config import Settings
from flask_observe.rules import (
    ALERTS,
    alerting_rules,
    alertmanager_config,
    alertmanager_yaml,
    rule_groups,
    rules_yaml,
    slow_bound,
)

from .conftest import make_app, require_binary, run_checked

JOB = "shop"
INSTANCE = "10.0.0.1:5000"
ROUTE = {"method": "GET", "endpoint": "/orders/<int:order_id>"}
#: The default latency bounds, the threshold of 2 s among them.
LES = ("0.01", "0.05", "0.1", "0.25", "0.5", "1.0", "2.0", "2.5", "5.0", "+Inf")


def _settings(**config: Any) -> Settings:
    """The settings of the test app with *config*, on a registry of its own."""
    settings: Settings = make_app(CollectorRegistry(), **config).extensions["observe"].settings
    return settings


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    labels = {"job": JOB, "instance": INSTANCE, **labels}
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def counter(*segments: tuple[int, int], start: int = 100_000) -> str:
    """promtool's expanding notation for a counter sampled every minute: each segment is
    ``(minutes, increase per minute)``. A large start keeps ``rate()`` from clamping its
    extrapolation at zero, so the ratios of two counters come out exact."""
    parts, value = [], start
    for index, (minutes, step) in enumerate(segments):
        if index == 0:
            parts.append(f"{value}+{step}x{minutes}")
        else:
            parts.append(f"{value + step}+{step}x{minutes - 1}")
        value += step * minutes
    return " ".join(parts)


def requests(ok: tuple[tuple[int, int], ...], errors: tuple[tuple[int, int], ...]) -> list[Any]:
    """``http_requests_total`` of one route: 200s and 500s per minute, by segment."""
    return [
        _series("http_requests_total", counter(*ok), **ROUTE, status="200"),
        _series("http_requests_total", counter(*errors), **ROUTE, status="500"),
    ]


def _rule(settings: Settings, name: str, **labels: str) -> dict[str, Any]:
    (rule,) = [
        r
        for group in rule_groups(settings)["groups"]
        for r in group["rules"]
        if r.get("alert") == name and labels.items() <= r["labels"].items()
    ]
    return rule


def expected(
    settings: Settings, name: str, value: str, *, rule_labels: Any = None, **labels: str
) -> dict[str, Any]:
    """The alert promtool must report: its labels, and its annotations with the labels and
    *value* (as the template formats it) filled in."""
    rule = _rule(settings, name, **(rule_labels or {}))
    every = {"job": JOB, **labels}

    def fill(text: str) -> str:
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: every[m.group(1)], text)
        return re.sub(r"\{\{ \$value[^}]*\}\}", value, text)

    return {
        "exp_labels": {"alertname": name, **rule["labels"], **every},
        "exp_annotations": {k: fill(v) for k, v in rule["annotations"].items()},
    }


def promtool_test(
    tmp_path: Path, settings: Settings, tests: list[dict[str, Any]], every: str = "1m"
) -> None:
    """Run promtool's rule unit tests *tests* against the app's generated rules, evaluated
    *every* so often."""
    promtool = require_binary("promtool")
    (tmp_path / "rules.yml").write_text(rules_yaml(settings))
    document = {"rule_files": ["rules.yml"], "evaluation_interval": every, "tests": tests}
    (tmp_path / "tests.yml").write_text(_yaml.dump(document))
    run_checked(promtool, "test", "rules", "tests.yml", cwd=str(tmp_path))


def case(series: list[Any], *checks: tuple[str, str, list[Any]]) -> dict[str, Any]:
    """One promtool test group: *series* every minute, and ``(eval_time, alertname,
    exp_alerts)`` checks."""
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": at, "alertname": name, "exp_alerts": alerts}
            for at, name, alerts in checks
        ],
    }


# -- promtool check rules --


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"OBSERVE_SLO_AVAILABILITY": 0.999, "OBSERVE_ALERT_IN_FLIGHT_MAX": 64},
        {
            "OBSERVE_RULES_SELECTOR": 'namespace="prod", job=~"shop|shop-canary"',
            "OBSERVE_RUNBOOK_URL": "https://wiki.example.com/runbooks#{alertname}",
            "OBSERVE_ALERT_ERROR_FOR": "5s",
            "OBSERVE_ALERT_LATENCY_SECONDS": 0.3,
            "OBSERVE_ALERT_TRAFFIC_DROP_OFFSET": "1w",
            "OBSERVE_SLO_AVAILABILITY": 0.99,
        },
        {"OBSERVE_SERVICE_NAME": 'odd "name"', "OBSERVE_BUCKETS": [0.1, 1.5, 3.0]},
    ],
)
def test_promtool_accepts_the_rules(tmp_path: Path, config: dict[str, Any]) -> None:
    promtool = require_binary("promtool")
    settings = _settings(**config)
    path = tmp_path / "rules.yml"
    path.write_text(rules_yaml(settings))
    assert "SUCCESS" in run_checked(promtool, "check", "rules", str(path))
    assert yaml.safe_load(path.read_text()) == rule_groups(settings)


def test_rule_names_follow_level_metric_operations() -> None:
    settings = _settings(OBSERVE_SLO_AVAILABILITY=0.999)
    records = [
        r["record"] for g in rule_groups(settings)["groups"] for r in g["rules"] if "record" in r
    ]
    assert len(records) == len(set(records))
    for name in records:
        level, metric, operations = name.split(":")
        assert level in ("service", "service_endpoint", "service_peer")
        assert metric.startswith("http_")
        assert re.fullmatch(r"(rate|ratio_rate|p\d\d_)\w+", operations), name
    assert "service:http_requests:rate5m" in records
    assert "service_endpoint:http_request_duration_seconds:p99_5m" in records
    assert "service:http_request_errors_per_requests:ratio_rate3d" in records
    assert "service_peer:http_client_request_duration_seconds:p99_5m" in records


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    settings = _settings(
        OBSERVE_SLO_AVAILABILITY=0.999,
        OBSERVE_ALERT_IN_FLIGHT_MAX=64,
        OBSERVE_RUNBOOK_URL="https://wiki.example.com/runbooks/shop#{alertname}",
    )
    alerts = [r for g in rule_groups(settings)["groups"] for r in g["rules"] if "alert" in r]
    assert {a["alert"] for a in alerts} == set(ALERTS)
    for alert in alerts:
        assert alert["labels"]["severity"] == ALERTS[alert["alert"]]
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}
        assert alert["annotations"]["runbook_url"].endswith("#" + alert["alert"])
    assert "runbook_url" not in alerting_rules(_settings())[0]["annotations"]


def test_thresholds_come_from_the_config() -> None:
    settings = _settings(
        OBSERVE_ALERT_ERROR_RATIO=0.02,
        OBSERVE_ALERT_ERROR_FOR="5s",
        OBSERVE_ALERT_LATENCY_SECONDS=0.75,
        OBSERVE_ALERT_TRAFFIC_DROP_OFFSET="1d",
    )
    error = _rule(settings, "HighErrorRate")
    assert error["expr"].endswith("> 0.02")
    assert error["for"] == "5s"
    assert "2%" in error["annotations"]["description"]
    latency = _rule(settings, "HighLatencyP99")
    assert latency["expr"].endswith("> 0.75")
    assert "0.75s" in latency["annotations"]["description"]
    assert "offset 1d" in _rule(settings, "TrafficDrop")["expr"]


def test_slower_than_threshold_counts_from_the_threshold_bucket() -> None:
    assert slow_bound(_settings()) == 2.0
    assert slow_bound(_settings(OBSERVE_ALERT_LATENCY_SECONDS=0.3)) == 0.3
    # Not a bound of custom buckets: the next bound above, else the highest one.
    assert slow_bound(_settings(OBSERVE_BUCKETS=[0.5, 1.0, 5.0])) == 5.0
    assert slow_bound(_settings(OBSERVE_BUCKETS=[0.5, 1.0])) == 1.0


# -- promtool test rules: each alert fires, and does not fire, where it should --


def test_high_error_rate_fires_at_6_percent_not_at_4(tmp_path: Path) -> None:
    settings = _settings()
    six = expected(settings, "HighErrorRate", "6%")
    assert six["exp_annotations"]["description"] == (
        "6% of the requests to shop over the last 5 minutes ended with a 5xx status, above "
        "the threshold of 5% (OBSERVE_ALERT_ERROR_RATIO) for 2m (OBSERVE_ALERT_ERROR_FOR)."
    )
    promtool_test(
        tmp_path,
        settings,
        [
            case(
                requests(ok=((10, 94),), errors=((10, 6),)),
                ("2m", "HighErrorRate", []),  # pending: 2 minutes are not over yet
                ("3m", "HighErrorRate", [six]),
            ),
            case(
                requests(ok=((10, 96),), errors=((10, 4),)),
                ("3m", "HighErrorRate", []),
                ("10m", "HighErrorRate", []),
            ),
            # No 5xx series at all, and no traffic at all: no alert, no division by zero.
            case(
                [_series("http_requests_total", counter((10, 100)), **ROUTE, status="200")],
                ("5m", "HighErrorRate", []),
            ),
            case(requests(ok=((10, 0),), errors=((10, 0),)), ("5m", "HighErrorRate", [])),
        ],
    )


def _latency_series(le_from: str, per_minute: int = 60) -> list[Any]:
    """One route whose requests all fall in the bucket ``le_from`` and above."""
    first = LES.index(le_from)
    return [
        _series(
            "http_request_duration_seconds_bucket",
            counter((10, per_minute if i >= first else 0)),
            **ROUTE,
            le=le,
        )
        for i, le in enumerate(LES)
    ] + [_series("http_requests_total", counter((10, per_minute)), **ROUTE, status="200")]


def test_high_latency_p99_fires_at_2_5_seconds_not_at_1_5(tmp_path: Path) -> None:
    settings = _settings()
    # Every request in (2, 2.5]: p99 interpolates to 2.495 s.
    slow = expected(settings, "HighLatencyP99", "2.495s", **ROUTE)
    promtool_test(
        tmp_path,
        settings,
        [
            case(
                _latency_series("2.5"),
                ("5m", "HighLatencyP99", []),
                ("6m", "HighLatencyP99", [slow]),
            ),
            # Every request in (1, 2]: p99 is 1.99 s, under the threshold.
            case(
                _latency_series("2.0"),
                ("6m", "HighLatencyP99", []),
                ("10m", "HighLatencyP99", []),
            ),
        ],
    )


def test_traffic_drop_fires_below_half_and_never_for_traffic_that_was_zero(tmp_path: Path) -> None:
    settings = _settings()

    def traffic(*segments: tuple[int, int]) -> list[Any]:
        return [_series("http_requests_total", counter(*segments), **ROUTE, status="200")]

    promtool_test(
        tmp_path,
        settings,
        [
            # 100 a minute for 90 minutes, then 45: 0.75 requests/s, under half of 1.67.
            case(
                traffic((90, 100), (30, 45)),
                ("90m", "TrafficDrop", []),
                ("110m", "TrafficDrop", [expected(settings, "TrafficDrop", "0.75")]),
            ),
            # Down to 55 a minute: more than half, no alert.
            case(traffic((90, 100), (30, 55)), ("110m", "TrafficDrop", [])),
            # No traffic, ever: it cannot drop.
            case(traffic((120, 0)), ("110m", "TrafficDrop", [])),
            # The series stop (the app is gone): zero now where there was traffic.
            case(
                [_series("http_requests_total", "100000+100x90", **ROUTE, status="200")],
                ("110m", "TrafficDrop", [expected(settings, "TrafficDrop", "0.00")]),
            ),
        ],
    )


def test_saturation_fires_at_90_percent_of_the_pool_not_at_70(tmp_path: Path) -> None:
    settings = _settings(OBSERVE_ALERT_IN_FLIGHT_MAX=50)

    def pool(in_use: int, size: int) -> list[Any]:
        return [
            _series("db_pool_connections_in_use", f"{in_use}+0x10", pool="default"),
            _series("db_pool_connections_max", f"{size}+0x10", pool="default"),
        ]

    def in_flight(count: int) -> list[Any]:
        return [_series("http_requests_in_progress", f"{count}+0x10", **ROUTE)]

    db = {"resource": "db_pool"}
    busy = {"resource": "in_flight"}
    full = expected(
        settings, "SaturationHigh", "90%", rule_labels=db, instance=INSTANCE, pool="default"
    )
    crowded = expected(settings, "SaturationHigh", "60", rule_labels=busy, instance=INSTANCE)
    promtool_test(
        tmp_path,
        settings,
        [
            case(pool(9, 10), ("4m", "SaturationHigh", []), ("6m", "SaturationHigh", [full])),
            case(pool(7, 10), ("6m", "SaturationHigh", [])),
            case(pool(0, 0), ("6m", "SaturationHigh", [])),  # no pool size: no division
            case(in_flight(60), ("6m", "SaturationHigh", [crowded])),
            case(in_flight(40), ("6m", "SaturationHigh", [])),
        ],
    )


def test_burn_rate_pairs_need_both_windows_above_the_rate(tmp_path: Path) -> None:
    """SLO 99%, an error budget of 1%, 1000 requests a minute: the page pairs are 14.4x over
    1h and 5m, 6x over 6h and 30m; the ticket pairs 3x over 1d and 2h, 1x over 3d and 6h."""
    settings = _settings(OBSERVE_SLO_AVAILABILITY=0.99)

    def errors(*segments: tuple[int, int]) -> list[Any]:
        """Segments of (minutes, errors per thousand requests)."""
        return requests(ok=tuple((m, 1000 - e) for m, e in segments), errors=segments)

    def fast(value: str) -> list[Any]:
        return [expected(settings, "ErrorBudgetBurnFast", value)]

    def slow(value: str) -> list[Any]:
        return [expected(settings, "ErrorBudgetBurnSlow", value)]

    promtool_test(
        tmp_path,
        settings,
        [
            # 5 clean hours, then 15% errors for an hour: 15x over 1h and 5m pages; over 6h
            # it is 2.5x, so the 6h/30m pair does not, and 3d/6h (2.5x) opens a ticket.
            case(
                errors((300, 0), (60, 150), (10, 0)),
                ("6h", "ErrorBudgetBurnFast", fast("15")),
                ("6h", "ErrorBudgetBurnSlow", slow("2.5")),
                # Ten minutes after the errors stopped the 5m window is clean: no page,
                # although the 1h window is still above 14.4x.
                ("6h10m", "ErrorBudgetBurnFast", []),
            ),
            # 14% for an hour: just under 14.4x, and 2.33x over 6h: no page.
            case(errors((300, 0), (60, 140)), ("6h", "ErrorBudgetBurnFast", [])),
            # 6.5% for 6 hours: over 6x in 6h and 30m, under 14.4x: the second page pair.
            case(errors((360, 65)), ("6h", "ErrorBudgetBurnFast", fast("6.5"))),
            case(errors((360, 55)), ("6h", "ErrorBudgetBurnFast", [])),
            # 3.5% for a day: over 3x in 1d and 2h (the value is the 1d pair's).
            case(
                errors((1440, 35)),
                ("1d", "ErrorBudgetBurnSlow", slow("3.5")),
                ("1d", "ErrorBudgetBurnFast", []),
            ),
            # 1.1% opens a ticket through 3d/6h (a day of data fills the 3d window as far
            # as it goes); 0.9% does not.
            case(errors((1440, 11)), ("1d", "ErrorBudgetBurnSlow", slow("1.1"))),
            case(errors((1440, 9)), ("1d", "ErrorBudgetBurnSlow", [])),
        ],
        # No burn-rate alert waits a `for`: evaluating every 5 minutes loses nothing, and
        # takes a fifth of the time over a day of series.
        every="5m",
    )


PEER = {"peer": "inventory:8080"}


def _calls(**per_minute: int) -> list[Any]:
    """``http_client_requests_total`` to one peer: calls a minute by status, for 10 minutes."""
    return [
        _series("http_client_requests_total", counter((10, count)), method="GET", **PEER, status=s)
        for s, count in per_minute.items()
    ]


def _call_latency(le_from: str) -> list[Any]:
    """60 calls a minute to one peer, all in the bucket ``le_from`` and above."""
    first = LES.index(le_from)
    return [
        _series(
            "http_client_request_duration_seconds_bucket",
            counter((10, 60 if i >= first else 0)),
            method="GET",
            **PEER,
            le=le,
        )
        for i, le in enumerate(LES)
    ] + _calls(**{"200": 60})


def test_dependency_alert_fires_on_failed_calls_not_on_4xx(tmp_path: Path) -> None:
    """10% of the calls refused or answered with a 503 fire it; 40% of 404s do not."""
    settings = _settings(OBSERVE_ALERT_DEPENDENCY_ERROR_RATIO=0.08)
    errors = {"signal": "errors"}
    failing = expected(settings, "DependencyDegraded", "10%", rule_labels=errors, **PEER)
    assert failing["exp_annotations"]["description"] == (
        "10% of the calls shop made to inventory:8080 over the last 5 minutes got a 5xx or no "
        "response, above the threshold of 8% (OBSERVE_ALERT_DEPENDENCY_ERROR_RATIO) for 5m "
        "(OBSERVE_ALERT_DEPENDENCY_FOR)."
    )
    promtool_test(
        tmp_path,
        settings,
        [
            case(
                _calls(**{"200": 90, "503": 5, "ConnectError": 5}),
                ("5m", "DependencyDegraded", []),  # pending
                ("7m", "DependencyDegraded", [failing]),
            ),
            case(
                _calls(**{"200": 95, "503": 3, "ConnectError": 2}), ("8m", "DependencyDegraded", [])
            ),
            case(_calls(**{"200": 60, "404": 40}), ("8m", "DependencyDegraded", [])),
        ],
    )


def test_dependency_alert_fires_on_slow_calls(tmp_path: Path) -> None:
    settings = _settings(OBSERVE_ALERT_DEPENDENCY_LATENCY_SECONDS=1.0)
    slow = expected(
        settings, "DependencyDegraded", "1.99s", rule_labels={"signal": "latency"}, **PEER
    )
    promtool_test(
        tmp_path,
        settings,
        [
            # Every call in (1, 2]: p99 interpolates to 1.99 s, above 1 s.
            case(_call_latency("2.0"), ("7m", "DependencyDegraded", [slow])),
            case(_call_latency("1.0"), ("8m", "DependencyDegraded", [])),
        ],
    )


def test_no_dependency_rules_without_observed_clients() -> None:
    settings = _settings(OBSERVE_HTTP_CLIENTS=[])
    rules = [r for g in rule_groups(settings)["groups"] for r in g["rules"]]
    assert not [r for r in rules if "http_client" in r["expr"]]
    assert "DependencyDegraded" not in {r.get("alert") for r in rules}


# -- the Alertmanager example --


def test_alertmanager_example_routes_every_severity() -> None:
    config = alertmanager_config(_settings())
    receivers = {r["name"] for r in config["receivers"]}
    routed = {r["receiver"] for r in config["route"]["routes"]}
    assert set(ALERTS.values()) <= routed <= receivers
    assert config["route"]["receiver"] in receivers
    assert {"page", "notify", "warn", "ticket"} == receivers


def test_amtool_accepts_the_alertmanager_example(tmp_path: Path) -> None:
    amtool = require_binary("amtool", package="prometheus-alertmanager")
    path = tmp_path / "alertmanager.yml"
    path.write_text(alertmanager_yaml(_settings()))
    assert "SUCCESS" in run_checked(amtool, "check-config", str(path))
