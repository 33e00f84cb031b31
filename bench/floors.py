"""The floors under a request's cost: each part alone, in a tight loop, no Flask around it.

- the request span: started with the attributes the request gives, renamed by its route,
  given its status and route, ended, and handed to a batch processor, made by the SDK's
  tracer and by flask-observe's lean path over the same provider (the processor's exporter
  drops the spans: encoding them is the next floor);
- the metrics: the prometheus_client calls one request's golden signals take (a counter,
  three histograms and the in-progress gauge, labelled children looked up once), as a
  hand-written middleware would make them.

- the access line: a plain ``logging.Handler`` that writes ``json.dumps`` of the line's
  fields, for one ``logger.info`` per request (the floor line, added to an app's pipeline
  by :func:`add_floor_line`; ``bench/access_line.py`` times it and its parts).

The encoding floor is in ``bench/encoding.py``; ``bench/overhead.py`` prints them all in one
run. Run alone
(``python bench/floors.py``), this prints its own.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

from flask import Flask
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flask_observe.export.span import LeanTracer
from flask_observe.observation import Observation


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


# -- the access line's floor: json.dumps through a plain logging.Handler --

#: Where the floor line goes: line-buffered, as sys.stderr is.
DEVNULL = open(os.devnull, "w", buffering=1)  # noqa: SIM115 - open for the life of the process

#: The floor's fields after the four every record gives, in the access line's order.
FLOOR_FIELDS = (
    "service",
    "request_id",
    "trace_id",
    "span_id",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "client_addr",
    "user_agent",
    "response_bytes",
)
#: The floor's request ID: a constant of the length of a made one.
FLOOR_REQUEST_ID = "5bc702c5434994cd7cce7e418f609c03"


def floor_timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC to the millisecond, as a plain handler would write it."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class FloorHandler(logging.Handler):
    """The floor's handler: the line's object, ``json.dumps``, one write."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {
                "timestamp": floor_timestamp(record),
                "level": record.levelname.lower(),
                "logger": record.name,
                "event": record.getMessage(),
            }
            given = record.__dict__
            for name in FLOOR_FIELDS:
                if name in given:
                    fields[name] = given[name]
            self.stream.write(json.dumps(fields) + "\n")
        except Exception:
            self.handleError(record)


def floor_logger(stream: Any = DEVNULL) -> logging.Logger:
    """The floor's logger, writing to *stream* (``os.devnull``, line-buffered)."""
    logger = logging.getLogger("bench.floor")
    logger.handlers[:] = [FloorHandler(stream)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def floor_fields(observation: Observation) -> dict[str, Any]:
    """The floor line's fields for *observation*, taken as flask-observe takes them."""
    environ = observation.environ
    fields: dict[str, Any] = {"service": observation.service, "request_id": FLOOR_REQUEST_ID}
    if observation.trace_id is not None:
        fields["trace_id"] = observation.trace_id
        fields["span_id"] = observation.span_id
    fields["method"] = environ.get("REQUEST_METHOD")
    fields["route"] = observation.route
    fields["path"] = observation.path
    fields["status"] = observation.status
    fields["duration_ms"] = round(observation.duration * 1000, 3)
    fields["client_addr"] = environ.get("REMOTE_ADDR")
    fields["user_agent"] = environ.get("HTTP_USER_AGENT")
    fields["response_bytes"] = observation.response_size
    return fields


class FloorSink:
    """Writes the floor line when a request finishes: a sink of flask-observe's pipeline."""

    name = "floor"
    start = None

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def finish(self, observation: Observation) -> None:
        self.logger.info("request", extra=floor_fields(observation))


def add_floor_line(app: Flask, logger: Optional[logging.Logger] = None) -> None:
    """Write the floor line for every request *app*'s ``Observe`` observes."""
    sink = FloorSink(logger or floor_logger())
    app.extensions["observe"].pipeline.add_sink(sink)


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
