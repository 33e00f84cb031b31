"""The floors under a request's cost: each part alone, in a tight loop, no Flask around it.

- the request span: started with the attributes the request gives, renamed by its route,
  given its status and route, ended, and handed to a batch processor, made by the SDK's
  tracer and by flask-observe's lean path over the same provider (the processor's exporter
  drops the spans: encoding them is the next floor);
- the metrics: the prometheus_client calls one request's golden signals take (a counter,
  three histograms and the in-progress gauge, labelled children looked up once), as a
  hand-written middleware would make them.

The encoding floor is in ``bench/encoding.py`` and the access line's in
``bench/access_line.py``; ``bench/overhead.py`` prints them all in one run. Run alone
(``python bench/floors.py``), this prints its own.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Sequence
from typing import Any, Callable

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flask_observe.export.span import LeanTracer


class _Dropping(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _request_attributes() -> dict[str, Any]:
    """What native tracing starts a request span of the benchmark's request with."""
    return {
        "http.request.method": "GET",
        "url.scheme": "http",
        "server.address": "127.0.0.1",
        "server.port": 5000,
        "network.protocol.version": "1.1",
        "url.path": "/orders/42",
        "client.address": "127.0.0.1",
        "user_agent.original": "bench",
    }


_END = {"http.route": "/orders/<int:order_id>", "http.response.status_code": 200}


def span_calls() -> tuple[dict[str, Callable[[], None]], TracerProvider]:
    """One request span, by the SDK's tracer and by the lean one; and their provider."""
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0)))
    provider.add_span_processor(BatchSpanProcessor(_Dropping()))
    sdk = provider.get_tracer("flask_observe")
    lean = LeanTracer(sdk)

    def sdk_span() -> None:
        span = sdk.start_span("GET", kind=SpanKind.SERVER, attributes=_request_attributes())
        span.update_name("GET /orders/<int:order_id>")
        span.set_attributes(_END)
        span.end()

    def lean_span() -> None:
        span = lean.start_trusted("GET", None, SpanKind.SERVER, _request_attributes())
        span.update_name("GET /orders/<int:order_id>")
        span.set_trusted_attributes(_END)  # type: ignore[attr-defined]
        span.end()

    return {"request span, SDK": sdk_span, "request span, lean": lean_span}, provider


def metrics_call() -> Callable[[], None]:
    """prometheus_client's calls for one request's metrics, children looked up once."""
    registry = CollectorRegistry()
    labels = ("GET", "/orders/<int:order_id>")
    requests = Counter("requests", "", ["method", "endpoint", "status"], registry=registry)
    duration = Histogram("duration", "", ["method", "endpoint"], registry=registry)
    request_size = Histogram("request_size", "", ["method", "endpoint"], registry=registry)
    response_size = Histogram("response_size", "", ["method", "endpoint"], registry=registry)
    in_progress = Gauge("in_progress", "", ["method", "endpoint"], registry=registry)
    children = (
        requests.labels(*labels, "200"),
        duration.labels(*labels),
        request_size.labels(*labels),
        response_size.labels(*labels),
        in_progress.labels(*labels),
    )

    def record() -> None:
        count, seconds, received, sent, flying = children
        flying.inc()
        count.inc()
        seconds.observe(0.0012)
        received.observe(0)
        sent.observe(27)
        flying.dec()

    return record


def per_call_us(call: Callable[[], Any], count: int, rounds: int) -> float:
    """The median over *rounds* of microseconds per call in a loop of *count* calls, with
    the garbage collector paused inside a loop."""
    times = []
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(count):
                call()
            times.append((time.perf_counter() - start) / count * 1e6)
        finally:
            gc.enable()
        time.sleep(0.01)  # the batch processor's thread drains its queue here
    return statistics.median(times)


def floors(count: int = 2000, rounds: int = 15) -> dict[str, float]:
    """Microseconds per call of the span and metrics floors, medians of *rounds* loops."""
    calls, provider = span_calls()
    calls["metrics, prometheus_client"] = metrics_call()
    try:
        return {name: per_call_us(call, count, rounds) for name, call in calls.items()}
    finally:
        provider.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="calls per loop (2000)")
    parser.add_argument("--rounds", type=int, default=15, help="loops per floor (15)")
    args = parser.parse_args()
    for name, us in floors(args.count, args.rounds).items():
        print(f"  {name:40}{us:>8.2f} us")
