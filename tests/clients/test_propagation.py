"""Which hosts get the trace context and the request ID, and the pieces that decide what a
call is called: host patterns, peers, redacted URLs."""

from __future__ import annotations

from typing import Optional

import pytest
from prometheus_client import CollectorRegistry

from flask_observe.clients.calls import HostPatterns, peer_of, redact_url

from ..conftest import Spans, sample_value, scrape
from .helpers import KINDS, call, caller

#: What app A is called with: a sampled trace from upstream, its state and some baggage.
INCOMING = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "upstream=t61rcWkgMzE",
    "baggage": "tenant=acme",
}


@pytest.mark.parametrize("kind", KINDS)
def test_the_trace_its_state_and_baggage_go_on_per_the_global_propagator(
    b_url: str, spans: Spans, kind: str
) -> None:
    app = caller(spans, CollectorRegistry())
    reply = app.test_client().get(
        f"/call/{kind}", query_string={"url": f"{b_url}/echo"}, headers=INCOMING
    )
    body = reply.json["body"]
    (client,) = [s for s in spans.finished() if s.name == "GET"]
    assert body["traceparent"] == (
        f"00-{INCOMING['traceparent'].split('-')[1]}-{client.context.span_id:016x}-01"
    )
    assert body["tracestate"] == INCOMING["tracestate"]
    assert body["baggage"] == INCOMING["baggage"]
    assert body["x-request-id"] == reply.headers["X-Request-ID"]


@pytest.mark.parametrize("kind", KINDS)
def test_only_allowed_hosts_receive_the_headers(
    b_url: str, spans: Spans, registry: CollectorRegistry, kind: str
) -> None:
    app = caller(spans, registry, OBSERVE_PROPAGATE_HOSTS=["localhost"])
    as_localhost = b_url.replace("127.0.0.1", "localhost")
    client = app.test_client()
    allowed = client.get(
        f"/call/{kind}", query_string={"url": f"{as_localhost}/echo"}, headers=INCOMING
    ).json
    other = client.get(
        f"/call/{kind}", query_string={"url": f"{b_url}/echo"}, headers=INCOMING
    ).json
    allowed, other = allowed["body"], other["body"]
    assert allowed["traceparent"]
    assert allowed["x-request-id"]
    assert allowed["tracestate"] == INCOMING["tracestate"]
    assert allowed["baggage"] == INCOMING["baggage"]
    for header in ("traceparent", "tracestate", "baggage", "x-request-id"):
        assert header not in other
    # The other host's call has its span and is counted all the same.
    assert sorted(s.attributes["server.address"] for s in spans.finished() if s.name == "GET") == [
        "127.0.0.1",
        "localhost",
    ]
    total = scrape(app.test_client())["http_client_requests"]
    peer = b_url.removeprefix("http://")
    assert sample_value(total, "_total", method="GET", peer=peer, status="200") == 1


def test_an_empty_host_list_sends_the_headers_nowhere(b_url: str, spans: Spans) -> None:
    app = caller(spans, CollectorRegistry(), OBSERVE_PROPAGATE_HOSTS=[])
    with app.test_request_context():
        assert "traceparent" not in call("session", f"{b_url}/echo")[1]
    assert len(spans.finished()) == 1


def test_headers_the_caller_set_are_kept(b_url: str, spans: Spans) -> None:
    app = caller(spans, CollectorRegistry())
    theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with app.test_request_context():
        body = call(
            "httpx", f"{b_url}/echo", headers={"X-Request-ID": "mine", "traceparent": theirs}
        )[1]
    assert (body["traceparent"], body["x-request-id"]) == (theirs, "mine")
    assert not spans.finished()  # their trace, their span: the call is only counted


@pytest.mark.parametrize(
    ("patterns", "host", "port", "allowed"),
    [
        (None, "anything.example", 443, True),
        ((), "localhost", 80, False),
        (("api.internal",), "api.internal", 8080, True),
        (("api.internal",), "web.internal", 8080, False),
        (("api.internal:8080",), "api.internal", 8080, True),
        (("api.internal:8080",), "api.internal", 80, False),
        (("*.svc.local",), "orders.svc.local", 80, True),
        (("*.svc.local",), "a.b.svc.local", 80, True),
        (("*.svc.local",), "svc.local", 80, False),
        (("*.svc.local",), "evilsvc.local", 80, False),
        (("*.svc.local:443",), "orders.svc.local", 80, False),
        (("[::1]",), "::1", 5000, True),
        (("[::1]:5000",), "::1", 5001, False),
        (("10.0.0.7",), "10.0.0.7", 80, True),
    ],
)
def test_host_patterns(
    patterns: Optional[tuple[str, ...]], host: str, port: int, allowed: bool
) -> None:
    hosts = HostPatterns(patterns)
    assert hosts.allows(host, port) is allowed
    assert hosts.allows(host, port) is allowed  # and again, remembered


@pytest.mark.parametrize(
    ("host", "port", "scheme", "peer"),
    [
        ("Inventory.Internal", None, "https", "inventory.internal:443"),
        ("inventory", None, "http", "inventory:80"),
        ("inventory", 8080, "http", "inventory:8080"),
        ("::1", 5000, "http", "[::1]:5000"),
    ],
)
def test_peer_is_host_and_port(host: str, port: Optional[int], scheme: str, peer: str) -> None:
    assert peer_of(host, port, scheme)[0] == peer


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("http://inventory/items/7", "http://inventory/items/7"),
        ("https://u:p@host/x", "https://REDACTED:REDACTED@host/x"),
        ("https://token@host/x", "https://REDACTED@host/x"),
        ("http://host/x?a=1&b=&c", "http://host/x?a=REDACTED&b=REDACTED&c"),
        ("http://host/x?sig=a%3Db#frag", "http://host/x?sig=REDACTED"),
        ("http://host/users/a@b", "http://host/users/a@b"),
    ],
)
def test_redacted_urls(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
