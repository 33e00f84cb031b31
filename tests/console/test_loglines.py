"""The log handler: the lines flask-observe writes, with their request and trace IDs and
their redaction, kept in a ring within its bound."""

from __future__ import annotations

import gc
import json
import logging
import weakref

import pytest
from flask import current_app, request

from flask_observe import get_logger
from flask_observe.console.buffers import Ring
from flask_observe.console.loglines import (
    MAX_LINE_CHARS,
    ConsoleLogHandler,
    attach_log_handler,
    parse_lines,
)

from .conftest import ConsoleApp, trace_id_of


def _lines(app: object) -> list[dict[str, object]]:
    return parse_lines(app.extensions["observe"].console.logs.items())  # type: ignore[attr-defined]


def _log_to(handler: logging.Handler, event: str, **extra: object) -> None:
    """Log a warning to *handler* alone, through a logger of the test's own."""
    logger = logging.getLogger("tests.console.alone")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(event, extra=extra)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_lines_carry_the_request_and_trace_ids(console_app: ConsoleApp) -> None:
    app = console_app()

    @app.get("/pay")
    def pay() -> str:
        get_logger("shop").info("paid", order_id=7, card_token="4111")
        return "ok"

    response = app.test_client().get("/pay")
    lines = _lines(app)
    paid = next(line for line in lines if line["event"] == "paid")
    access = next(line for line in lines if line["logger"] == "flask_observe.access")
    assert paid["trace_id"] == access["trace_id"] == trace_id_of(response)
    assert paid["request_id"] == access["request_id"] == response.headers["X-Request-ID"]
    assert paid["order_id"] == 7
    assert paid["card_token"] == "[REDACTED]"


@pytest.mark.parametrize("log_format", ["console", "ecs", "gcp", "datadog"])
def test_the_console_keeps_its_own_field_names_whatever_the_preset_on_stderr(
    console_app: ConsoleApp, log_format: str
) -> None:
    # Its filters and the trace page look lines up by request_id and trace_id.
    app = console_app(OBSERVE_LOG_FORMAT=log_format, OBSERVE_GCP_PROJECT="shop-prod")
    client = app.test_client()
    response = client.get("/orders/3")
    trace_id = trace_id_of(response)
    data = client.get(f"/observe/api/logs?trace_id={trace_id}").get_json()
    (access,) = data["lines"]
    assert access["request_id"] == response.headers["X-Request-ID"]
    assert access["status"] == 200


def test_the_patterns_of_observe_log_redact_hold(console_app: ConsoleApp) -> None:
    app = console_app(OBSERVE_LOG_REDACT=["order_id"])

    @app.get("/pay")
    def pay() -> str:
        current_app.logger.info("paid", extra={"order_id": 7})
        return "ok"

    app.test_client().get("/pay")
    (paid,) = [line for line in _lines(app) if line["event"] == "paid"]
    assert paid["order_id"] == "[REDACTED]"


def test_the_ring_bounds_the_lines_kept(console_app: ConsoleApp) -> None:
    app = console_app(OBSERVE_CONSOLE_LOGS=3)
    client = app.test_client()
    for i in range(1, 10):
        client.get(f"/orders/{i}")
    lines = _lines(app)
    assert [line["path"] for line in lines] == ["/orders/7", "/orders/8", "/orders/9"]


def test_a_huge_line_is_kept_clipped() -> None:
    ring: Ring[str] = Ring(5)
    _log_to(ConsoleLogHandler(ring, service="shop", redact=()), "big", blob="x" * 100_000)
    (line,) = ring.items()
    assert len(line) < 2 * MAX_LINE_CHARS
    data = json.loads(line)
    assert data["event"] == "big"
    assert data["blob"].endswith("[clipped by the console]")


def test_a_line_the_console_cannot_keep_writes_nothing_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Broken(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            raise RuntimeError("cannot")

    ring: Ring[str] = Ring(5)
    handler = ConsoleLogHandler(ring, service="shop", redact=())
    handler.setFormatter(Broken())
    _log_to(handler, "kept nowhere")
    assert capsys.readouterr().err == ""
    assert ring.items() == []


def test_the_handler_is_attached_once_per_line_of_loggers_and_replaced() -> None:
    first = ConsoleLogHandler(Ring(5), service="a", redact=())
    second = ConsoleLogHandler(Ring(5), service="b", redact=())
    names = ["tests.console.app", "tests.console.app.sub", "tests.console.other"]
    attach_log_handler(first, names)
    attach_log_handler(second, names)
    handlers = {name: logging.getLogger(name).handlers for name in names}
    assert handlers["tests.console.app"] == [second]
    assert handlers["tests.console.app.sub"] == []
    assert handlers["tests.console.other"] == [second]


def test_no_handler_and_no_processor_when_the_console_is_off(console_app: ConsoleApp) -> None:
    def console_handlers() -> list[logging.Handler]:
        return [
            h
            for name in (None, "shop", "flask_observe")
            for h in logging.getLogger(name).handlers
            if isinstance(h, ConsoleLogHandler)
        ]

    before = console_handlers()
    app = console_app(OBSERVE_CONSOLE_ENABLED=False)
    state = app.extensions["observe"]
    assert state.console is None
    assert console_handlers() == before
    processors = state.tracer_provider._active_span_processor._span_processors
    assert not any(type(p).__name__ == "ConsoleSpanProcessor" for p in processors)
    assert app.test_client().get("/observe/").status_code == 404


def test_a_line_shows_its_values_as_they_were_when_logged(console_app: ConsoleApp) -> None:
    app = console_app()
    order = {"id": 7, "state": "new"}

    @app.get("/pay")
    def pay() -> str:
        get_logger("shop").info("paid", order=order)
        current_app.logger.info("order %s", order)
        order["state"] = "paid"  # after the lines were logged
        return "ok"

    app.test_client().get("/pay")
    lines = _lines(app)
    (paid,) = [line for line in lines if line["event"] == "paid"]
    assert paid["order"] == {"id": 7, "state": "new"}
    (printed,) = [line["event"] for line in lines if str(line["event"]).startswith("order ")]
    assert "'state': 'new'" in str(printed)


def test_kept_lines_hold_no_request_alive(console_app: ConsoleApp) -> None:
    # The ring bounds the count of lines; each must also be small: a line that kept its
    # request (its environ, its body) would keep up to OBSERVE_CONSOLE_LOGS bodies alive.
    app = console_app()
    seen: list[weakref.ref[object]] = []

    @app.post("/upload")
    def upload() -> str:
        seen.append(weakref.ref(request._get_current_object()))  # type: ignore[attr-defined]
        current_app.logger.info("got %d bytes", len(request.get_data()))
        return "ok"

    response = app.test_client().post("/upload", data=b"x" * 100_000)
    assert response.status_code == 200
    del response
    gc.collect()
    assert seen[0]() is None
    assert any(line["event"] == "got 100000 bytes" for line in _lines(app))
