"""The metrics of outgoing calls, read back from ``/metrics``: samples by method, peer and
status, the bounds on peers and exception names, and the exemplars."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from flask_observe.clients.metrics import (
    MAX_ERROR_NAMES,
    OTHER_ERROR,
    OTHER_PEER,
    _Bounds,
    client_metrics,
)

from ..conftest import Spans, sample_value, scrape
from .helpers import call, caller

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def test_calls_are_counted_by_method_peer_and_status(
    b_url: str, registry: CollectorRegistry
) -> None:
    app = caller(None, registry)
    with app.test_request_context():
        for kind in ("get", "session", "httpx", "async"):
            call(kind, f"{b_url}/echo")
        call("httpx", f"{b_url}/status/503")
        call("session", f"{b_url}/status/404", method="DELETE")
        with contextlib.suppress(requests.ConnectionError):
            call("session", "http://127.0.0.1:1/stock")
    families = scrape(app.test_client())
    peer = b_url.removeprefix("http://")
    total = families["http_client_requests"]
    assert total.type == "counter"
    samples = {
        (s.labels["method"], s.labels["peer"], s.labels["status"]): s.value
        for s in total.samples
        if s.name == "http_client_requests_total"
    }
    assert samples == {
        ("GET", peer, "200"): 4,
        ("GET", peer, "503"): 1,
        ("DELETE", peer, "405"): 1,
        ("GET", "127.0.0.1:1", "ConnectionError"): 1,
    }
    duration = families["http_client_request_duration_seconds"]
    assert duration.type == "histogram"
    assert sample_value(duration, "_count", method="GET", peer=peer) == 5
    # The server's buckets, the latency threshold among them.
    les = [s.labels["le"] for s in duration.samples if s.name.endswith("_bucket")]
    assert les[:10] == ["0.01", "0.05", "0.1", "0.25", "0.5", "1.0", "2.0", "2.5", "5.0", "+Inf"]
    assert not [s for s in duration.samples if s.name.endswith("_created")]


def test_the_families_are_there_before_any_call(registry: CollectorRegistry) -> None:
    families = scrape(caller(None, registry).test_client())
    assert families["http_client_requests"].samples == []
    assert families["http_client_request_duration_seconds"].samples == []


def test_300_refused_peers_leave_at_most_101_peer_values(registry: CollectorRegistry) -> None:
    app = caller(None, registry)
    with app.test_request_context(), requests.Session() as session:
        # Every address of 127/8 is this machine, and nothing listens on port 1: each call
        # is refused at once, by a peer of its own.
        for n in range(300):
            with contextlib.suppress(requests.ConnectionError):
                session.get(f"http://127.0.{n // 250}.{n % 250 + 2}:1/", timeout=5)
    total = scrape(app.test_client())["http_client_requests"]
    peers = {s.labels["peer"] for s in total.samples}
    assert len(peers) == 101
    assert OTHER_PEER in peers
    assert sample_value(total, "_total", method="GET", peer=OTHER_PEER, status="ConnectionError")
    assert sum(s.value for s in total.samples if s.name.endswith("_total")) == 300


@pytest.mark.parametrize("multiprocess", [False, True], ids=["one-process", "multiprocess"])
def test_both_stores_bound_the_peers(multiprocess: bool) -> None:
    """The store of multiprocess mode (prometheus_client's own types, whose values stay in
    memory in a process without ``PROMETHEUS_MULTIPROC_DIR``) bounds them as the other."""
    registry = CollectorRegistry()
    metrics = client_metrics(registry, (0.1, 1.0), multiprocess=multiprocess)
    for n in range(300):
        peer = metrics.peer_label(f"10.0.{n // 250}.{n % 250}:80", 100)
        metrics.record("GET", peer, metrics.error_label("ConnectTimeout"), 0.05, None)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    total = families["http_client_requests"]
    assert len({s.labels["peer"] for s in total.samples}) == 101
    assert sample_value(total, "_total", method="GET", peer=OTHER_PEER, status="ConnectTimeout")
    duration = families["http_client_request_duration_seconds"]
    assert sample_value(duration, "_count", method="GET", peer=OTHER_PEER) == 200


def test_the_peer_bound_is_configurable(b_url: str, registry: CollectorRegistry) -> None:
    app = caller(None, registry, OBSERVE_HTTP_CLIENT_MAX_PEERS=1)
    with app.test_request_context():
        call("httpx", f"{b_url}/echo")
        call("httpx", b_url.replace("127.0.0.1", "localhost") + "/echo")
    total = scrape(app.test_client())["http_client_requests"]
    assert {s.labels["peer"] for s in total.samples} == {b_url.removeprefix("http://"), "other"}


def test_exception_names_are_bounded_and_clipped() -> None:
    bounds = _Bounds()
    names = [f"Error{n}" for n in range(MAX_ERROR_NAMES + 5)]
    labels = [bounds.error_label(name) for name in names]
    assert labels[:MAX_ERROR_NAMES] == names[:MAX_ERROR_NAMES]
    assert set(labels[MAX_ERROR_NAMES:]) == {OTHER_ERROR}
    assert bounds.error_label("Error0") == "Error0"  # admitted once, kept
    assert len(_Bounds().error_label("E" * 500)) == 64


def test_the_latency_buckets_carry_the_client_span_as_exemplar(
    b_url: str, spans: Spans, registry: CollectorRegistry
) -> None:
    app = caller(spans, registry)
    with app.test_request_context():
        call("session", f"{b_url}/echo")
    families = scrape(app.test_client(), Accept=OPENMETRICS)
    exemplars: list[Any] = [
        s.exemplar
        for s in families["http_client_request_duration_seconds"].samples
        if s.exemplar is not None
    ]
    (client,) = [s for s in spans.finished() if s.name == "GET"]
    assert [e.labels["trace_id"] for e in exemplars] == [f"{client.context.trace_id:032x}"]


def test_no_client_metrics_with_the_metrics_off(
    b_url: str, spans: Spans, registry: CollectorRegistry
) -> None:
    app = caller(spans, registry, OBSERVE_METRICS_ENABLED=False)
    with app.test_request_context():
        assert call("httpx", f"{b_url}/echo")[1]["traceparent"]
    assert registry.get_sample_value("http_client_requests_total", {}) is None
    assert [s.name for s in spans.finished()] == ["GET"]
