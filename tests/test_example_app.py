"""The example order service: its API, its failure injection, and the metrics it moves."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

import flask_observe
from example_app import create_app, load
from example_app.__main__ import banner
from example_app.inventory import create_inventory_app
from example_app.settings import (
    DEFAULT_DELAYS,
    DEFAULT_FAILURE_RATES,
    DEFAULT_WAREHOUSE_DELAY,
    STEPS,
    default_database_url,
    delay_name,
    failure_rate_name,
    load_settings,
)

from .conftest import Spans, log_lines, sample_value, scrape, serving

AppFactory = Callable[..., Flask]

#: The function labels the checkout records under.
PROCESS_ORDER = "example_app.checkout.process_order"
STEP_LABELS = {step: f"example_app.checkout.{step}" for step in STEPS}

#: Every step instant and reliable, and no simulated bug.
QUIET: dict[str, Any] = {
    **{delay_name(step): 0 for step in STEPS},
    **{failure_rate_name(step): 0 for step in STEPS},
    "EXAMPLE_BUG_RATE": 0,
    "EXAMPLE_WAREHOUSE_DELAY": 0,
}

ORDER = {
    "user_id": 7,
    "items": [{"sku": "MUG-0042", "quantity": 2}, {"sku": "PEN-0007", "quantity": 1}],
    "total_cents": 2550,
}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


class DrainingClient(FlaskClient):
    """A test client that waits for the background jobs each request queued, so that they
    run, and log, inside the test rather than after it."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        self.application.extensions["example_app"].jobs.drain()
        return response


@pytest.fixture
def make_app(tmp_path: Path, registry: CollectorRegistry, spans: Spans) -> Iterator[AppFactory]:
    """``make_app(**config)``: the service on a fresh database, registry and tracer provider,
    quiet by default."""
    apps: list[Flask] = []

    def factory(**config: Any) -> Flask:
        settings = {**QUIET, "EXAMPLE_DATABASE_URL": f"sqlite:///{tmp_path / 'shop.sqlite3'}"}
        app = create_app({**settings, **config}, registry=registry, tracer_provider=spans.provider)
        app.test_client_class = DrainingClient
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["example_app"].jobs.stop()
        app.extensions["example_app"].database.dispose()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def requests_total(registry: CollectorRegistry, method: str, endpoint: str, status: int) -> float:
    labels = {"method": method, "endpoint": endpoint, "status": str(status)}
    return registry.get_sample_value("http_requests_total", labels) or 0.0


def calls(registry: CollectorRegistry, function: str, outcome: str) -> float:
    """How many calls of *function* ``app_function_duration_seconds`` has seen."""
    labels = {"function": function, "outcome": outcome}
    return registry.get_sample_value("app_function_duration_seconds_count", labels) or 0.0


def statuses_recorded(registry: CollectorRegistry) -> dict[str, float]:
    """``http_requests_total`` summed by status over every method and endpoint."""
    totals: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "http_requests_total":
                status = sample.labels["status"]
                totals[status] = totals.get(status, 0.0) + sample.value
    return totals


# -- the API --


def test_create_then_read_an_order(client: FlaskClient, registry: CollectorRegistry) -> None:
    response = client.post("/orders", json=ORDER)
    assert response.status_code == 201, response.get_json()
    order = response.get_json()
    assert order["id"] >= 1
    assert order["user_id"] == 7
    assert order["items"] == ORDER["items"]
    assert order["total_cents"] == 2550
    assert order["status"] == "confirmed"
    assert order["created_at"].endswith("Z")
    assert response.headers["Location"] == f"/orders/{order['id']}"

    read = client.get(f"/orders/{order['id']}")
    assert read.status_code == 200
    assert read.get_json() == order

    assert requests_total(registry, "POST", "/orders", 201) == 1
    assert requests_total(registry, "GET", "/orders/<int:order_id>", 200) == 1
    assert calls(registry, PROCESS_ORDER, "success") == 1
    for label in STEP_LABELS.values():
        assert calls(registry, label, "success") == 1
    parsed = {"function": "example_app.orders.parse_order", "outcome": "success"}
    assert registry.get_sample_value("app_function_calls_total", parsed) == 1
    info = {"service": "shop", "version": flask_observe.__version__}
    assert registry.get_sample_value("flask_observe_info", info) == 1


def test_list_orders_newest_first(client: FlaskClient) -> None:
    ids = [client.post("/orders", json=ORDER).get_json()["id"] for _ in range(3)]
    listed = client.get("/orders?limit=2")
    assert listed.status_code == 200
    assert [o["id"] for o in listed.get_json()["orders"]] == ids[::-1][:2]
    everything = client.get("/orders").get_json()
    assert everything["limit"] == 20
    assert [o["id"] for o in everything["orders"]] == ids[::-1]


@pytest.mark.parametrize("limit", ["0", "101", "ten", "-1"])
def test_list_refuses_a_bad_limit(client: FlaskClient, limit: str) -> None:
    response = client.get(f"/orders?limit={limit}")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_limit"


def test_missing_order_and_unknown_path_are_json_404s(
    client: FlaskClient, registry: CollectorRegistry
) -> None:
    missing = client.get("/orders/424242")
    assert missing.status_code == 404
    assert missing.get_json()["error"] == "not_found"
    unknown = client.get("/no/such/page")
    assert unknown.status_code == 404
    assert unknown.is_json
    assert requests_total(registry, "GET", "/orders/<int:order_id>", 404) == 1
    assert requests_total(registry, "GET", "<unmatched>", 404) == 1


@pytest.mark.parametrize(
    "body",
    [
        {**ORDER, "user_id": "seven"},
        {**ORDER, "user_id": True},
        {**ORDER, "user_id": 0},
        {**ORDER, "items": []},
        {**ORDER, "items": "MUG-0042"},
        {**ORDER, "items": [{"sku": "MUG-0042", "quantity": 0}]},
        {**ORDER, "items": [{"sku": "", "quantity": 1}]},
        {**ORDER, "items": [["MUG-0042", 1]]},
        {**ORDER, "total_cents": -1},
        {**ORDER, "total_cents": 12.5},
        {"user_id": 7, "items": ORDER["items"]},
        ["not", "an", "object"],
    ],
)
def test_invalid_orders_are_400(
    client: FlaskClient, registry: CollectorRegistry, body: Any
) -> None:
    response = client.post("/orders", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_order"
    assert requests_total(registry, "POST", "/orders", 400) == 1
    parsed = {"function": "example_app.orders.parse_order", "outcome": "error"}
    assert registry.get_sample_value("app_function_calls_total", parsed) == 1
    assert calls(registry, PROCESS_ORDER, "success") == calls(registry, PROCESS_ORDER, "error") == 0


def test_a_body_that_is_not_json_is_400(client: FlaskClient) -> None:
    response = client.post("/orders", data="{oops", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_order"


def test_index_lists_the_urls(client: FlaskClient) -> None:
    index = client.get("/").get_json()
    assert index["service"] == "shop"
    assert index["links"]["create_order"] == "POST /orders"
    assert index["links"]["metrics"] == "GET /metrics"
    assert index["links"]["health"] == "GET /healthz"


def test_readiness_checks_the_database(client: FlaskClient, registry: CollectorRegistry) -> None:
    response = client.get("/healthz/ready")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "pass"
    (database,) = body["checks"]["database:responseTime"]
    assert (database["status"], database["componentType"]) == ("pass", "datastore")
    assert registry.get_sample_value("health_check_status", {"check": "database"}) == 1.0


# -- failure injection --


@pytest.mark.parametrize(
    ("step", "status", "error"),
    [
        ("authenticate", 401, "authentication_failed"),
        ("check_inventory", 409, "out_of_stock"),
        ("process_payment", 402, "payment_declined"),
    ],
)
def test_a_failing_step_refuses_the_order(
    make_app: AppFactory, registry: CollectorRegistry, step: str, status: int, error: str
) -> None:
    client = make_app(**{failure_rate_name(step): 1.0}).test_client()
    response = client.post("/orders", json=ORDER)
    assert response.status_code == status
    assert response.get_json()["error"] == error
    assert client.get("/orders").get_json()["orders"] == []

    assert requests_total(registry, "POST", "/orders", status) == 1
    assert calls(registry, PROCESS_ORDER, "error") == 1
    assert calls(registry, STEP_LABELS[step], "error") == 1
    later = STEPS[STEPS.index(step) + 1 :]
    for other in later:
        assert calls(registry, STEP_LABELS[other], "success") == 0
        assert calls(registry, STEP_LABELS[other], "error") == 0


def test_a_failed_email_does_not_fail_the_order(
    make_app: AppFactory, registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_app(EXAMPLE_SEND_EMAIL_FAILURE_RATE=1.0).test_client()
    response = client.post("/orders", json=ORDER, headers={"X-Request-ID": "order-1"})
    assert response.status_code == 201
    order_id = response.get_json()["id"]
    assert client.get(f"/orders/{order_id}").status_code == 200
    assert calls(registry, STEP_LABELS["send_email"], "error") == 1
    assert calls(registry, PROCESS_ORDER, "success") == 1
    logged = log_lines(capsys)
    lines = {line["event"]: line for line in logged}
    created, failed = lines["order_created"], lines["order_email_failed"]
    assert (created["order_id"], created["user_id"]) == (order_id, ORDER["user_id"])
    assert created["logger"] == "example_app.checkout"
    assert failed["level"] == "warning"
    assert failed["order_id"] == order_id
    assert created["request_id"] == failed["request_id"] == "order-1"
    assert created["route"] == "/orders"
    steps = [line for line in logged if line["event"] == "checkout_step"]
    assert [(line["step"], line["failed"]) for line in steps] == [
        ("authenticate", False),
        ("check_inventory", False),
        ("process_payment", False),
        ("send_email", True),
    ]
    assert all(line["request_id"] == "order-1" and line["duration_ms"] >= 0 for line in steps)


def test_the_simulated_bug_is_an_unhandled_500(
    make_app: AppFactory, registry: CollectorRegistry
) -> None:
    client = make_app(EXAMPLE_BUG_RATE=1.0).test_client()
    response = client.post("/orders", json=ORDER)
    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_server_error"
    labels = {"method": "POST", "endpoint": "/orders", "exception": "SimulatedBug"}
    assert registry.get_sample_value("http_request_exceptions_total", labels) == 1
    assert requests_total(registry, "POST", "/orders", 500) == 1
    assert calls(registry, PROCESS_ORDER, "error") == 1
    assert client.get("/orders").get_json()["orders"] == []


def test_the_steps_take_their_delay(make_app: AppFactory, registry: CollectorRegistry) -> None:
    client = make_app(EXAMPLE_CHECK_INVENTORY_DELAY=0.02).test_client()
    assert client.post("/orders", json=ORDER).status_code == 201
    labels = {"function": STEP_LABELS["check_inventory"], "outcome": "success"}
    spent = registry.get_sample_value("app_function_duration_seconds_sum", labels)
    assert spent is not None
    assert 0.01 <= spent < 1.0  # the delay, give or take half of it


# -- settings --


def test_defaults_make_inventory_the_slow_step(tmp_path: Path) -> None:
    settings = load_settings({}, {}, instance_path=str(tmp_path))
    assert settings.database_url == default_database_url(str(tmp_path))
    steps = {step: getattr(settings.checkout, step) for step in STEPS}
    assert {s: steps[s].delay for s in STEPS} == DEFAULT_DELAYS
    assert {s: steps[s].failure_rate for s in STEPS} == DEFAULT_FAILURE_RATES
    assert max(STEPS, key=lambda s: steps[s].delay) == "check_inventory"
    assert settings.warehouse_delay == DEFAULT_WAREHOUSE_DELAY


def test_config_beats_the_environment(tmp_path: Path) -> None:
    environ = {
        "EXAMPLE_CHECK_INVENTORY_DELAY": "0.5",
        "EXAMPLE_PROCESS_PAYMENT_FAILURE_RATE": " 0.25 ",
        "EXAMPLE_DATABASE_URL": "sqlite:////tmp/from-env.sqlite3",
    }
    config = {"EXAMPLE_CHECK_INVENTORY_DELAY": 0.1}
    settings = load_settings(config, environ, instance_path=str(tmp_path))
    assert settings.checkout.check_inventory.delay == 0.1
    assert settings.checkout.process_payment.failure_rate == 0.25
    assert settings.database_url == "sqlite:////tmp/from-env.sqlite3"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXAMPLE_AUTHENTICATE_DELAY", -0.1),
        ("EXAMPLE_AUTHENTICATE_DELAY", "soon"),
        ("EXAMPLE_CHECK_INVENTORY_DELAY", float("nan")),
        ("EXAMPLE_CHECK_INVENTORY_DELAY", 3600),
        ("EXAMPLE_PROCESS_PAYMENT_FAILURE_RATE", 1.5),
        ("EXAMPLE_SEND_EMAIL_FAILURE_RATE", True),
        ("EXAMPLE_BUG_RATE", ""),
        ("EXAMPLE_WAREHOUSE_DELAY", -1),
        ("EXAMPLE_DATABASE_URL", "not a url"),
        ("EXAMPLE_DATABASE_URL", "sqlite://"),
        ("EXAMPLE_CHECK_INVENTROY_DELAY", 1),
        ("EXAMPLE_INVENTORY_URL", "inventory:5001"),
        ("EXAMPLE_INVENTORY_URL", 5001),
    ],
)
def test_a_bad_setting_stops_the_app(make_app: AppFactory, name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        make_app(**{name: value})


def test_a_bad_environment_value_names_its_variable(tmp_path: Path) -> None:
    environ = {"EXAMPLE_SEND_EMAIL_DELAY": "0,5"}
    with pytest.raises(ValueError, match=r"EXAMPLE_SEND_EMAIL_DELAY = '0,5' \(environment\)"):
        load_settings({}, environ, instance_path=str(tmp_path))


# -- saturation and signals --


def test_the_orders_pool_and_the_job_queue_are_exported(
    make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app()
    client = app.test_client()
    response = client.post("/orders", json=ORDER)
    assert response.status_code == 201
    families = scrape(client)
    assert sample_value(families["db_pool_connections_in_use"], pool="orders") == 0.0
    assert sample_value(families["db_pool_connections_max"], pool="orders") == 15.0
    assert (sample_value(families["db_pool_wait_seconds"], "_count", pool="orders") or 0) >= 1
    assert sample_value(families["app_queue_depth"], queue="jobs") is not None
    (notified,) = [line for line in log_lines(capsys) if line["event"] == "warehouse_notified"]
    assert notified["order_id"] == response.get_json()["id"]
    assert notified["items"] == 2


def test_the_queue_depth_counts_the_jobs_waiting(make_app: AppFactory) -> None:
    app = make_app()
    jobs = app.extensions["example_app"].jobs
    started, release = threading.Event(), threading.Event()

    def blocking() -> None:
        started.set()
        release.wait(10)

    client = FlaskClient(app)  # one that does not wait for the blocked job
    try:
        assert jobs.submit(blocking)
        assert started.wait(10)
        for _ in range(3):
            assert jobs.submit(lambda: None)
        assert sample_value(scrape(client)["app_queue_depth"], queue="jobs") == 3.0
    finally:
        release.set()
    jobs.stop()
    assert sample_value(scrape(client)["app_queue_depth"], queue="jobs") == 0.0
    assert not jobs.submit(lambda: None)  # stopped: refused


def test_a_slow_request_is_logged_as_a_warning_with_its_trace_id(
    make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(OBSERVE_SLOW_REQUEST_SECONDS=0.05, EXAMPLE_CHECK_INVENTORY_DELAY=0.2)
    response = app.test_client().post("/orders", json=ORDER)
    assert response.status_code == 201
    (slow,) = [line for line in log_lines(capsys) if line["event"] == "slow_request"]
    assert slow["level"] == "warning"
    assert slow["route"] == "/orders"
    assert slow["status"] == 201
    assert slow["duration_ms"] >= 50
    assert slow["trace_id"] == response.headers["traceresponse"].split("-")[1]
    assert slow["request_id"] == response.headers["X-Request-ID"]


def test_a_quick_request_is_not_a_slow_one(
    make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    assert make_app().test_client().post("/orders", json=ORDER).status_code == 201
    assert not [line for line in log_lines(capsys) if line["event"] == "slow_request"]


# -- running it --


@pytest.fixture
def live_url(app: Flask) -> Iterator[str]:
    """The app behind werkzeug's threaded server on a free loopback port."""
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


def test_load_against_a_real_server(app: Flask, live_url: str, registry: CollectorRegistry) -> None:
    counts = load.run(live_url, requests=30, duration=20, concurrency=4, seed=1)
    app.extensions["example_app"].jobs.drain()
    assert sum(counts.values()) == 30
    assert counts[None] == 0
    assert counts[201] > 0
    recorded = statuses_recorded(registry)
    assert recorded == {str(status): float(n) for status, n in counts.items()}


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:5000",
        "http://example.com",
        "http://0.0.0.0:5000",
        "http://127.0.0.1.example.com",
        "http://[::2]:5000",
    ],
)
def test_load_refuses_hosts_that_are_not_loopback(url: str) -> None:
    with pytest.raises(load.LoadError, match="only sends to this machine"):
        load.run(url, requests=1, duration=1, concurrency=1)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:5000", "http://127.8.9.10", "http://LOCALHOST:8000/", "http://[::1]:5000"],
)
def test_load_accepts_loopback_urls(url: str) -> None:
    assert load.check_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"requests": 0}, "requests"),
        ({"duration": 0}, "duration"),
        ({"concurrency": 1000}, "concurrency"),
    ],
)
def test_load_refuses_unbounded_runs(arguments: dict[str, Any], message: str) -> None:
    options: dict[str, Any] = {"requests": 1, "duration": 1.0, "concurrency": 1, **arguments}
    with pytest.raises(load.LoadError, match=message):
        load.run("http://127.0.0.1:5000", **options)


@pytest.mark.parametrize(
    ("host", "hint"),
    [
        ("127.0.0.1", "--url http://127.0.0.1:5000"),
        ("0.0.0.0", "--url http://127.0.0.1:5000"),
        ("::", "--url http://[::1]:5000"),
        ("192.0.2.10", None),
    ],
)
def test_banner_prints_the_urls(host: str, hint: Optional[str]) -> None:
    text = banner(host, 5000)
    shown = f"[{host}]" if ":" in host else host
    for path in ("/", "/orders", "/metrics", "/healthz"):
        assert f"http://{shown}:5000{path}\n" in text
    # The interpreter named is the one serving the example, runnable as shown from here.
    from example_app.__main__ import _python

    assert os.path.exists(_python())
    assert f"{_python()} -m example_app.load" in text
    if hint is not None:
        assert hint in text


def test_banner_names_the_console_when_it_is_on() -> None:
    assert "http://127.0.0.1:5000/observe/  (from this machine only)" in banner(
        "127.0.0.1", 5000, console_path="/observe"
    )
    assert "console" not in banner("127.0.0.1", 5000)


def test_an_order_is_one_trace_with_the_checkout_steps_under_it(
    make_app: AppFactory, spans: Spans, capsys: pytest.CaptureFixture[str]
) -> None:
    response = make_app().test_client().post("/orders", json=ORDER)
    assert response.status_code == 201
    by_name = {span.name: span for span in spans.finished()}
    server = by_name["POST /orders"]
    order = by_name[PROCESS_ORDER]
    assert order.parent.span_id == server.context.span_id
    assert order.attributes["user.id"] == ORDER["user_id"]
    for step in STEPS:
        span = by_name[STEP_LABELS[step]]
        assert span.parent.span_id == order.context.span_id
        assert span.context.trace_id == server.context.trace_id
    inventory = by_name[STEP_LABELS["check_inventory"]]
    assert inventory.attributes["order.items"] == len(ORDER["items"])
    # Each step's log line was written in the step's own span.
    steps = [line for line in log_lines(capsys) if line["event"] == "checkout_step"]
    assert {line["step"]: (line["trace_id"], line["span_id"]) for line in steps} == {
        step: (
            format(server.context.trace_id, "032x"),
            format(by_name[STEP_LABELS[step]].context.span_id, "016x"),
        )
        for step in STEPS
    }


# -- the inventory service, over HTTP --


@pytest.fixture
def inventory_url(registry: CollectorRegistry) -> Iterator[Callable[..., str]]:
    """``inventory_url(**config)``: the inventory service served on 127.0.0.1, its URL."""
    with contextlib.ExitStack() as stack:

        def serve(**config: Any) -> str:
            app = create_inventory_app(
                {**QUIET, "OBSERVE_LOG_JSON": False, **config}, registry=CollectorRegistry()
            )
            stack.callback(app.extensions["observe"].tracer_provider.shutdown)
            return f"http://127.0.0.1:{stack.enter_context(serving(app))}"

        yield serve


def test_the_checkout_reserves_over_http_and_counts_the_call(
    make_app: AppFactory, registry: CollectorRegistry, spans: Spans, inventory_url: Any
) -> None:
    url = inventory_url()
    client = make_app(EXAMPLE_INVENTORY_URL=url).test_client()
    assert client.post("/orders", json=ORDER).status_code == 201
    labels = {"method": "POST", "peer": url[7:], "status": "200"}
    assert registry.get_sample_value("http_client_requests_total", labels) == 1
    (call,) = [span for span in spans.finished() if span.name == "POST"]
    assert spans.named(STEP_LABELS["check_inventory"]).context.span_id == call.parent.span_id


@pytest.mark.parametrize(
    ("config", "status", "error"),
    [
        ({failure_rate_name("check_inventory"): 1.0}, 409, "out_of_stock"),
        (None, 503, "inventory_unavailable"),
    ],
)
def test_an_inventory_that_refuses_or_is_down_refuses_the_order(
    make_app: AppFactory,
    registry: CollectorRegistry,
    inventory_url: Any,
    config: Optional[dict[str, Any]],
    status: int,
    error: str,
) -> None:
    url = "http://127.0.0.1:1" if config is None else inventory_url(**config)
    client = make_app(EXAMPLE_INVENTORY_URL=url).test_client()
    response = client.post("/orders", json=ORDER)
    assert (response.status_code, response.get_json()["error"]) == (status, error)
    assert calls(registry, STEP_LABELS["check_inventory"], "error") == 1


def test_the_banner_names_the_inventory_service() -> None:
    assert "http://127.0.0.1:5001" in banner(
        "127.0.0.1", 5000, inventory_url="http://127.0.0.1:5001"
    )
