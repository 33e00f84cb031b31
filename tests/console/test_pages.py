"""The pages and their JSON API through the test client: what each shows, that looking at
the console changes nothing it shows, and that hostile input is shown escaped."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from flask_observe import Observe, get_logger, traced

from ..conftest import require_module, serving
from .conftest import ConsoleApp, trace_id_of

SCRIPT = "<script>alert(1)</script>"


def _traffic(app: Flask) -> Any:
    client = app.test_client()
    for i in range(1, 6):
        client.get(f"/orders/{i}")
    client.post("/orders")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client.get("/boom")
    return client


def test_the_routes_api_has_each_route_with_its_quantiles(console_app: ConsoleApp) -> None:
    app = console_app()
    client = _traffic(app)
    data = client.get("/observe/api/routes").get_json()
    routes = {(r["method"], r["endpoint"]): r for r in data["routes"]}
    assert set(routes) == {("GET", "/orders/<int:order_id>"), ("POST", "/orders"), ("GET", "/boom")}
    orders = routes["GET", "/orders/<int:order_id>"]
    assert orders["requests"] == 5
    assert orders["error_ratio"] == 0
    assert 0 < orders["p50"] <= orders["p95"] <= orders["p99"]
    assert routes["GET", "/boom"]["error_ratio"] == 1
    assert data["window"]["configured"] == "5m"
    assert data["worker"]["multiprocess"] is False
    (error_rate,) = [a for a in data["alerts"] if a["name"] == "HighErrorRate"]
    assert error_rate["holds"] is True  # 1 of 7 > 5%


def test_looking_at_the_console_is_never_measured_nor_shown(console_app: ConsoleApp) -> None:
    app = console_app()
    client = _traffic(app)
    for path in ("/observe/", "/observe/traces", "/observe/logs", "/observe/api/routes"):
        assert client.get(path).status_code == 200
    data = client.get("/observe/api/routes").get_json()
    assert not [r for r in data["routes"] if "observe" in r["endpoint"]]
    registry = app.extensions["observe"].registry
    endpoints = {
        sample.labels.get("endpoint")
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "http_requests_total"
    }
    assert not [e for e in endpoints if e and "observe" in e]
    traces = client.get("/observe/api/traces").get_json()["traces"]
    assert not [t for t in traces if "observe" in (t["route"] or "")]
    lines = client.get("/observe/api/logs").get_json()["lines"]
    assert not [line for line in lines if "observe" in str(line.get("path"))]


def test_the_console_is_left_out_of_the_metrics_with_exclusions_of_the_users_own(
    console_app: ConsoleApp,
) -> None:
    app = console_app(OBSERVE_EXCLUDE_PATHS=["/internal"])
    assert "/observe" in app.extensions["observe"].settings.exclude_paths


def test_the_routes_page_shows_routes_health_saturation_and_alerts(
    console_app: ConsoleApp,
) -> None:
    app = console_app()
    client = _traffic(app)
    html = client.get("/observe/").get_data(as_text=True)
    assert "/orders/&lt;int:order_id&gt;" in html
    assert 'class="n p99"' in html
    assert "HighErrorRate" in html
    assert "resident memory" in html
    assert "Process pid" in html


def test_a_health_checks_last_error_shows_after_it_recovers(console_app: ConsoleApp) -> None:
    """A failure a readiness probe saw, not the console, shows on the console after the
    check has passed again."""
    observe = Observe(registry=CollectorRegistry())
    broken = [True]

    def database() -> bool:
        if broken[0]:
            raise ConnectionError("database unreachable")
        return True

    observe.add_health_check("database", database)
    app = console_app(observe=observe, OBSERVE_HEALTH_CACHE_SECONDS=0)
    client = app.test_client()
    assert client.get("/healthz/ready").status_code == 503
    broken[0] = False
    (check,) = client.get("/observe/api/routes").get_json()["health"]["checks"]
    assert check["status"] == "pass"
    assert "database unreachable" in check["last_error"]
    assert check["last_error_at"] is not None
    html = client.get("/observe/").get_data(as_text=True)
    assert "database unreachable" in html


def test_the_routes_page_draws_a_chart_per_route(console_app: ConsoleApp) -> None:
    app = console_app()
    client = _traffic(app)
    html = client.get("/observe/").get_data(as_text=True)
    charts = re.findall(r'<svg class="chart"[^>]*>.*?</svg>', html, re.S)
    assert len(charts) >= 3, html  # one a route and method at least
    assert all("<polyline" in chart for chart in charts)


def test_the_routes_page_offers_a_refresh_of_a_few_choices_only(console_app: ConsoleApp) -> None:
    client = console_app().test_client()
    assert 'http-equiv="refresh" content="10"' in client.get("/observe/?refresh=10").text
    assert "http-equiv" not in client.get("/observe/?refresh=1").text
    assert "http-equiv" not in client.get("/observe/?refresh=x").text


def test_the_traces_list_shows_failed_then_slowest_and_filters(console_app: ConsoleApp) -> None:
    app = console_app()
    client = _traffic(app)
    data = client.get("/observe/api/traces").get_json()
    assert data["traces"][0]["failed"] is True
    assert data["traces"][0]["route"] == "/boom"
    durations = [t["duration_ms"] for t in data["traces"][1:]]
    assert durations == sorted(durations, reverse=True)
    assert "/orders/<int:order_id>" in data["routes"]
    only = client.get("/observe/api/traces?route=/orders").get_json()["traces"]
    assert [t["route"] for t in only] == ["/orders"]
    ok = client.get("/observe/api/traces?status=ok").get_json()["traces"]
    assert ok
    assert not [t for t in ok if t["failed"]]
    page = client.get("/observe/traces?status=error").get_data(as_text=True)
    assert "GET /boom" in page
    assert "GET /orders/&lt;int:order_id&gt;" not in page


def test_a_trace_shows_its_spans_and_its_log_lines(console_app: ConsoleApp) -> None:
    app = console_app()

    @traced("checkout.pay")
    def pay() -> None:
        get_logger("shop").warning("card declined", attempt=2, password="hunter2")

    @app.get("/pay")
    def pay_view() -> str:
        pay()
        return "ok"

    client = app.test_client()
    trace_id = trace_id_of(client.get("/pay"))
    data = client.get(f"/observe/api/traces/{trace_id}").get_json()
    assert [(s["name"], s["depth"]) for s in data["spans"]] == [
        ("GET /pay", 0),
        ("checkout.pay", 1),
    ]
    request = data["spans"][0]
    assert request["attributes"]["http.route"] == "/pay"
    assert request["bar"] == {"x": 0.0, "width": 1000.0}
    events = [line["event"] for line in data["logs"]]
    assert events == ["card declined", "request"]
    assert data["logs"][0]["password"] == "[REDACTED]"
    html = client.get(f"/observe/traces/{trace_id.upper()}").get_data(as_text=True)
    assert "checkout.pay" in html
    assert "card declined" in html
    assert "hunter2" not in html


def test_an_exemplars_link_opens_its_trace_on_the_console(console_app: ConsoleApp) -> None:
    # Without a trace backend, OBSERVE_TRACE_URL_TEMPLATE may point at the trace page: the
    # trace ID of a latency bucket's exemplar then opens that request's trace.
    template = "http://127.0.0.1:5000/observe/traces/{trace_id}"
    app = console_app(OBSERVE_TRACE_URL_TEMPLATE=template)
    client = app.test_client()
    response = client.get("/orders/9")
    body = client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    ).get_data(as_text=True)
    (family,) = [f for f in parse_openmetrics(body) if f.name == "http_request_duration_seconds"]
    (exemplar,) = [s.exemplar for s in family.samples if s.exemplar is not None]
    trace_id = exemplar.labels["trace_id"]
    assert trace_id == trace_id_of(response)
    url = urlsplit(template.format(trace_id=trace_id))
    page = client.get(url.path)
    assert page.status_code == 200
    assert "GET /orders/&lt;int:order_id&gt;" in page.get_data(as_text=True)


def test_a_trace_shows_an_outgoing_calls_span_under_its_request(console_app: ConsoleApp) -> None:
    requests = require_module("requests")
    backend = Flask("inventory")

    @backend.get("/stock")
    def stock() -> str:
        return "12"

    with serving(backend) as port:
        app = console_app()

        @app.get("/check")
        def check() -> str:
            return str(requests.get(f"http://127.0.0.1:{port}/stock", timeout=5).text)

        client = app.test_client()
        response = client.get("/check")
        assert response.get_data(as_text=True) == "12"
        data = client.get(f"/observe/api/traces/{trace_id_of(response)}").get_json()
    (call,) = [span for span in data["spans"] if span["kind"] == "CLIENT"]
    assert call["depth"] == 1
    assert call["attributes"]["http.response.status_code"] == 200


def test_span_attributes_are_redacted(console_app: ConsoleApp) -> None:
    app = console_app()

    @app.get("/login")
    def login() -> str:
        from opentelemetry import trace

        trace.get_current_span().set_attribute("app.api_key", "k-123")
        return "ok"

    client = app.test_client()
    trace_id = trace_id_of(client.get("/login"))
    (span,) = client.get(f"/observe/api/traces/{trace_id}").get_json()["spans"]
    assert span["attributes"]["app.api_key"] == "[REDACTED]"
    assert "k-123" not in client.get(f"/observe/traces/{trace_id}").text


@pytest.mark.parametrize("trace_id", ["0" * 32, "zz", "a" * 33])
def test_a_trace_not_kept_is_a_404_saying_why(console_app: ConsoleApp, trace_id: str) -> None:
    client = console_app().test_client()
    page = client.get(f"/observe/traces/{trace_id}")
    assert page.status_code == 404
    assert "OBSERVE_CONSOLE_SPANS" in page.text
    api = client.get(f"/observe/api/traces/{trace_id}")
    assert api.status_code == 404
    assert "error" in api.get_json()


def test_the_logs_filter_by_level_request_and_trace(console_app: ConsoleApp) -> None:
    app = console_app()
    client = _traffic(app)
    errors = client.get("/observe/api/logs?level=ERROR").get_json()["lines"]
    assert {line["level"] for line in errors} == {"error"}
    response = client.get("/orders/9")
    request_id = response.headers["X-Request-ID"]
    by_request = client.get(f"/observe/api/logs?request_id={request_id}").get_json()["lines"]
    assert [line["path"] for line in by_request] == ["/orders/9"]
    trace_id = trace_id_of(response)
    by_trace = client.get(f"/observe/api/logs?trace_id={trace_id}").get_json()["lines"]
    assert [line["request_id"] for line in by_trace] == [request_id]
    newest_first = client.get("/observe/api/logs").get_json()["lines"]
    assert newest_first[0]["path"] == "/orders/9"


def test_hostile_input_is_shown_escaped_on_every_page(console_app: ConsoleApp) -> None:
    app = console_app()

    @app.get("/echo/<path:anything>")
    def echo(anything: str) -> str:
        get_logger("shop").info(SCRIPT, field=SCRIPT, **{SCRIPT: "key"})
        return "ok"

    client = app.test_client()
    response = client.get(f"/echo/{SCRIPT}", headers={"User-Agent": SCRIPT})
    trace_id = trace_id_of(response)
    pages = [
        "/observe/",
        "/observe/traces",
        f"/observe/traces/{trace_id}",
        "/observe/logs",
        f"/observe/logs?request_id={SCRIPT}&trace_id={SCRIPT}&level={SCRIPT}",
        f"/observe/traces?route={SCRIPT}&status={SCRIPT}",
        f"/observe/traces/{SCRIPT}",
    ]
    for path in pages:
        html = client.get(path).get_data(as_text=True)
        assert "<script" not in html, path
    assert "&lt;script&gt;" in client.get(f"/observe/traces/{trace_id}").text
    assert "&lt;script&gt;" in client.get("/observe/logs").text
