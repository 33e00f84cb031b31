"""Request facts a client chooses (the Host header's port, Content-Length) are checked before
they reach a metric or a span: a hostile value is left out, the request is served, and the
other requests' figures stay exact."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from flask_observe.export.encoder import encode_spans

from ..conftest import Spans, sample_value, scrape, serving

SIZE = "http_request_size_bytes"


def _app(spans: Spans, registry: CollectorRegistry) -> Flask:
    app = Flask("shop")
    app.config.update(OBSERVE_LOG_JSON=False, OBSERVE_ACCESS_LOG=False)

    @app.post("/orders")
    def create_order() -> Any:
        return {"id": 1}, 201

    spans.observe(app, registry=registry)
    return app


@pytest.fixture
def spans() -> Any:
    kept = Spans(made=True)
    yield kept
    kept.shutdown()


def _size_sum(app: Flask) -> float:
    families = scrape(app.test_client())
    value = sample_value(families[SIZE], "_sum", method="POST", endpoint="/orders")
    return value or 0.0


@pytest.mark.parametrize(
    "length",
    [
        "9" * 41,  # the poison of the report: one request, 1e41 bytes
        "-1",
        "+5",
        " 5",
        "5_000",
        "0x10",
        "1e3",
        "\u0661\u0662",  # Arabic-Indic digits, which int() reads as 12
        "9" * 16,
    ],
)
def test_a_length_that_is_no_plain_count_of_bytes_is_not_a_size(
    spans: Spans, registry: CollectorRegistry, length: str
) -> None:
    app = _app(spans, registry)
    client = app.test_client()
    assert client.post("/orders", data=b"x" * 7).status_code == 201
    response = client.post("/orders", environ_overrides={"CONTENT_LENGTH": length})
    assert response.status_code == 201
    assert client.post("/orders", data=b"y" * 5).status_code == 201
    assert _size_sum(app) == 12.0  # the two real bodies, exactly


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lengths=st.lists(st.one_of(st.text(max_size=20), st.integers(0, 10**20).map(str)), max_size=6)
)
def test_no_client_length_moves_the_sum_by_more_than_it_believes(lengths: list[str]) -> None:
    spans = Spans(made=True)
    try:
        app = _app(spans, CollectorRegistry())
        client = app.test_client()
        believed = 0
        for length in lengths:
            if "\x00" in length:
                continue  # not a header value a WSGI server hands on
            client.post("/orders", environ_overrides={"CONTENT_LENGTH": length})
            if length.isascii() and length.isdigit() and len(length) <= 15:
                believed += int(length)
        assert _size_sum(app) == float(believed)
    finally:
        spans.shutdown()


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("shop:99999999999999999999", None),
        ("shop:-1", None),
        ("shop:65536", None),
        ("shop:8080", 8080),
        ("shop:0", 0),
        ("[::1]:70000", None),
        ("shop:\u0668\u0660", None),  # digits, but not ASCII ones
    ],
)
def test_a_port_no_connection_can_have_is_left_out_of_the_span(
    spans: Spans,
    registry: CollectorRegistry,
    host: str,
    port: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _app(spans, registry)
    assert app.test_client().post("/orders", headers={"Host": host}).status_code == 201
    (server,) = spans.finished()
    assert server.attributes.get("server.port") == port
    with caplog.at_level(logging.DEBUG):
        encode_spans([server])  # what the OTLP exporter sends: no traceback, nothing dropped
    assert caplog.records == []


def test_a_long_host_is_clipped(spans: Spans, registry: CollectorRegistry) -> None:
    app = _app(spans, registry)
    app.test_client().post("/orders", headers={"Host": "a" * 5000})
    (server,) = spans.finished()
    assert server.attributes["server.address"] == "a" * 253


def test_raw_requests_with_hostile_facts_are_served_and_measured_right(
    spans: Spans, registry: CollectorRegistry
) -> None:
    """Through a real werkzeug server and a raw socket, as a client sends them."""
    app = _app(spans, registry)
    with serving(app) as port:
        for head in (
            b"POST /orders HTTP/1.1\r\nHost: shop:99999999999999999999\r\nContent-Length: 3\r\n"
            b"Connection: close\r\n\r\nabc",
            b"POST /orders HTTP/1.1\r\nHost: shop:-1\r\nContent-Length: 4\r\n"
            b"Connection: close\r\n\r\nabcd",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(head)
                reply = b""
                while chunk := conn.recv(4096):
                    reply += chunk
            assert reply.startswith(b"HTTP/1.1 201"), reply[:100]
    assert _size_sum(app) == 7.0
    assert [s.attributes.get("server.port") for s in spans.finished()] == [None, None]
