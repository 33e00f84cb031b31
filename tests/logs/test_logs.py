"""Structured logs: JSON lines, request context, request IDs, redaction, the access log."""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import io
import json
import logging
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask, Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from flask_observe import Observe, get_logger
from flask_observe.logs import _sole_handler

from ..conftest import KeptRecords, access_lines, log_lines, serving, without_root_handlers
from .helpers import ACCESS, CONTEXT, CORE

RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
MADE_ID = re.compile(r"[0-9a-f]{32}")

log = get_logger("shop.orders")


def _app(registry: CollectorRegistry, **config: Any) -> Flask:
    """An app whose views log, through get_logger and through plain logging."""
    app = Flask("shop")
    app.config.update(config)

    @app.post("/orders")
    def create_order() -> Any:
        log.info("order_created", order_id=12345, user_id=42, total_cents=9999)
        logging.getLogger("shop.payments").warning("card declined", extra={"attempt": 2})
        return {"id": 12345}, 201

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> Any:
        log.info("order_read", order_id=order_id)
        return {"id": order_id}

    @app.get("/fail")
    def fail() -> str:
        try:
            {}["missing"]
        except KeyError:
            log.exception("lookup failed", key="missing")
        raise RuntimeError("gave up\nfor good")

    @app.get("/slow")
    def slow() -> str:
        time.sleep(0.3)  # far above the threshold below, as fast requests are far under it
        return "slow"

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Any:
            log.info("streaming")
            yield "chunk"

        return Response(body())

    config.setdefault("OBSERVE_LOG_LOGGERS", ["shop.payments"])
    app.config.update(config)
    Observe(app, registry=registry)
    return app


@pytest.fixture
def app(registry: CollectorRegistry) -> Flask:
    return _app(registry)


def test_a_field_logger_line_inside_a_request(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    response = app.test_client().post("/orders", headers={"X-Request-ID": "req-1"})
    assert response.status_code == 201
    lines = log_lines(capsys)
    created = next(line for line in lines if line["event"] == "order_created")
    assert list(created) == [
        *CORE,
        *CONTEXT,
        "order_id",
        "user_id",
        "total_cents",
    ]
    assert RFC3339_MS.fullmatch(created["timestamp"])
    assert created["level"] == "info"
    assert created["logger"] == "shop.orders"
    assert created["service"] == "shop"
    assert created["request_id"] == "req-1"
    assert (created["method"], created["route"], created["path"]) == ("POST", "/orders", "/orders")
    assert (created["order_id"], created["user_id"], created["total_cents"]) == (12345, 42, 9999)


def test_plain_logging_calls_get_the_same_context(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    app.test_client().post("/orders", headers={"X-Request-ID": "req-2"})
    # shop.payments is named in OBSERVE_LOG_LOGGERS and is below the app's logger "shop":
    # its records are written once all the same.
    (declined,) = [line for line in log_lines(capsys) if line["event"] == "card declined"]
    assert declined["logger"] == "shop.payments"
    assert declined["level"] == "warning"
    assert declined["request_id"] == "req-2"
    assert declined["route"] == "/orders"
    assert declined["attempt"] == 2


def test_no_request_fields_outside_a_request(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    log.info("starting", port=5000)
    (line,) = log_lines(capsys)
    assert list(line) == [*CORE, "port"]
    assert line["service"] == "shop"


def test_context_follows_a_copied_context_into_a_worker_thread(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(registry)

    @app.get("/background")
    def background() -> str:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(contextvars.copy_context().run, log.info, "copied").result()
            pool.submit(log.info, "not copied").result()
        return "ok"

    app.test_client().get("/background", headers={"X-Request-ID": "bg-1"})
    lines = {line["event"]: line for line in log_lines(capsys)}
    assert lines["copied"]["request_id"] == "bg-1"
    assert lines["copied"]["route"] == "/background"
    assert "request_id" not in lines["not copied"]


def test_context_stays_while_a_streamed_body_is_made_and_ends_with_it(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    response = app.test_client().get("/stream", headers={"X-Request-ID": "st-1"})
    assert response.get_data() == b"chunk"
    response.close()
    log.info("after")
    lines = {line["event"]: line for line in log_lines(capsys)}
    assert lines["streaming"]["request_id"] == "st-1"
    assert "request_id" not in lines["after"]


def test_an_exception_is_three_fields_on_one_line(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    assert app.test_client().get("/fail").status_code == 500
    raw = capsys.readouterr().err
    lines = [json.loads(line) for line in raw.splitlines()]
    failed = next(line for line in lines if line["event"] == "lookup failed")
    assert failed["exc_type"] == "KeyError"
    assert failed["exc_message"] == "'missing'"
    assert failed["stack"].startswith("Traceback (most recent call last):")
    assert failed["key"] == "missing"
    # Flask's own report of the unhandled error is one line too, with a qualified class.
    flask_line = next(line for line in lines if line["logger"] == "shop")
    assert flask_line["exc_type"] == "RuntimeError"
    assert flask_line["exc_message"] == "gave up\nfor good"
    assert all(line["request_id"] == failed["request_id"] for line in lines)


def test_exception_classes_outside_builtins_are_qualified(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        json.loads("{")
    except json.JSONDecodeError:
        log.exception("bad json")
    (line,) = log_lines(capsys)
    assert line["exc_type"] == "json.decoder.JSONDecodeError"


# -- request IDs --


def _request_id_of(app: Flask, capsys: pytest.CaptureFixture[str], value: str) -> tuple[str, str]:
    """The request ID logged and echoed for a request whose header carried *value*."""
    response = app.test_client().get("/orders/7", environ_overrides={"HTTP_X_REQUEST_ID": value})
    assert response.status_code == 200
    lines = log_lines(capsys)
    ids = {line["request_id"] for line in lines}
    assert len(ids) == 1
    return ids.pop(), response.headers["X-Request-ID"]


@pytest.mark.parametrize("value", ["abc", "A.b_c:d-1", "x" * 128, "0" * 32])
def test_a_well_formed_request_id_is_kept_and_echoed(
    app: Flask, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert _request_id_of(app, capsys, value) == (value, value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * 129,
        "a" * 10_000,
        "evil\nline",
        'x", "level": "critical',
        "ünïcode",
        "spaces are not allowed",
        "\x00",
    ],
)
def test_a_hostile_request_id_is_replaced(
    app: Flask, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    logged, echoed = _request_id_of(app, capsys, value)
    assert MADE_ID.fullmatch(logged)
    assert echoed == logged


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=st.text(max_size=300))
def test_any_request_id_header_gives_a_safe_logged_id(
    app: Flask, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    capsys.readouterr()
    logged, echoed = _request_id_of(app, capsys, value)
    assert echoed == logged
    if re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", value):
        assert logged == value
    else:
        assert MADE_ID.fullmatch(logged)


def test_requests_without_an_id_get_distinct_ones(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    client = app.test_client()
    echoed = {client.get("/orders/1").headers["X-Request-ID"] for _ in range(50)}
    assert len(echoed) == 50
    assert all(MADE_ID.fullmatch(value) for value in echoed)


# Python 3.12 warns about fork() in a process with threads (other tests' span processors
# run some); the child here only makes a request and leaves with os._exit.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_workers_make_different_ids(app: Flask) -> None:
    """As gunicorn forks its workers from one master: a child's first ID is not the
    parent's next one."""
    client = app.test_client()
    client.get("/orders/1")  # the parent has made IDs before it forks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one request, its ID to the parent, and out at once
        try:
            os.write(write, client.get("/orders/1").headers["X-Request-ID"].encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        child = os.read(read, 64).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert MADE_ID.fullmatch(child)
    assert client.get("/orders/1").headers["X-Request-ID"] != child


def test_an_id_the_app_sets_itself_is_not_doubled(registry: CollectorRegistry) -> None:
    app = _app(registry)

    @app.after_request
    def own_id(response: Response) -> Response:
        response.headers["x-request-id"] = "mine"
        return response

    response = app.test_client().get("/orders/1")
    assert response.headers.getlist("X-Request-ID") == ["mine"]


def test_the_request_id_header_is_configurable_or_off(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(registry, OBSERVE_REQUEST_ID_HEADER="X-Correlation-ID")
    response = app.test_client().get("/orders/1", headers={"X-Correlation-ID": "corr-9"})
    assert response.headers["X-Correlation-ID"] == "corr-9"
    assert "X-Request-ID" not in response.headers
    assert {line["request_id"] for line in log_lines(capsys)} == {"corr-9"}

    off = _app(CollectorRegistry(), OBSERVE_REQUEST_ID_HEADER=None)
    response = off.test_client().get("/orders/1", headers={"X-Request-ID": "ignored"})
    assert "X-Request-ID" not in response.headers
    (logged,) = {line["request_id"] for line in log_lines(capsys)}
    assert MADE_ID.fullmatch(logged)


# -- hostile fields and values --


def test_hostile_fields_never_break_a_line(app: Flask, capsys: pytest.CaptureFixture[str]) -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    log.info("cyclic", value=cyclic)
    log.info("odd keys", mapping={(1, 2): "tuple key", 3: "int key"})
    log.info('forged\n{"level": "critical"}', note="x\r\ny", big="z" * 100_000)
    log.info("clash", level="mine", request_id="mine", name="Bob", msg="hello")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4
    cyclic_line, odd, forged, clash = (json.loads(line) for line in lines)
    assert cyclic_line["event"] == "cyclic"
    assert "log_error" in cyclic_line
    assert odd["event"] == "odd keys"
    assert forged["event"] == 'forged\n{"level": "critical"}'
    assert forged["level"] == "info"
    assert forged["note"] == "x\r\ny"
    assert len(forged["big"]) == 100_000
    assert clash["level"] == "info"
    assert clash["extra_level"] == "mine"
    assert clash["request_id"] == "mine"  # outside a request, the name is free
    assert (clash["name"], clash["msg"]) == ("Bob", "hello")


def test_a_field_named_like_a_context_field_does_not_replace_it(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    @app.get("/clash")
    def clash() -> str:
        log.info("clash", request_id="forged", route="/admin")
        return "ok"

    app.test_client().get("/clash", headers={"X-Request-ID": "real"})
    line = next(line for line in log_lines(capsys) if line["event"] == "clash")
    assert (line["request_id"], line["route"]) == ("real", "/clash")
    assert (line["extra_request_id"], line["extra_route"]) == ("forged", "/admin")


def test_bound_fields_are_on_every_line(app: Flask, capsys: pytest.CaptureFixture[str]) -> None:
    bound = get_logger("shop.orders", region="eu").bind(order_id=7)
    bound.info("one")
    bound.warning("two", order_id=8)
    one, two = log_lines(capsys)
    assert (one["region"], one["order_id"]) == ("eu", 7)
    assert (two["region"], two["order_id"], two["level"]) == ("eu", 8, "warning")


def test_redaction_of_nested_keys(app: Flask, capsys: pytest.CaptureFixture[str]) -> None:
    log.info(
        "login",
        user="ann",
        Password="hunter2",
        headers={"Authorization": "Bearer x", "X-Api-Key": "k", "Accept": "json"},
        cards=[{"credit_card": "4111", "last4": "1111"}],
        session={"deep": {"refresh_token": "r", "ok": 1}},
    )
    (line,) = log_lines(capsys)
    assert line["user"] == "ann"
    assert line["Password"] == "[REDACTED]"
    assert line["headers"] == {
        "Authorization": "[REDACTED]",
        "X-Api-Key": "[REDACTED]",
        "Accept": "json",
    }
    assert line["cards"] == [{"credit_card": "[REDACTED]", "last4": "1111"}]
    assert line["session"] == {"deep": {"refresh_token": "[REDACTED]", "ok": 1}}


def test_redaction_patterns_are_configurable(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    _app(registry, OBSERVE_LOG_REDACT=["ssn"])
    log.info("person", ssn="123", password="visible now")
    (line,) = log_lines(capsys)
    assert (line["ssn"], line["password"]) == ("[REDACTED]", "visible now")


def test_query_strings_are_left_out_unless_asked_and_then_redacted(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(registry)
    # A secret no hex ID can contain: random request and trace IDs hold "abc" now and then.
    app.test_client().get("/orders/1?token=s3cr3t-value&page=2")
    (line,) = access_lines(log_lines(capsys))
    assert "query" not in line
    assert "s3cr3t" not in json.dumps(line)

    app = _app(CollectorRegistry(), OBSERVE_LOG_QUERY_STRING=True)
    app.test_client().get("/orders/1?token=abc&page=2&Api-Key=k")
    (line,) = access_lines(log_lines(capsys))
    assert line["query"] == "token=%5BREDACTED%5D&page=2&Api-Key=%5BREDACTED%5D"


# -- the access log --


def test_one_access_line_per_request_with_its_fields(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    client = app.test_client()
    client.get("/orders/1", headers={"User-Agent": "probe/1.0", "X-Request-ID": "a-1"})
    client.get("/nope")
    client.get("/fail")
    client.get("/metrics")  # excluded: no access line
    lines = access_lines(log_lines(capsys))
    assert [(line["status"], line["level"]) for line in lines] == [
        (200, "info"),
        (404, "warning"),
        (500, "error"),
    ]
    ok, missing, failed = lines
    assert list(ok) == [*CORE, *CONTEXT, *ACCESS]
    assert ok["event"] == "request"
    assert ok["request_id"] == "a-1"
    assert (ok["route"], ok["path"]) == ("/orders/<int:order_id>", "/orders/1")
    assert ok["user_agent"] == "probe/1.0"
    assert ok["client_addr"] == "127.0.0.1"
    assert ok["response_bytes"] == len(b'{"id":1}\n')
    assert 0 < ok["duration_ms"] < 10_000
    assert missing["route"] is None
    assert missing["path"] == "/nope"
    assert failed["exception"] == "RuntimeError"


def test_a_huge_user_agent_is_clipped(app: Flask, capsys: pytest.CaptureFixture[str]) -> None:
    app.test_client().get("/orders/1", headers={"User-Agent": "u" * 10_000})
    (line,) = access_lines(log_lines(capsys))
    assert line["user_agent"] == "u" * 1024 + "...[truncated]"


def test_the_access_line_is_the_same_when_other_handlers_see_the_record(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    """Alone, flask-observe's handler gets the access line without a record; with a handler
    of the user's on the way, a real record goes to both, and the line does not change."""
    app = _app(registry)
    client = app.test_client()
    headers = {"User-Agent": "probe/1.0"}
    varying = {"timestamp", "duration_ms", "request_id", "trace_id", "span_id"}

    access = logging.getLogger("flask_observe.access")
    with without_root_handlers():
        assert _sole_handler(access, logging.INFO) is not None
        client.get("/orders/1", headers=headers)
    (alone,) = access_lines(log_lines(capsys))
    kept = KeptRecords()
    for where in (access, logging.getLogger()):  # on the logger itself, and up at the root
        where.addHandler(kept)
        try:
            client.get("/orders/1", headers=headers)
        finally:
            where.removeHandler(kept)
        (seen,) = access_lines(log_lines(capsys))
        assert {k: v for k, v in seen.items() if k not in varying} == {
            k: v for k, v in alone.items() if k not in varying
        }
    records = [r for r in kept.records if r.name == "flask_observe.access"]
    assert [(r.levelno, r.__dict__["status"], r.__dict__["user_agent"]) for r in records] == [
        (logging.INFO, 200, "probe/1.0")
    ] * 2


def test_a_filter_or_record_factory_of_the_users_still_applies_to_the_access_line(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(registry)
    client = app.test_client()
    access = logging.getLogger("flask_observe.access")

    def not_probes(record: logging.LogRecord) -> bool:
        return record.__dict__.get("user_agent") != "probe/1.0"

    made = logging.getLogRecordFactory()
    stamped: list[str] = []

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = made(*args, **kwargs)
        stamped.append(record.name)
        return record

    # Without them, the line would be written without a record.
    with without_root_handlers():
        assert _sole_handler(access, logging.INFO) is not None
        access.addFilter(not_probes)
        try:
            client.get("/orders/1", headers={"User-Agent": "probe/1.0"})
            client.get("/orders/2", headers={"User-Agent": "browser"})
        finally:
            access.removeFilter(not_probes)
        assert [line["user_agent"] for line in access_lines(log_lines(capsys))] == ["browser"]

        logging.setLogRecordFactory(factory)
        try:
            client.get("/orders/1")
        finally:
            logging.setLogRecordFactory(made)
    assert "flask_observe.access" in stamped
    assert len(access_lines(log_lines(capsys))) == 1


def test_the_access_log_can_be_turned_off(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(registry, OBSERVE_ACCESS_LOG=False)
    response = app.test_client().get("/orders/1")
    assert access_lines(log_lines(capsys)) == []
    assert "X-Request-ID" in response.headers


def test_sampling_keeps_every_error_and_every_slow_request(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(registry, OBSERVE_ACCESS_LOG_SAMPLE=0.0, OBSERVE_SLOW_REQUEST_SECONDS=0.25)
    client = app.test_client()
    for _ in range(20):
        client.get("/orders/1")
    client.get("/nope")
    client.get("/fail")
    client.get("/slow")
    lines = access_lines(log_lines(capsys))
    assert sorted(line["status"] for line in lines) == [200, 404, 500]
    assert next(line for line in lines if line["status"] == 200)["route"] == "/slow"


def test_sampling_keeps_about_the_fraction_asked(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(registry, OBSERVE_ACCESS_LOG_SAMPLE=0.25)
    client = app.test_client()
    for _ in range(400):
        client.get("/orders/1")
    kept = len(access_lines(log_lines(capsys)))
    assert 50 <= kept <= 150  # binomial(400, 0.25): mean 100, sd 8.7


def test_the_log_level_filters_lines(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(registry, OBSERVE_LOG_LEVEL="warning")
    client = app.test_client()
    client.get("/orders/1")
    client.get("/nope")
    lines = log_lines(capsys)
    assert [(line["event"], line["status"]) for line in lines] == [("request", 404)]


# -- formats and installation --


def test_console_format_is_one_readable_line_with_the_same_fields(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(registry, OBSERVE_LOG_FORMAT="console")
    app.test_client().post("/orders", headers={"X-Request-ID": "c-1"})
    log.info("two words", note="line\nbreak", plain="ok")
    lines = capsys.readouterr().err.splitlines()
    created = next(line for line in lines if " order_created " in line)
    assert re.match(r"\d\d:\d\d:\d\d\.\d{3} INFO +shop\.orders order_created ", created)
    assert re.search(
        r"request_id=c-1 trace_id=[0-9a-f]{32} span_id=[0-9a-f]{16} method=POST route=/orders "
        r"path=/orders order_id=12345",
        created,
    )
    assert lines[-1].endswith('"two words" note="line\\nbreak" plain=ok')
    assert len(lines) == 4  # two app lines, the access line, the line outside


def test_handlers_are_replaced_not_doubled_and_flask_default_removed(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    from flask.logging import default_handler

    first = Flask("shop")
    # What Flask does on first use of app.logger when no handler would take its records.
    logging.getLogger("shop").addHandler(default_handler)
    Observe(first, registry=registry)
    Observe(Flask("shop"), registry=CollectorRegistry())
    handlers = logging.getLogger("shop").handlers
    assert default_handler not in handlers
    assert len(handlers) == 1
    first.logger.warning("once")
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_root_logger_only_when_asked(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    from flask_observe.logs import ObserveHandler

    _app(registry)
    assert not any(isinstance(h, ObserveHandler) for h in logging.getLogger().handlers)
    logging.getLogger("elsewhere").error("not ours")
    assert capsys.readouterr().err == ""

    _app(CollectorRegistry(), OBSERVE_LOG_ROOT=True)
    assert any(isinstance(h, ObserveHandler) for h in logging.getLogger().handlers)
    logging.getLogger("elsewhere").error("ours now")
    (line,) = log_lines(capsys)
    assert (line["logger"], line["event"]) == ("elsewhere", "ours now")


def test_with_json_logging_off_no_handler_is_installed_and_the_access_log_still_runs(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    from flask_observe.logs import ObserveHandler

    app = _app(registry, OBSERVE_LOG_JSON=False)
    assert not any(
        isinstance(h, ObserveHandler) for h in logging.getLogger("flask_observe").handlers
    )
    with caplog.at_level(logging.INFO, logger="flask_observe.access"):
        app.test_client().get("/orders/1")
    (record,) = [r for r in caplog.records if r.name == "flask_observe.access"]
    assert record.__dict__["status"] == 200


# -- under load --


def test_every_line_is_whole_under_concurrency(
    registry: CollectorRegistry, capfd: pytest.CaptureFixture[str]
) -> None:
    """1,000 mixed requests in 8 threads through a real server: every line parses, and each
    request has exactly one access line and its own ID on its own lines."""
    app = _app(registry)
    paths = ["/orders/{n}", "/nope/{n}", "/fail?n={n}", "/orders/{n}"]
    failures: list[str] = []

    def hammer(thread: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for i in range(125):
                n = thread * 1000 + i
                path = paths[n % len(paths)].format(n=n)
                conn.request("GET", path, headers={"X-Request-ID": f"t{thread}-{i}"})
                response = conn.getresponse()
                response.read()
                if response.getheader("X-Request-ID") != f"t{thread}-{i}":
                    failures.append(path)
        except Exception as exc:  # reported by the assertion below
            failures.append(repr(exc))
        finally:
            conn.close()

    with serving(app) as port:
        workers = [threading.Thread(target=hammer, args=(t,)) for t in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert not any(worker.is_alive() for worker in workers)
    assert failures == []
    raw = capfd.readouterr().err
    lines = [json.loads(line) for line in raw.splitlines()]
    access = access_lines(lines)
    assert len(access) == 1000
    assert len({line["request_id"] for line in access}) == 1000
    reads = [line for line in lines if line["event"] == "order_read"]
    assert len(reads) == sum(paths[i % len(paths)] == "/orders/{n}" for i in range(125)) * 8
    for line in reads:
        thread, i = (int(x) for x in line["request_id"][1:].split("-"))
        assert line["order_id"] == thread * 1000 + i


def test_fields_named_like_late_fields_are_renamed(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        raise ValueError("real")
    except ValueError:
        log.exception("boom", exc_type="fake", stack="fake", log_error="fake")
    (line,) = log_lines(capsys)
    assert line["exc_type"] == "ValueError"
    assert line["stack"].startswith("Traceback")
    assert "log_error" not in line
    assert line["extra_exc_type"] == line["extra_stack"] == line["extra_log_error"] == "fake"


@pytest.mark.parametrize("method", ["debug", "info", "warning", "error", "critical", "log"])
def test_records_name_the_callers_function_and_line(
    app: Flask, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    logger = get_logger("shop.orders")
    with caplog.at_level(logging.DEBUG, logger="shop.orders"):
        if method == "log":
            logger.log(logging.INFO, "here")
        else:
            getattr(logger, method)("here")
    (record,) = caplog.records
    assert record.funcName == "test_records_name_the_callers_function_and_line"
    assert record.pathname == __file__


def test_a_later_root_setup_takes_the_handler_off_the_app_logger(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    from flask_observe.logs import ObserveHandler

    _app(registry)
    _app(CollectorRegistry(), OBSERVE_LOG_ROOT=True)
    assert not any(isinstance(h, ObserveHandler) for h in logging.getLogger("shop").handlers)
    log.info("once")
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_lines_that_cannot_be_written_are_counted_and_the_request_goes_on(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """With sys.stderr closed, the views' own lines and the access lines are lost: each is
    counted by reason, the requests are answered all the same, and the loss is told once,
    on file descriptor 2 itself, as one JSON line."""
    closed = io.StringIO()
    closed.close()
    client = _app(registry).test_client()
    capfd.readouterr()
    monkeypatch.setattr(sys, "stderr", closed)
    responses = [client.get("/orders/7") for _ in range(3)]  # a view line + an access line
    monkeypatch.undo()
    assert [r.status_code for r in responses] == [200] * 3
    lost = registry.get_sample_value("flask_observe_log_lines_lost_total", {"reason": "closed"})
    assert lost == 6.0
    assert registry.get_sample_value("flask_observe_errors_total", {"sink": "logs"}) == 0.0
    told = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert len(told) <= 1  # once per reason and process: an earlier test may have told it
    for line in told:
        assert "flask_observe_log_lines_lost_total{reason='closed'}" in line["event"]


@pytest.mark.parametrize("reason", ["broken_pipe", "os_error"])
def test_lines_lost_to_a_broken_pipe_or_a_full_device_are_counted_by_reason(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch, reason: str
) -> None:
    """Real broken streams: a pipe whose reader has gone (a log shipper that died), and a
    device with no space left (``/dev/full``). Each lost line is counted under its reason,
    and every request is answered."""
    if reason == "broken_pipe":
        read_end, write_end = os.pipe()
        os.close(read_end)
        stream = os.fdopen(write_end, "w", buffering=1)
    else:
        stream = open("/dev/full", "w", buffering=1)  # noqa: SIM115 - closed below
    client = _app(registry).test_client()
    monkeypatch.setattr(sys, "stderr", stream)
    try:
        responses = [client.get("/orders/7") for _ in range(3)]  # a view line + an access line
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):  # what is left in its buffer cannot be written
            stream.close()
    assert [r.status_code for r in responses] == [200] * 3
    lost = registry.get_sample_value("flask_observe_log_lines_lost_total", {"reason": reason})
    assert lost == 6.0
    assert registry.get_sample_value("flask_observe_errors_total", {"sink": "logs"}) == 0.0


def test_the_public_names_of_the_old_logs_module_are_importable_still() -> None:
    # flask_observe.logs was one module before it was a package; its public names stay.
    from flask_observe import logs

    old = (
        "ACCESS_LOGGER REDACTED Redactor JsonLogFormatter ConsoleLogFormatter "
        "TraceContextFilter ObserveHandler install_logging"
    )
    for name in old.split():
        assert getattr(logs, name) is not None, name
    assert logs.Redactor(("password",)) is not None
