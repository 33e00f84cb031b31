"""One span and one set of headers per call, however many instrumentations wrap it: the
hooks put in twice, several apps, and OpenTelemetry's contrib instrumentations of requests
and httpx outside, inside, or in charge (``contrib`` mode)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from flask_observe.clients.install import MARKER, install_hooks, wrap_once

from ..conftest import Spans, sample_value, scrape
from .helpers import call, caller


def _client_spans(spans: Spans) -> list[Any]:
    return [s for s in spans.finished() if s.kind is SpanKind.CLIENT]


#: One ``traceparent``: a second one sent would reach B joined to it by a comma.
_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-([0-9a-f]{16})-[0-9a-f]{2}")


def _parent_sent_once(body: dict[str, str]) -> int:
    """The parent span ID of the one ``traceparent`` B was sent; the request ID, if any
    (a test request context has none), was sent once too."""
    sent = _TRACEPARENT.fullmatch(body["traceparent"])
    assert sent is not None, body["traceparent"]
    assert "," not in body.get("x-request-id", ""), body
    return int(sent.group(1), 16)


def _wrappers_of_ours(function: Any) -> int:
    count = 0
    while function is not None:
        count += bool(getattr(function, MARKER, False))
        function = getattr(function, "__wrapped__", None)
    return count


def _undone_after(instrumentor: Any) -> Iterator[Any]:
    """*instrumentor* for a test, which it may instrument; uninstrumented after it."""
    yield instrumentor
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


@pytest.fixture
def contrib_requests(spans: Spans) -> Iterator[RequestsInstrumentor]:
    yield from _undone_after(RequestsInstrumentor())


@pytest.fixture
def contrib_httpx(spans: Spans) -> Iterator[HTTPXClientInstrumentor]:
    yield from _undone_after(HTTPXClientInstrumentor())


def test_hooks_put_in_twice_wrap_once(b_url: str, spans: Spans) -> None:
    app = caller(spans, CollectorRegistry())
    caller(spans, CollectorRegistry())  # a second app, in the same process
    install_hooks("requests")
    install_hooks("httpx")
    assert _wrappers_of_ours(requests.Session.send) == 1
    assert _wrappers_of_ours(httpx.Client.send) == 1
    assert _wrappers_of_ours(httpx.AsyncClient.send) == 1
    assert not wrap_once(requests.Session, "send", lambda send: send)
    with app.test_request_context():
        body = call("session", f"{b_url}/echo")[1]
    (client,) = _client_spans(spans)
    assert _parent_sent_once(body) == client.context.span_id


def test_the_contrib_requests_instrumentation_outside_ours_keeps_its_span(
    b_url: str, spans: Spans, registry: CollectorRegistry, contrib_requests: Any
) -> None:
    app = caller(spans, registry)  # ours first, so the instrumentation wraps it
    contrib_requests.instrument(tracer_provider=spans.provider)
    client = app.test_client()
    reply = client.get("/call/session", query_string={"url": f"{b_url}/echo"})
    body = reply.json["body"]
    (span,) = _client_spans(spans)
    assert span.instrumentation_scope.name == "opentelemetry.instrumentation.requests"
    assert _parent_sent_once(body) == span.context.span_id
    assert body["x-request-id"] == reply.headers["X-Request-ID"]
    total = scrape(client)["http_client_requests"]
    peer = b_url.removeprefix("http://")
    assert sample_value(total, "_total", method="GET", peer=peer, status="200") == 1


def test_the_contrib_requests_instrumentation_inside_ours_stands_aside(
    b_url: str,
    spans: Spans,
    registry: CollectorRegistry,
    contrib_requests: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = caller(spans, registry)
    ours = requests.Session.send
    # The instrumentation first, around the bare method, and ours around it.
    monkeypatch.setattr(requests.Session, "send", ours.__wrapped__)
    contrib_requests.instrument(tracer_provider=spans.provider)
    install_hooks("requests")
    assert _wrappers_of_ours(requests.Session.send) == 1
    with app.test_request_context():
        body = call("session", f"{b_url}/echo")[1]
    (span,) = _client_spans(spans)
    assert span.instrumentation_scope.name == "flask_observe"
    assert _parent_sent_once(body) == span.context.span_id


def test_the_contrib_httpx_instrumentation_of_the_transports_stands_aside(
    b_url: str, spans: Spans, contrib_httpx: Any
) -> None:
    app = caller(spans, CollectorRegistry())
    contrib_httpx.instrument(tracer_provider=spans.provider)
    with app.test_request_context():
        sync_body = call("httpx", f"{b_url}/echo")[1]
        async_body = call("async", f"{b_url}/echo")[1]
    spans_made = _client_spans(spans)
    assert [s.instrumentation_scope.name for s in spans_made] == ["flask_observe"] * 2
    parents = {s.context.span_id for s in spans_made}
    assert {_parent_sent_once(b) for b in (sync_body, async_body)} == parents


def test_contrib_mode_leaves_the_client_spans_to_the_instrumentations(
    b_url: str,
    spans: Spans,
    registry: CollectorRegistry,
    contrib_requests: Any,
    contrib_httpx: Any,
) -> None:
    app = caller(spans, registry, OBSERVE_TRACING_INSTRUMENTATION="contrib")
    assert contrib_requests.is_instrumented_by_opentelemetry
    assert contrib_httpx.is_instrumented_by_opentelemetry
    client = app.test_client()
    for kind, library in (("session", "requests"), ("httpx", "httpx")):
        reply = client.get(f"/call/{kind}", query_string={"url": f"{b_url}/echo"})
        assert reply.json["body"]["x-request-id"] == reply.headers["X-Request-ID"]
        scope = f"opentelemetry.instrumentation.{library}"
        (span,) = [s for s in _client_spans(spans) if s.instrumentation_scope.name == scope]
        assert _parent_sent_once(reply.json["body"]) == span.context.span_id
    assert len(_client_spans(spans)) == 2
    total = scrape(client)["http_client_requests"]
    peer = b_url.removeprefix("http://")
    assert sample_value(total, "_total", method="GET", peer=peer, status="200") == 2
