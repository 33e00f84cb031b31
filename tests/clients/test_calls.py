"""Outgoing calls through a real app A and a real service B: spans, headers, statuses."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
import requests
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from flask_observe.clients.calls import LOGGER

from ..conftest import GLOBAL_SPANS, Spans, log_lines, sample_value, scrape, serving
from .helpers import KINDS, SLOW, TIMEOUT, backend, call, caller


def _get(port: int, path: str, **params: str) -> requests.Response:
    """A request to app A from the test, made with the library under test but outside any
    app context of A's."""
    return requests.get(f"http://127.0.0.1:{port}{path}", params=params, timeout=TIMEOUT)


def _client_spans(spans: Spans) -> list[Any]:
    return [s for s in spans.finished() if s.kind is SpanKind.CLIENT]


@pytest.mark.parametrize("made", [False, True], ids=["sdk", "lean"])
@pytest.mark.parametrize("kind", [*KINDS, "async-view"])
def test_each_kind_of_call_carries_its_client_span_and_the_request_id(
    b_url: str, kind: str, made: bool
) -> None:
    spans = Spans(made=made)
    try:
        app = caller(spans, CollectorRegistry())
        with serving(app) as port:
            if kind == "async-view":
                reply = _get(port, "/call-async", url=f"{b_url}/echo?sku=MUG-42")
            else:
                reply = _get(port, f"/call/{kind}", url=f"{b_url}/echo?sku=MUG-42")
        assert reply.status_code == 200
        seen_by_b = reply.json()["body"]
        server = spans.named("GET /call-async" if kind == "async-view" else "GET /call/<kind>")
        (client,) = _client_spans(spans)
    finally:
        spans.shutdown()
    assert client.name == "GET"
    assert client.parent.span_id == server.context.span_id
    assert client.context.trace_id == server.context.trace_id
    version, trace_id, parent_id, flags = seen_by_b["traceparent"].split("-")
    assert version == "00"
    assert int(flags, 16) & 1  # sampled
    assert trace_id == f"{server.context.trace_id:032x}"
    assert parent_id == f"{client.context.span_id:016x}"  # the CLIENT span, not the server's
    assert seen_by_b["x-request-id"] == reply.headers["X-Request-ID"]
    port_b = int(b_url.rsplit(":", 1)[1])
    assert dict(client.attributes) == {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": port_b,
        "url.full": f"{b_url}/echo?sku=REDACTED",
        "http.response.status_code": 200,
    }
    assert client.status.status_code is StatusCode.UNSET
    assert client.instrumentation_scope.name == "flask_observe"


def test_service_b_continues_the_trace_under_the_client_span(spans: Spans) -> None:
    b = backend()
    b_spans = Spans()
    try:
        b_spans.observe(b, registry=CollectorRegistry())
        app = caller(spans, CollectorRegistry())
        with serving(b) as port_b, serving(app) as port:
            reply = _get(port, "/call/session", url=f"http://127.0.0.1:{port_b}/echo")
        (client,) = _client_spans(spans)
        b_server = b_spans.named("GET /echo")
    finally:
        b_spans.shutdown()
    assert reply.status_code == 200
    assert b_server.context.trace_id == client.context.trace_id
    assert b_server.parent.span_id == client.context.span_id
    assert b_server.parent.is_remote


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("code", [404, 503])
def test_an_error_status_makes_the_client_span_an_error(
    b_url: str, spans: Spans, kind: str, code: int
) -> None:
    app = caller(spans, CollectorRegistry())
    with app.test_request_context():
        assert call(kind, f"{b_url}/status/{code}")[0] == code
    (client,) = _client_spans(spans)
    assert client.attributes["http.response.status_code"] == code
    assert client.attributes["error.type"] == str(code)
    assert client.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("get", "ConnectionError"),
        ("session", "ConnectionError"),
        ("httpx", "ConnectError"),
        ("async", "ConnectError"),
    ],
)
def test_a_refused_call_raises_as_it_would_and_is_recorded_by_its_class(
    spans: Spans, registry: CollectorRegistry, kind: str, error: str
) -> None:
    app = caller(spans, registry)
    with (
        app.test_request_context(),
        pytest.raises((requests.ConnectionError, httpx.ConnectError)) as raised,
    ):
        call(kind, "http://127.0.0.1:1/stock")
    assert type(raised.value).__name__ == error
    assert type(raised.value).__module__.split(".")[0] in ("requests", "httpx")
    (client,) = _client_spans(spans)
    assert client.attributes["error.type"] == error
    assert "http.response.status_code" not in client.attributes
    assert client.status.status_code is StatusCode.ERROR
    assert client.events[0].name == "exception"
    families = scrape(app.test_client())
    requests_total = families["http_client_requests"]
    assert sample_value(requests_total, "_total", method="GET", peer="127.0.0.1:1", status=error)


@pytest.mark.parametrize("kind", KINDS)
def test_a_call_that_times_out_is_recorded_by_its_class(
    b_url: str,
    spans: Spans,
    registry: CollectorRegistry,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    """B takes longer than the call's timeout: the library's own timeout error reaches the
    caller, and the span, the metrics and the debug line name its class."""
    app = caller(spans, registry, OBSERVE_HTTP_CLIENT_LOG=True)
    with app.test_request_context():
        log_lines(capsys)
        with pytest.raises((requests.Timeout, httpx.TimeoutException)) as raised:
            call(kind, f"{b_url}/slow", timeout=SLOW / 5)
    error = type(raised.value).__name__
    assert error == "ReadTimeout"
    (client,) = _client_spans(spans)
    assert client.attributes["error.type"] == error
    assert "http.response.status_code" not in client.attributes
    assert client.status.status_code is StatusCode.ERROR
    families = scrape(app.test_client())
    peer = b_url.removeprefix("http://")
    requests_total = families["http_client_requests"]
    assert sample_value(requests_total, "_total", method="GET", peer=peer, status=error) == 1
    duration = families["http_client_request_duration_seconds"]
    assert sample_value(duration, "_count", method="GET", peer=peer) == 1
    (line,) = [line for line in log_lines(capsys) if line.get("logger") == LOGGER]
    assert (line["peer"], line["call_status"]) == (peer, error)


def test_credentials_and_query_values_never_reach_the_span(b_url: str, spans: Spans) -> None:
    app = caller(spans, CollectorRegistry())
    secret_url = b_url.replace("http://", "http://ops:hunter2@") + "/echo?token=s3cr3t&page=2&x"
    with app.test_request_context():
        assert call("session", secret_url)[0] == 200
        assert call("httpx", secret_url)[0] == 200
    for client in _client_spans(spans):
        full = client.attributes["url.full"]
        assert full == b_url.replace("http://", "http://REDACTED:REDACTED@") + (
            "/echo?token=REDACTED&page=REDACTED&x"
        )
        assert "hunter2" not in full
        assert "s3cr3t" not in full


def test_an_unknown_method_is_other_in_the_span_and_the_metrics(
    b_url: str, spans: Spans, registry: CollectorRegistry
) -> None:
    app = caller(spans, registry)
    with app.test_request_context():
        assert call("session", f"{b_url}/echo", method="BREW")[0] == 405
    (client,) = _client_spans(spans)
    assert client.name == "HTTP"
    assert client.attributes["http.request.method"] == "_OTHER"
    assert client.attributes["http.request.method_original"] == "BREW"
    families = scrape(app.test_client())
    peer = b_url.removeprefix("http://")
    assert sample_value(
        families["http_client_requests"], "_total", method="_OTHER", peer=peer, status="405"
    )


def test_a_redirect_followed_is_one_call(b_url: str, spans: Spans) -> None:
    app = caller(spans, CollectorRegistry())
    with app.test_request_context():
        for kind, follow in (("session", {}), ("httpx", {"follow_redirects": True})):
            status, body = call(kind, f"{b_url}/moved", **follow)
            assert status == 200
            assert body["traceparent"]
    assert len(_client_spans(spans)) == 2


def test_calls_outside_any_app_context_use_the_last_app_and_the_global_tracer(
    b_url: str, spans: Spans, registry: CollectorRegistry
) -> None:
    app = caller(spans, registry)
    GLOBAL_SPANS.clear()
    seen: list[Any] = []
    worker = threading.Thread(target=lambda: seen.append(call("httpx", f"{b_url}/echo")))
    worker.start()
    worker.join(timeout=TIMEOUT)
    status, body = seen[0]
    assert status == 200
    (client,) = [s for s in GLOBAL_SPANS.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert client.parent is None
    assert body["traceparent"].split("-")[2] == f"{client.context.span_id:016x}"
    assert "x-request-id" not in body  # no request, no request ID
    assert not _client_spans(spans)
    families = scrape(app.test_client())
    peer = b_url.removeprefix("http://")
    assert sample_value(
        families["http_client_requests"], "_total", method="GET", peer=peer, status="200"
    )


def test_an_app_without_flask_observe_leaves_its_calls_alone(b_url: str, spans: Spans) -> None:
    from flask import Flask

    caller(spans, CollectorRegistry())  # the hooks are in
    plain = Flask("plain")
    with plain.app_context():
        status, body = call("session", f"{b_url}/echo")
    assert status == 200
    assert "traceparent" not in body
    assert not _client_spans(spans)


def test_only_the_listed_libraries_are_observed(b_url: str, spans: Spans) -> None:
    app = caller(spans, CollectorRegistry(), OBSERVE_HTTP_CLIENTS=["httpx"])
    with app.test_request_context():
        assert "traceparent" not in call("session", f"{b_url}/echo")[1]
        assert "traceparent" in call("httpx", f"{b_url}/echo")[1]
    off = caller(spans, CollectorRegistry(), OBSERVE_HTTP_CLIENTS=[])
    with off.test_request_context():
        assert "traceparent" not in call("httpx", f"{b_url}/echo")[1]
    assert "http_client_requests" not in scrape(off.test_client())


def test_with_tracing_off_the_current_context_is_passed_on_without_a_span(
    b_url: str, spans: Spans
) -> None:
    app = caller(None, CollectorRegistry(), OBSERVE_TRACING_INSTRUMENTATION="off")
    tracer = spans.provider.get_tracer("user")
    with app.test_request_context(), tracer.start_as_current_span("users-own") as own:
        body = call("session", f"{b_url}/echo")[1]
    assert body["traceparent"].split("-")[2] == f"{own.get_span_context().span_id:016x}"
    assert [s.name for s in spans.finished()] == ["users-own"]


def test_a_log_line_written_during_the_call_carries_the_request(
    b_url: str, spans: Spans, capsys: pytest.CaptureFixture[str]
) -> None:
    app = caller(spans, CollectorRegistry())
    with serving(app) as port:
        log_lines(capsys)
        reply = _get(port, "/hooked", url=f"{b_url}/echo")
    assert reply.status_code == 200
    (line,) = [line for line in log_lines(capsys) if line["event"] == "inventory_answered"]
    (client,) = _client_spans(spans)
    assert line["request_id"] == reply.headers["X-Request-ID"]
    assert line["trace_id"] == f"{client.context.trace_id:032x}"
    assert line["span_id"] == f"{client.context.span_id:016x}"  # inside the call's span
    assert line["route"] == "/hooked"


def test_the_debug_line_of_each_call(
    b_url: str, spans: Spans, capsys: pytest.CaptureFixture[str]
) -> None:
    app = caller(spans, CollectorRegistry(), OBSERVE_HTTP_CLIENT_LOG=True)
    with serving(app) as port:
        log_lines(capsys)
        reply = _get(port, "/call/httpx", url=f"{b_url}/echo", method="DELETE")
    peer = b_url.removeprefix("http://")
    # The test's own call to A, outside A's context, is A's too: its line is left out.
    (line,) = [line for line in log_lines(capsys) if line.get("peer") == peer]
    (client,) = _client_spans(spans)
    assert line["logger"] == LOGGER
    assert line["level"] == "debug"
    assert line["event"] == "http_client_call"
    assert (line["call_method"], line["call_status"]) == ("DELETE", 405)
    assert 0 < line["call_duration_ms"] < TIMEOUT * 1000
    assert (line["method"], line["route"]) == ("GET", "/call/<kind>")  # the request's
    assert line["request_id"] == reply.headers["X-Request-ID"]
    assert line["span_id"] == f"{client.context.span_id:016x}"


def test_the_debug_line_of_a_refused_call_names_the_exception(
    spans: Spans, capsys: pytest.CaptureFixture[str]
) -> None:
    app = caller(spans, CollectorRegistry(), OBSERVE_HTTP_CLIENT_LOG=True)
    with app.test_request_context():
        log_lines(capsys)
        with pytest.raises(httpx.ConnectError):
            call("async", "http://127.0.0.1:1/stock")
    (line,) = [line for line in log_lines(capsys) if line.get("logger") == LOGGER]
    (client,) = _client_spans(spans)
    assert (line["peer"], line["call_method"], line["call_status"]) == (
        "127.0.0.1:1",
        "GET",
        "ConnectError",
    )
    assert line["span_id"] == f"{client.context.span_id:016x}"


@pytest.mark.parametrize("log_format", ["json", "ecs", "gcp", "datadog"])
def test_the_fields_of_the_debug_line_keep_their_names_in_every_log_format(
    b_url: str, log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The request's ``method`` and ``status`` (Datadog's level) are left where each format
    puts them; the call's fields are never renamed ``extra_*`` for clashing with them."""
    app = caller(
        None,
        CollectorRegistry(),
        OBSERVE_HTTP_CLIENT_LOG=True,
        OBSERVE_LOG_FORMAT=log_format,
        OBSERVE_GCP_PROJECT="shop-prod",
    )
    log_lines(capsys)
    reply = app.test_client().get(
        "/call/session", query_string={"url": f"{b_url}/echo", "method": "DELETE"}
    )
    assert reply.json["status"] == 405
    (line,) = [line for line in log_lines(capsys) if "peer" in line]
    assert (line["call_method"], line["call_status"]) == ("DELETE", 405)
    assert line["call_duration_ms"] > 0
    assert not [key for key in line if key.startswith("extra_")]


def test_no_debug_line_unless_asked(
    b_url: str, spans: Spans, capsys: pytest.CaptureFixture[str]
) -> None:
    app = caller(spans, CollectorRegistry())
    with app.test_request_context():
        call("httpx", f"{b_url}/echo")
    assert not [line for line in capsys.readouterr().err.splitlines() if LOGGER in line]


def test_a_failure_to_record_never_fails_the_call(
    b_url: str, spans: Spans, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = caller(spans, registry)
    metrics = app.extensions["observe"].clients.metrics

    def broken(*args: Any) -> None:
        raise RuntimeError("the store is broken")

    monkeypatch.setattr(metrics, "record", broken)
    with app.test_request_context():
        assert call("session", f"{b_url}/status/201")[0] == 201
        assert call("httpx", f"{b_url}/status/202")[0] == 202
    assert registry.get_sample_value("flask_observe_errors_total", {"sink": "clients"}) == 2
    # The span is ended all the same, and nothing is left current.
    assert len(_client_spans(spans)) == 2
