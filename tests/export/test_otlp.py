"""Traces on the wire: what flask-observe's own provider sends over OTLP/HTTP, and how it
counts the spans that never arrive.

Each test starts a real OTLP/HTTP receiver on 127.0.0.1 (``http.server`` in a thread) and
gives its app ``OBSERVE_TRACING_SETUP = "always"``, so that flask-observe builds the app's
own tracer provider, batch processor and OTLP exporter (the global provider that
``conftest`` sets is left alone). The exporter finds the receiver through the standard
``OTEL_EXPORTER_OTLP_*`` variables, which it reads when it is made, so they are set before
``Observe``. What the receiver got is decoded with OpenTelemetry's own protobuf classes:
nothing of OpenTelemetry or the exporter is mocked.

- the request's spans arrive as one trace: resource, names, kinds, parent links, and the
  trace ID that the ``traceresponse`` header and the access log line carry;
- a full queue drops spans, and ``flask_observe_spans_dropped_total{reason="queue_full"}``
  counts them: what arrived plus what was counted is what was made (but for a race that
  can count a few spans too many, explained in the test);
- with the default queue and a receiver that keeps up, nothing is dropped;
- a batch the receiver refuses is counted as ``reason="export_failed"``;
- an OTLP endpoint that is no URL stops ``init_app`` with a ``ConfigError`` naming it.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from prometheus_client import CollectorRegistry

from flask_observe import ConfigError, Observe, traced
from flask_observe.export import DROP_REASONS

from ..conftest import access_lines, log_lines
from ..otlp import export_to, receiving

#: Requests sent by the two load tests.
LOAD_REQUESTS = 20_000

#: How long the load tests may take to send them before the test gives up.
LOAD_BUDGET_SECONDS = 15.0

#: How many of those requests the load loop sends between two waits, and how long it waits.
YIELD_EVERY = 16
YIELD_SECONDS = 1e-5

DROPPED = "flask_observe_spans_dropped_total"


# -- the apps --


@traced
def reserve_items(items: list[str]) -> Iterator[str]:
    yield from items


@traced
def charge(total_cents: int) -> int:
    return total_cents


@traced
def process_order(items: list[str], total_cents: int) -> int:
    reserved = list(reserve_items(items))
    charge(total_cents)
    return len(reserved)


def order_app(**config: Any) -> Flask:
    """An app whose ``POST /orders`` runs three ``@traced`` functions, exporting over OTLP."""
    app = Flask("shop")
    app.config.update(
        OBSERVE_TRACING_SETUP="always",
        OBSERVE_TRACING_EXPORTER="otlp",
        OBSERVE_SERVICE_NAME="shop",
        **config,
    )

    @app.post("/orders")
    def create_order() -> Any:
        return {"items": process_order(["book", "pen"], 1250)}, 201

    Observe(app, registry=CollectorRegistry())
    return app


def ping_app(**config: Any) -> Flask:
    """A bare ``GET /ping`` app exporting over OTLP, quiet on stderr: one span a request."""
    app = Flask("ping")
    app.config.update(
        OBSERVE_TRACING_SETUP="always",
        OBSERVE_TRACING_EXPORTER="otlp",
        OBSERVE_ACCESS_LOG=False,
        OBSERVE_LOG_JSON=False,
        **config,
    )

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    Observe(app, registry=CollectorRegistry())
    return app


def state(app: Flask) -> Any:
    return app.extensions["observe"]


def dropped(app: Flask, reason: str) -> float:
    value = state(app).registry.get_sample_value(DROPPED, {"reason": reason})
    assert value is not None, f"{DROPPED}{{reason={reason!r}}} is not exposed"
    return value


def ping_many(app: Flask, count: int) -> int:
    """Send *count* ``GET /ping`` through the app's WSGI callable, within the time budget;
    return how many were sent.

    The loop waits a moment every :data:`YIELD_EVERY` requests, as a server waits on its
    socket for the next request. A loop that never waits starves the batch processor's
    export thread, which then runs only when the interpreter forces a thread switch
    (every 5 ms): on a 2-core machine the default queue of 2048 then overflows within
    20,000 requests in about half the runs, although the same exporter keeps up with the
    same requests when the loop waits. The wait is a real one, not ``time.sleep(0)``: on
    Python 3.9 that returns before another thread can take the GIL, and about half of the
    spans were lost.
    """
    base = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/ping",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    deadline = time.monotonic() + LOAD_BUDGET_SECONDS
    sent = 0
    while sent < count and time.monotonic() < deadline:
        body = app({**base, "wsgi.input": io.BytesIO(b"")}, start_response)
        try:
            for _ in body:
                pass
        finally:
            body.close()
        sent += 1
        if sent % YIELD_EVERY == 0:
            time.sleep(YIELD_SECONDS)
    assert statuses == ["200 OK"] * sent
    return sent


# -- the tests --


def test_request_spans_reach_an_otlp_receiver_as_one_trace_linked_to_header_and_log(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with receiving() as receiver:
        export_to(monkeypatch, receiver)
        app = order_app()
        provider = state(app).tracer_provider
        try:
            capsys.readouterr()
            response = app.test_client().post("/orders")
            assert response.status_code == 201
            assert response.get_json() == {"items": 2}
            assert provider.force_flush()
        finally:
            provider.shutdown()
        lines = log_lines(capsys)

    assert receiver.received, "the receiver got nothing"
    for request in receiver.received:
        assert (request.method, request.path) == ("POST", "/v1/traces")
        assert request.headers["content-type"] == "application/x-protobuf"
        assert request.headers["user-agent"].startswith("flask-observe/")  # our exporter

    received = receiver.spans()
    assert {resource.get("service.name") for resource, _ in received} == {"shop"}
    spans = {span.name: span for _, span in received}
    assert len(spans) == len(received) == 4, sorted(spans)
    server = spans["POST /orders"]
    order = spans[f"{__name__}.process_order"]
    reserve = spans[f"{__name__}.reserve_items"]
    charged = spans[f"{__name__}.charge"]
    assert server.kind == ProtoSpan.SpanKind.SPAN_KIND_SERVER
    assert {span.kind for span in (order, reserve, charged)} == {
        ProtoSpan.SpanKind.SPAN_KIND_INTERNAL
    }

    assert server.parent_span_id == b""
    assert order.parent_span_id == server.span_id
    assert reserve.parent_span_id == order.span_id
    assert charged.parent_span_id == order.span_id
    assert {span.trace_id for span in spans.values()} == {server.trace_id}

    trace_id = server.trace_id.hex()
    version, header_trace_id, header_span_id, flags = response.headers["traceresponse"].split("-")
    assert (version, header_trace_id, header_span_id) == ("00", trace_id, server.span_id.hex())
    # W3C trace flags: sampled (0x01); this SDK also sets "random trace ID" (0x02). The OTLP
    # exporter does not carry them, so they are checked against nothing on the wire.
    assert len(flags) == 2
    assert int(flags, 16) & 0x01
    (access,) = access_lines(lines)
    assert access["trace_id"] == trace_id
    assert access["span_id"] == server.span_id.hex()


def load_then_shut_down(app: Flask) -> None:
    """Send LOAD_REQUESTS requests, then shut the app's provider down, which exports what
    its queue still holds."""
    provider = state(app).tracer_provider
    try:
        started = time.perf_counter()
        sent = ping_many(app, LOAD_REQUESTS)
        elapsed = time.perf_counter() - started
        assert sent == LOAD_REQUESTS, f"only {sent} requests in {elapsed:.1f} s"
    finally:
        provider.shutdown()


def test_spans_dropped_from_a_full_queue_are_counted_and_the_rest_arrive(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_observe")
    with receiving(delay=0.2) as receiver:
        export_to(monkeypatch, receiver)
        app = ping_app(OBSERVE_TRACING_QUEUE_SIZE=64, OBSERVE_TRACING_BATCH_SIZE=32)
        load_then_shut_down(app)

    lost = dropped(app, "queue_full")
    assert lost > 0
    assert dropped(app, "export_failed") == dropped(app, "export_error") == 0
    # Every span was sampled and the queue is empty after shutdown: each span either
    # reached the receiver or was pushed out of the full queue, and counted then.
    received = receiver.span_count()
    assert received + lost == LOAD_REQUESTS, (received, lost)

    warnings = [
        r for r in caplog.records if r.name == "flask_observe" and "queue_full" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


def test_default_queue_with_a_prompt_receiver_drops_no_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with receiving() as receiver:
        export_to(monkeypatch, receiver)
        app = ping_app()
        load_then_shut_down(app)

    assert {reason: dropped(app, reason) for reason in DROP_REASONS} == dict.fromkeys(
        DROP_REASONS, 0.0
    )
    assert receiver.span_count() == LOAD_REQUESTS


def test_spans_a_receiver_refuses_are_counted_as_export_failed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_observe")
    with receiving(status=400) as receiver:
        export_to(monkeypatch, receiver)
        app = ping_app()
        provider = state(app).tracer_provider
        client = app.test_client()
        try:
            for _ in range(5):
                assert client.get("/ping").status_code == 200
            assert provider.force_flush()
        finally:
            provider.shutdown()

    assert receiver.span_count() == 5  # sent, and refused
    assert dropped(app, "export_failed") == 5
    assert dropped(app, "queue_full") == dropped(app, "export_error") == 0
    warnings = [
        r for r in caplog.records if r.name == "flask_observe" and "export_failed" in r.getMessage()
    ]
    assert len(warnings) == 1


def test_an_otlp_endpoint_that_is_no_url_stops_init_app_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "otel-collector:4318")
    with pytest.raises(ConfigError) as raised:
        ping_app()
    assert raised.value.key == "OTEL_EXPORTER_OTLP_ENDPOINT"
    assert "http:// or https:// URL" in str(raised.value)
