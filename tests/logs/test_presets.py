"""Log presets: each backend's field names on every line, the user's and the access line,
parsed back and checked field by field."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from flask_observe import ConfigError, Observe, configure_structlog, get_logger
from flask_observe.logs import ACCESS_LOGGER, JsonLogFormatter
from flask_observe.logs.presets import DATADOG, ECS, GCP, PRESETS, Preset

from ..conftest import log_lines, without_root_handlers
from .helpers import ACCESS, ACCESS_LATE, CONTEXT, CORE, access_fields, access_record, routed

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
HEX16 = re.compile(r"[0-9a-f]{16}")

#: A logger outside the app's ("shop"), made before the app, as a helper module's is.
orders = get_logger("orders")


@pytest.fixture(params=["get_logger", "structlog"])
def log(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The user's logger named outside the app: flask-observe's own, or structlog's set up by
    configure_structlog; both log on the stdlib logger ``orders``."""
    if request.param == "get_logger":
        yield orders
        return
    configure_structlog()
    try:
        yield structlog.get_logger("orders")
    finally:
        structlog.reset_defaults()


def make_app(
    registry: CollectorRegistry, log_format: str, log: Any = orders, **config: Any
) -> Flask:
    app = Flask("shop")
    app.config.update(
        OBSERVE_LOG_FORMAT=log_format,
        OBSERVE_GCP_PROJECT="shop-prod",
        OBSERVE_SERVICE_VERSION="1.4.2",
        OBSERVE_SERVICE_ENVIRONMENT="production",
        OBSERVE_LOG_QUERY_STRING=True,
        **config,
    )

    @app.post("/orders")
    def create_order() -> Any:
        log.info("order_created", order_id=12345, password="hunter2")
        return {"id": 12345}, 201

    @app.get("/fail")
    def fail() -> Any:
        try:
            {}["missing"]
        except KeyError:
            log.exception("lookup_failed", key="missing")
        return "", 500

    Observe(app, registry=registry)
    return app


def dig(line: dict[str, Any], *keys: str) -> Any:
    """``line[k1][k2]...``, failing with the line when a key is missing."""
    value: Any = line
    for key in keys:
        assert isinstance(value, dict), (keys, line)
        assert key in value, (keys, line)
        value = value[key]
    return value


def served(app: Flask, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], ...]:
    """One traced request: the user's line and the access line, and the IDs of the request's
    span from the traceresponse header."""
    capsys.readouterr()
    response = app.test_client().post(
        "/orders?page=2&token=s3cr3t",
        headers={"traceparent": TRACEPARENT, "X-Request-ID": "req-7f3a", "User-Agent": "curl/8"},
    )
    assert response.status_code == 201
    user, access = log_lines(capsys)
    _, trace_id, span_id, _ = response.headers["traceresponse"].split("-")
    assert trace_id == TRACE_ID
    return user, access, {"trace_id": trace_id, "span_id": span_id}


def test_ecs(registry: CollectorRegistry, capsys: pytest.CaptureFixture[str], log: Any) -> None:
    user, access, ids = served(make_app(registry, "ecs", log), capsys)
    for line in (user, access):
        assert list(line)[:3] == ["@timestamp", "log.level", "message"]
        assert RFC3339_MS.fullmatch(line["@timestamp"])
        assert dig(line, "ecs", "version") == "8.11.0"
        assert dig(line, "service", "name") == "shop"
        assert dig(line, "service", "version") == "1.4.2"
        assert dig(line, "service", "environment") == "production"
        assert dig(line, "trace", "id") == TRACE_ID
        assert dig(line, "span", "id") == ids["span_id"]
        assert dig(line, "transaction", "id") == ids["span_id"]
        assert dig(line, "http", "request", "id") == "req-7f3a"
        assert dig(line, "http", "request", "method") == "POST"
        assert dig(line, "url", "path") == "/orders"
        assert line["route"] == "/orders"
    assert (user["log.level"], user["message"]) == ("info", "order_created")
    assert dig(user, "log", "logger") == "orders"
    assert (user["order_id"], user["password"]) == (12345, "[REDACTED]")
    assert (access["log.level"], access["message"]) == ("info", "request")
    assert dig(access, "log", "logger") == ACCESS_LOGGER
    assert dig(access, "http", "response", "status_code") == 201
    assert dig(access, "http", "response", "body", "bytes") > 0
    duration = dig(access, "event", "duration")
    assert isinstance(duration, int)
    assert 0 < duration < 10 * 10**9
    assert duration % 1000 == 0  # measured to the microsecond
    assert dig(access, "client", "ip") == "127.0.0.1"
    assert dig(access, "user_agent", "original") == "curl/8"
    assert dig(access, "url", "query") == "page=2&token=%5BREDACTED%5D"


def test_gcp(registry: CollectorRegistry, capsys: pytest.CaptureFixture[str], log: Any) -> None:
    user, access, ids = served(make_app(registry, "gcp", log), capsys)
    for line in (user, access):
        assert RFC3339_MS.fullmatch(line["time"])
        assert line["logging.googleapis.com/trace"] == f"projects/shop-prod/traces/{TRACE_ID}"
        assert line["logging.googleapis.com/spanId"] == ids["span_id"]
        assert line["logging.googleapis.com/trace_sampled"] is True
        assert line["request_id"] == "req-7f3a"
        assert line["route"] == "/orders"
    assert (user["severity"], user["message"], user["logger"]) == (
        "INFO",
        "order_created",
        "orders",
    )
    assert (user["method"], user["path"]) == ("POST", "/orders")
    assert "httpRequest" not in user  # it would make the line a request's in Logs Explorer
    assert (user["order_id"], user["password"]) == (12345, "[REDACTED]")
    assert (access["severity"], access["message"]) == ("INFO", "request")
    request = access["httpRequest"]
    assert request["requestMethod"] == "POST"
    assert request["requestUrl"] == "/orders"
    assert request["status"] == 201
    assert re.fullmatch(r"0\.\d{1,6}s|[1-9]\d*(\.\d{1,6})?s", request["latency"])
    assert request["remoteIp"] == "127.0.0.1"
    assert request["userAgent"] == "curl/8"
    assert int(request["responseSize"]) > 0
    assert isinstance(request["responseSize"], str)  # int64, as protobuf's JSON writes it
    assert access["query"] == "page=2&token=%5BREDACTED%5D"
    assert "method" not in access
    assert "path" not in access


def test_datadog(registry: CollectorRegistry, capsys: pytest.CaptureFixture[str], log: Any) -> None:
    user, access, ids = served(make_app(registry, "datadog", log), capsys)
    for line in (user, access):
        assert RFC3339_MS.fullmatch(line["timestamp"])
        assert line["service"] == line["dd.service"] == "shop"
        assert (line["dd.env"], line["dd.version"]) == ("production", "1.4.2")
        assert line["dd.trace_id"] == str(int(TRACE_ID[16:], 16))
        assert line["dd.span_id"] == str(int(ids["span_id"], 16))
        assert dig(line, "http", "request_id") == "req-7f3a"
        assert dig(line, "http", "method") == "POST"
        assert dig(line, "http", "route") == "/orders"
        assert dig(line, "http", "url_details", "path") == "/orders"
    assert (user["status"], user["message"]) == ("info", "order_created")
    assert dig(user, "logger", "name") == "orders"
    assert (user["order_id"], user["password"]) == (12345, "[REDACTED]")
    assert (access["status"], access["message"]) == ("info", "request")
    assert dig(access, "logger", "name") == ACCESS_LOGGER
    assert dig(access, "http", "status_code") == 201
    assert isinstance(access["duration"], int)
    assert 0 < access["duration"] < 10 * 10**9
    assert dig(access, "network", "client", "ip") == "127.0.0.1"
    assert dig(access, "http", "useragent") == "curl/8"
    assert dig(access, "network", "bytes_written") > 0
    assert access["query"] == "page=2&token=%5BREDACTED%5D"


@pytest.mark.parametrize(
    ("log_format", "where"),
    [
        ("ecs", {"type": ("error", "type"), "message": ("error", "message")}),
        ("datadog", {"type": ("error", "kind"), "message": ("error", "message")}),
        ("gcp", {"type": ("exc_type",), "message": ("exc_message",)}),
    ],
)
def test_an_exception_goes_where_the_backend_reads_it(
    registry: CollectorRegistry,
    capsys: pytest.CaptureFixture[str],
    log_format: str,
    where: dict[str, tuple[str, ...]],
    log: Any,
) -> None:
    make_app(registry, log_format, log).test_client().get("/fail")
    failed, _ = log_lines(capsys)
    assert dig(failed, *where["type"]) == "KeyError"
    assert dig(failed, *where["message"]) == "'missing'"
    stack = {
        "ecs": ("error", "stack_trace"),
        "datadog": ("error", "stack"),
        "gcp": ("stack_trace",),
    }
    assert dig(failed, *stack[log_format]).startswith("Traceback (most recent call last):")
    assert failed["key"] == "missing"
    assert "exc_type" not in failed or log_format == "gcp"


@pytest.mark.parametrize(
    ("log_format", "taken"),
    [
        ("ecs", ["message", "log", "http", "error"]),
        ("gcp", ["severity", "message", "time", "request_id"]),
        ("datadog", ["status", "message", "dd.trace_id", "error"]),
    ],
)
def test_a_users_field_keeps_its_name_unless_the_line_has_it(
    registry: CollectorRegistry,
    capsys: pytest.CaptureFixture[str],
    log_format: str,
    taken: list[str],
) -> None:
    app = make_app(registry, log_format)

    @app.get("/clash")
    def clash() -> str:
        orders.info("clash", **dict.fromkeys(taken, "mine"), level="mine", event="mine")
        return "ok"

    app.test_client().get("/clash", headers={"traceparent": TRACEPARENT})
    line = log_lines(capsys)[0]
    for name in taken:
        assert line[f"extra_{name}"] == "mine"
        assert line.get(name) != "mine"
    # flask-observe's own names are free in a preset that does not use them.
    assert (line["level"], line["event"]) == ("mine", "mine")


def test_outside_a_request_a_line_has_no_request_fields(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    make_app(registry, "ecs")
    orders.info("starting", port=5000)
    (line,) = log_lines(capsys)
    assert set(line) == {"@timestamp", "log.level", "message", "ecs", "log", "service", "port"}


@pytest.mark.parametrize("log_format", ["ecs", "gcp", "datadog"])
def test_the_access_line_is_the_same_with_or_without_a_record(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    """The presets write the access line from a dict, with or without the record: the
    same line either way, the record going to a handler of the user's too."""
    app = make_app(registry, log_format)
    client = app.test_client()
    headers = {"X-Request-ID": "same", "User-Agent": "probe/1"}
    with without_root_handlers():
        client.get("/nope", headers=headers)
    client.get("/nope", headers=headers)
    alone, made = log_lines(capsys)
    varying = re.compile(r"duration|latency|time|trace|span|transaction")

    def steady(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: steady(v) for k, v in value.items() if not varying.search(k)}
        return value

    assert steady(alone) == steady(made)


def test_gcp_needs_a_project(registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    app = Flask("shop")
    app.config["OBSERVE_LOG_FORMAT"] = "gcp"
    with pytest.raises(ConfigError) as raised:
        Observe(app, registry=registry)
    assert raised.value.key == "OBSERVE_GCP_PROJECT"
    with pytest.raises(ValueError, match="gcp_project"):
        JsonLogFormatter(service="shop", preset="gcp")


def test_the_project_environment_and_version_come_from_the_environment(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    monkeypatch.setenv("DD_ENV", "staging")
    monkeypatch.setenv("DD_VERSION", "2.0.0")
    for log_format in ("gcp", "datadog"):
        app = Flask("shop")
        app.config["OBSERVE_LOG_FORMAT"] = log_format

        @app.get("/")
        def index() -> str:
            orders.info("here")
            return "ok"

        Observe(app, registry=CollectorRegistry())
        app.test_client().get("/", headers={"traceparent": TRACEPARENT})
    gcp, _, datadog, _ = log_lines(capsys)
    assert gcp["logging.googleapis.com/trace"] == f"projects/from-env/traces/{TRACE_ID}"
    assert (datadog["dd.env"], datadog["dd.version"]) == ("staging", "2.0.0")


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ("service.version=1.2.3,deployment.environment.name=eu%20prod", ("eu prod", "1.2.3")),
        ("deployment.environment=qa", ("qa", None)),
        ("", (None, None)),
    ],
)
def test_opentelemetry_resource_attributes_are_the_last_resort(
    monkeypatch: pytest.MonkeyPatch,
    attributes: str,
    expected: tuple[Any, Any],
) -> None:
    for name in ("DD_ENV", "DD_VERSION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", attributes)
    app = Flask("shop")
    Observe(app, registry=CollectorRegistry())
    settings_ = app.extensions["observe"].settings
    assert (settings_.service_environment, settings_.service_version) == expected


def test_without_environment_or_version_their_fields_are_left_out(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DD_ENV", "DD_VERSION", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    app = Flask("shop")
    app.config["OBSERVE_LOG_FORMAT"] = "datadog"
    Observe(app, registry=registry)
    orders.info("bare")
    (line,) = log_lines(capsys)
    assert "dd.env" not in line
    assert "dd.version" not in line


def test_an_unknown_format_names_the_presets(registry: CollectorRegistry) -> None:
    app = Flask("shop")
    app.config["OBSERVE_LOG_FORMAT"] = "elastic"
    with pytest.raises(ConfigError, match="'ecs', 'gcp', 'datadog'") as raised:
        Observe(app, registry=registry)
    assert raised.value.key == "OBSERVE_LOG_FORMAT"


HOSTILE = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    log_format=st.sampled_from(sorted(PRESETS)),
    level=st.sampled_from([logging.INFO, logging.WARNING, logging.ERROR]),
    request_id=HOSTILE,
    ids=st.none() | st.tuples(st.just(TRACE_ID), st.just("b7ad6b7169203331")),
    method=HOSTILE,
    route=st.none() | HOSTILE,
    path=HOSTILE,
    status=st.integers(100, 599),
    duration_ms=st.integers(0, 10**9).map(lambda us: us / 1000),
    client_addr=st.none() | HOSTILE,
    user_agent=st.none() | HOSTILE,
    size=st.integers(0, 10**12),
    exception=st.none() | HOSTILE,
    query=st.none() | HOSTILE,
    created=st.floats(0, 2**33),
)
def test_a_presets_access_line_without_a_record_is_the_records_line(
    registry: CollectorRegistry,
    log_format: str,
    level: int,
    request_id: str,
    ids: Any,
    method: str,
    route: Any,
    path: str,
    status: int,
    duration_ms: float,
    client_addr: Any,
    user_agent: Any,
    size: int,
    exception: Any,
    query: Any,
    created: float,
) -> None:
    formatter = JsonLogFormatter(
        service="shop", preset=log_format, gcp_project="p", environment="e", version="v"
    )
    app = Flask("shop")
    Observe(app, registry=CollectorRegistry())
    observation = routed(
        app.extensions["observe"].pipeline,
        method=method,
        route=route,
        path=path,
        request_id=request_id,
        ids=ids,
    )
    fields = access_fields(status, duration_ms, client_addr, user_agent, size, exception, query)
    line = formatter.access_line(level, ACCESS_LOGGER, observation, fields, created)
    assert line == formatter.format(
        access_record(ACCESS_LOGGER, level, observation, fields, created)
    )
    assert line.isascii()
    assert line.isprintable()
    parsed = json.loads(line)
    data = formatter._access_data(level, ACCESS_LOGGER, observation, fields, created)
    assert parsed == PRESETS[log_format].shape(data, formatter._options, access=True)


# -- the presets as data, called directly --


def test_datadog_ids_are_the_low_64_bits_in_decimal() -> None:
    line = {"trace_id": "ffffffffffffffff0000000000000001", "span_id": "ffffffffffffffff"}
    shaped = DATADOG.shape(line, {})
    assert shaped["dd.trace_id"] == "1"
    assert shaped["dd.span_id"] == str(2**64 - 1)


@pytest.mark.parametrize(
    ("duration_ms", "latency", "nanoseconds"),
    [
        (4.0, "0.004s", 4_000_000),
        (0.707, "0.000707s", 707_000),
        (1500.25, "1.50025s", 1_500_250_000),
        (0.0, "0s", 0),
        (2000.0, "2s", 2_000_000_000),
    ],
)
def test_durations(duration_ms: float, latency: str, nanoseconds: int) -> None:
    line = {"duration_ms": duration_ms}
    assert GCP.shape(line, {}, access=True)["httpRequest"]["latency"] == latency
    assert ECS.shape(line, {})["event"]["duration"] == nanoseconds
    assert DATADOG.shape(line, {})["duration"] == nanoseconds


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        ("debug", "DEBUG"),
        ("info", "INFO"),
        ("warning", "WARNING"),
        ("error", "ERROR"),
        ("critical", "CRITICAL"),
        ("level 25", "DEFAULT"),
    ],
)
def test_gcp_severities(level: str, severity: str) -> None:
    assert GCP.shape({"level": level}, {})["severity"] == severity


@pytest.mark.parametrize("preset", list(PRESETS.values()), ids=list(PRESETS))
def test_no_two_places_of_a_preset_collide(preset: Preset) -> None:
    """A place is never both a value and an object: every field at once shapes cleanly."""
    late = ["exc_type", "exc_message", "stack", "log_error"]
    extras = ["transaction_id", "service_version", "service_environment"]
    everything = dict.fromkeys([*CORE, *CONTEXT, *ACCESS, *ACCESS_LATE, *late, *extras], "x")
    everything.update(duration_ms=1.0, trace_id="0" * 32, span_id="0" * 16, status=200)
    for access in (False, True):
        assert preset.shape(everything, {"gcp_project": "p"}, access=access)


@pytest.mark.parametrize("log_format", sorted(PRESETS))
def test_a_line_that_cannot_be_written_is_still_one_line_in_the_preset(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    make_app(registry, log_format)
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    orders.info("cart_saved", cart=cyclic)
    (line,) = log_lines(capsys)
    assert line["log_error"].startswith("ValueError")
    assert "cart" not in line
    assert "cart_saved" in json.dumps(line)
