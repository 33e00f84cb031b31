"""The generated Grafana dashboard: it loads, its queries are valid PromQL for promtool,
and they name only metrics the app exports or the generated rules record."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, ProcessCollector

from flask_observe import _yaml
from flask_observe.config import Settings
from flask_observe.dashboard import SCHEMA_VERSION, dashboard, dashboard_json, panel_queries
from flask_observe.rules import rule_groups

from .conftest import make_app, require_binary, run_checked, scrape

#: Saturation gauges of the contract (DESIGN.md) that a later release exports.
CONTRACT_GAUGES = {"db_pool_connections_in_use", "db_pool_connections_max", "app_queue_depth"}
_KEYWORDS = {"by", "without", "on", "ignoring", "offset", "bool", "and", "or", "unless"}


def _settings(**config: Any) -> Settings:
    settings: Settings = make_app(CollectorRegistry(), **config).extensions["observe"].settings
    return settings


def _as_promql(expr: str) -> str:
    """A panel query with Grafana's variables replaced by what they stand for."""
    return expr.replace("$__rate_interval", "5m").replace("$job", "shop").replace("$instance", ".+")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: what is left once strings, label matchers,
    ranges, grouping clauses, function calls, keywords and numbers are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\b\d[\w.]*", " ", expr)  # numbers and durations (1h, 0.99)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*(?!\s*\(|[A-Za-z0-9_:])", expr))
    return names - _KEYWORDS


def _exported_names() -> set[str]:
    """Sample names the test app serves, with the process collector of a default
    registry, after a request."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    app = make_app(registry)
    client = app.test_client()
    client.get("/orders/1")
    client.get("/boom")
    with app.app_context(), contextlib.suppress(requests.ConnectionError):
        requests.get("http://127.0.0.1:1/", timeout=5)  # refused: a call's series
    return {s.name for family in scrape(client).values() for s in family.samples}


@pytest.fixture
def full() -> dict[str, Any]:
    return dashboard(
        _settings(
            OBSERVE_SLO_AVAILABILITY=0.999,
            OBSERVE_ALERT_IN_FLIGHT_MAX=64,
            OBSERVE_TRACE_URL_TEMPLATE="https://tempo.example.com/trace/{trace_id}",
        )
    )


def test_the_dashboard_loads_as_json_with_its_rows_and_variables() -> None:
    board = json.loads(dashboard_json(_settings()))
    assert board["schemaVersion"] == SCHEMA_VERSION
    assert board["uid"] == "flask-observe-shop"
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "job", "instance"]
    assert 'flask_observe_info{service="shop"}' in board["templating"]["list"][1]["definition"]
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Traffic", "Errors", "Latency", "Saturation", "Dependencies"]
    without_clients = dashboard(_settings(OBSERVE_HTTP_CLIENTS=[]))
    assert "Dependencies" not in {p["title"] for p in without_clients["panels"]}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
    assert {p["type"] for p in board["panels"]} == {"row", "timeseries", "heatmap"}


def test_every_query_is_valid_promql(full: dict[str, Any], tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    queries = panel_queries(full)
    assert len(queries) > 15
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": _as_promql(q)}
        for i, q in enumerate(queries)
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(_yaml.dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_checked(promtool, "check", "rules", str(path))


def test_queries_name_only_exported_or_recorded_metrics(full: dict[str, Any]) -> None:
    settings = _settings(OBSERVE_SLO_AVAILABILITY=0.999)
    recorded = {
        r["record"] for g in rule_groups(settings)["groups"] for r in g["rules"] if "record" in r
    }
    known = _exported_names() | CONTRACT_GAUGES | recorded
    assert "process_cpu_seconds_total" in known
    used = set().union(*(metric_names(q) for q in panel_queries(full)))
    assert used <= known, used - known
    # The saturation row shows what the design names: pool, queue, in flight, CPU, memory.
    assert (
        CONTRACT_GAUGES
        | {
            "http_requests_in_progress",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
        }
        <= used
    )
    assert "service:http_request_errors_per_requests:ratio_rate1h" in used
    assert "http_client_request_duration_seconds_bucket" in used


def test_metric_names_sees_through_promql_syntax() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, method) (rate(a_bucket{job=~"$job"}[5m])))\n'
        "/ on (job) (b:c:rate5m > 0) or vector(0) * d offset 1h"
    )
    assert metric_names(expr) == {"a_bucket", "b:c:rate5m", "d"}


def _panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    (panel,) = [p for p in board["panels"] if p["title"] == title]
    return panel


def _lines(panel: dict[str, Any]) -> list[float]:
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"] == {"mode": "line"}
    return [step["value"] for step in defaults["thresholds"]["steps"][1:]]


def test_alert_thresholds_are_drawn_as_lines() -> None:
    board = dashboard(
        _settings(
            OBSERVE_ALERT_LATENCY_SECONDS=0.75,
            OBSERVE_ALERT_ERROR_RATIO=0.02,
            OBSERVE_ALERT_SATURATION_RATIO=0.9,
            OBSERVE_ALERT_IN_FLIGHT_MAX=32,
        )
    )
    assert _lines(_panel(board, "Latency p50 / p95 / p99 by route")) == [0.75]
    assert _lines(_panel(board, "5xx ratio")) == [0.02]
    assert _lines(_panel(board, "Database pool in use")) == [0.9]
    assert _lines(_panel(board, "Requests in flight")) == [32.0]
    assert _lines(_panel(board, "Failed calls by peer")) == [0.02]
    assert _lines(_panel(board, "Call latency p99 by peer")) == [0.75]
    assert 'le="0.75"' in _panel(board, "Requests slower than 0.75s")["targets"][0]["expr"]
    drop = _panel(board, "Traffic against the TrafficDrop line")["targets"][1]["expr"]
    assert drop.startswith("0.5 * ")
    assert "offset 1h" in drop


def test_burn_rate_panel_only_with_an_slo(full: dict[str, Any]) -> None:
    assert _lines(_panel(full, "Error budget burn rate")) == [1.0, 3.0, 6.0, 14.4]
    titles = {p["title"] for p in dashboard(_settings())["panels"]}
    assert "Error budget burn rate" not in titles


def test_exemplars_link_to_the_trace_backend_when_a_template_is_set(
    full: dict[str, Any],
) -> None:
    for title in (
        "Latency p50 / p95 / p99 by route",
        "Latency distribution",
        "Call latency p99 by peer",
    ):
        panel = _panel(full, title)
        assert any(t.get("exemplar") for t in panel["targets"])
        (override,) = panel["fieldConfig"]["overrides"]
        assert override["matcher"] == {"id": "byName", "options": "trace_id"}
        (link,) = override["properties"][0]["value"]
        assert link["url"] == "https://tempo.example.com/trace/${__value.raw}"
    plain = dashboard(_settings())
    assert _panel(plain, "Latency distribution")["fieldConfig"]["overrides"] == []
