"""The drill: from the latency alert to the slow step, with the real programs.

The example order service runs in this process on a real server, and calls the example
inventory service over HTTP, on a real server too, made slow; a real Prometheus scrapes the
order service every second and evaluates the rules that ``flask observe rules`` writes for
it; the spans of both services go over OTLP/HTTP to a receiver in the test. Then the path
an on-call engineer follows, one step asserted at a time:

1. ``HighLatencyP99`` fires in Prometheus for ``POST /orders``, and ``DependencyDegraded``
   for the calls to the inventory service;
2. the OpenMetrics scrape of ``/metrics`` gives an exemplar with a ``trace_id`` on a bucket
   above the latency threshold;
3. that trace's spans, decoded with opentelemetry-proto, show the inventory step as the
   largest child of ``process_order``, its call to the inventory service under it, and the
   inventory service's own request span under the call, taking the time;
4. the JSON log lines with that ``trace_id`` name the same step as the slow one, and the
   inventory service's own line says where its time went.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from example_app import create_app
from example_app.inventory import create_inventory_app
from example_app.settings import INVENTORY_URL, STEPS, delay_name, failure_rate_name

from ..conftest import require_binary, serving
from ..otlp import export_to, receiving
from .prometheus import PrometheusServer, wait_until

pytestmark = pytest.mark.e2e

#: The inventory step takes this long, give or take half; the other steps next to nothing.
SLOW_SECONDS = 0.4
#: The latency threshold of the alert: a bucket bound, well below the slow step.
THRESHOLD = 0.25
#: Orders sent at the most, and seconds to send them in: the alert fires long before.
MAX_ORDERS = 400
MAX_SECONDS = 60.0
ORDER = {"user_id": 7, "items": [{"sku": "MUG-0042", "quantity": 1}], "total_cents": 1250}
STEP = "example_app.checkout.{}".format
PROCESS_ORDER = STEP("process_order")


@pytest.fixture
def slow_shop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Flask, Flask, Any]]:
    """The order service calling a slow inventory service, both exporting their spans to a
    receiver."""
    with receiving() as receiver:
        export_to(monkeypatch, receiver)
        inventory = create_inventory_app(
            {
                delay_name("check_inventory"): SLOW_SECONDS,
                failure_rate_name("check_inventory"): 0,
                "OBSERVE_TRACING_EXPORTER": "otlp",
                # One process, one log handler: the order service's writes these lines.
                "OBSERVE_LOG_JSON": False,
            },
            registry=CollectorRegistry(),
        )
        try:
            with serving(inventory) as inventory_port:
                shop = _shop(tmp_path, inventory_port)
                try:
                    yield shop, inventory, receiver
                finally:
                    shop.extensions["observe"].tracer_provider.shutdown()
                    shop.extensions["example_app"].jobs.stop()
                    shop.extensions["example_app"].database.dispose()
        finally:
            inventory.extensions["observe"].tracer_provider.shutdown()


def _shop(tmp_path: Path, inventory_port: int) -> Flask:
    config: dict[str, Any] = {
        **{delay_name(step): 0.001 for step in STEPS},
        **{failure_rate_name(step): 0 for step in STEPS},
        INVENTORY_URL: f"http://127.0.0.1:{inventory_port}",
        "EXAMPLE_BUG_RATE": 0,
        "EXAMPLE_DATABASE_URL": f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        # The app's own provider and OTLP exporter, as in production.
        "OBSERVE_TRACING_SETUP": "always",
        "OBSERVE_TRACING_EXPORTER": "otlp",
        "OBSERVE_ALERT_LATENCY_SECONDS": THRESHOLD,
        "OBSERVE_ALERT_LATENCY_FOR": "2s",
        "OBSERVE_ALERT_DEPENDENCY_FOR": "2s",
    }
    return create_app(config, registry=CollectorRegistry())


def _order_traffic(port: int, stop: threading.Event, sent: list[int]) -> None:
    """Place orders one after another until *stop*, within the bounds."""
    body = json.dumps(ORDER)
    deadline = time.monotonic() + MAX_SECONDS
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        while not stop.is_set() and time.monotonic() < deadline and len(sent) < MAX_ORDERS:
            conn.request("POST", "/orders", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            sent.append(response.status)
    finally:
        conn.close()


def _slow_exemplar(port: int) -> tuple[float, str, float]:
    """``(le, trace_id, seconds)`` of the slowest exemplar of ``POST /orders`` in the
    OpenMetrics scrape, which must be on a bucket above the threshold."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = response.read().decode()
    (family,) = [
        f for f in text_string_to_metric_families(text) if f.name == "http_request_duration_seconds"
    ]
    exemplars = [
        (float(s.labels["le"]), s.exemplar.labels["trace_id"], s.exemplar.value)
        for s in family.samples
        if s.name.endswith("_bucket")
        and s.labels.get("endpoint") == "/orders"
        and s.labels.get("method") == "POST"
        and s.exemplar is not None
    ]
    assert exemplars, "no exemplar on POST /orders"
    slowest = max(exemplars, key=lambda e: e[2])
    assert slowest[0] > THRESHOLD, exemplars
    assert slowest[2] > THRESHOLD, exemplars
    return slowest


def test_from_the_latency_alert_to_the_slow_step(
    slow_shop: tuple[Flask, Flask, Any], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    binary = require_binary("prometheus")
    app, inventory, receiver = slow_shop
    inventory_peer = app.extensions["example_app"].settings.checkout.inventory_url[7:]
    result = app.test_cli_runner().invoke(args=["observe", "rules"])
    assert result.exit_code == 0, result.output
    rules = tmp_path / "shop.rules.yml"
    rules.write_text(result.output)

    stop = threading.Event()
    sent: list[int] = []
    with (
        serving(app) as port,
        PrometheusServer(binary, tmp_path, {"shop": [f"127.0.0.1:{port}"]}, [rules]) as prometheus,
    ):
        senders = [
            threading.Thread(target=_order_traffic, args=(port, stop, sent), daemon=True)
            for _ in range(3)
        ]
        for sender in senders:
            sender.start()
        try:
            # 1. The alert: pending first, then firing, for the slow route.
            wait_until(
                "HighLatencyP99 pending",
                lambda: prometheus.alert_state("HighLatencyP99") or None,
                timeout=40,
            )
            wait_until(
                "HighLatencyP99 firing",
                lambda: prometheus.alert_state("HighLatencyP99") == "firing" or None,
                timeout=20,
            )
            (alert,) = [
                a for a in prometheus.alerts() if a["labels"]["alertname"] == "HighLatencyP99"
            ]
            assert alert["labels"]["endpoint"] == "/orders"
            assert alert["labels"]["severity"] == "notify"
            assert float(alert["value"]) > THRESHOLD
            # The calls to the inventory service are slow too, and say who is slow.
            wait_until(
                "DependencyDegraded firing",
                lambda: prometheus.alert_state("DependencyDegraded") == "firing" or None,
                timeout=20,
            )
            (dependency,) = [
                a for a in prometheus.alerts() if a["labels"]["alertname"] == "DependencyDegraded"
            ]
            assert dependency["labels"]["peer"] == inventory_peer
            assert dependency["labels"]["signal"] == "latency"
            assert set(prometheus.rule_health().values()) == {"ok"}
        finally:
            stop.set()
            for sender in senders:
                sender.join(timeout=15)
        assert sent
        assert set(sent) == {201}, sent

        # 2. The exemplar on a slow bucket names a trace.
        _le, trace_id, seconds = _slow_exemplar(port)

    # 3. The trace: the inventory step is the largest child of process_order.
    app.extensions["observe"].tracer_provider.force_flush()
    inventory.extensions["observe"].tracer_provider.force_flush()
    received = [
        (resource["service.name"], span)
        for resource, span in receiver.spans()
        if span.trace_id == bytes.fromhex(trace_id)
    ]
    spans = [span for service, span in received if service == "shop"]
    by_name = {span.name: span for span in spans}
    server = by_name["POST /orders"]
    assert server.parent_span_id == b""
    assert abs((server.end_time_unix_nano - server.start_time_unix_nano) / 1e9 - seconds) < 0.05
    order = by_name[PROCESS_ORDER]
    assert order.parent_span_id == server.span_id
    children = [span for span in spans if span.parent_span_id == order.span_id]
    assert {span.name for span in children} == {STEP(step) for step in STEPS}
    largest = max(children, key=lambda span: span.end_time_unix_nano - span.start_time_unix_nano)
    assert largest.name == STEP("check_inventory")
    # Under the step, its call; under the call, the inventory service's own request span,
    # which takes nearly all of the step's time.
    (call,) = [span for span in spans if span.parent_span_id == largest.span_id]
    assert call.name == "POST"
    assert call.kind == call.SPAN_KIND_CLIENT
    (reservation,) = [span for service, span in received if service == "inventory"]
    assert reservation.name == "POST /reservations"
    assert reservation.parent_span_id == call.span_id
    reserved_seconds = (reservation.end_time_unix_nano - reservation.start_time_unix_nano) / 1e9
    assert reserved_seconds > THRESHOLD

    # 4. The log lines of that trace name the same step.
    lines = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")
    ]
    traced = [line for line in lines if line.get("trace_id") == trace_id]
    steps = [line for line in traced if line["event"] == "checkout_step"]
    assert len(steps) == len(STEPS)
    slowest = max(steps, key=lambda line: line["duration_ms"])
    assert slowest["step"] == "check_inventory"
    assert slowest["span_id"] == largest.span_id.hex()
    assert slowest["duration_ms"] > THRESHOLD * 1000
    accessed = {
        line["service"]: line for line in traced if line["logger"] == "flask_observe.access"
    }
    assert (accessed["shop"]["route"], accessed["shop"]["status"]) == ("/orders", 201)
    # The inventory service's lines of the same trace: its access line, and its own line
    # saying the reservation took the time, written inside its request span.
    assert accessed["inventory"]["route"] == "/reservations"
    assert accessed["inventory"]["request_id"] == accessed["shop"]["request_id"]
    (reserved,) = [line for line in traced if line["event"] == "inventory_reserved"]
    assert reserved["service"] == "inventory"
    assert reserved["span_id"] == reservation.span_id.hex()
    assert reserved["duration_ms"] > THRESHOLD * 1000
