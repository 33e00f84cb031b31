"""The benchmark's apps, untimed: each kind answers, logs and traces as ``make bench`` expects,
and its "SDK span alone" floor makes the span flask-observe's native tracing makes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from flask_observe import Observe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
# bench/ is no package: its directory is on the path above.
import access_line
import overhead


@pytest.fixture
def providers() -> Iterator[None]:
    """Shut down the tracer providers the benchmark's apps make, and their threads."""
    yield
    while overhead.PROVIDERS:
        overhead.PROVIDERS.pop().shutdown()


@pytest.mark.parametrize("kind", overhead.KINDS)
def test_every_kind_answers_logs_and_traces_as_the_benchmark_checks(
    kind: str, providers: None
) -> None:
    app, tracing = overhead.one_route_app(kind)
    overhead.check_once(kind, overhead.caller(app, "GET", "/orders/42"), tracing)


def _one_span(app: Flask, provider: TracerProvider, exporter: InMemorySpanExporter) -> Any:
    overhead.caller(app, "GET", "/orders/42")()
    provider.force_flush()
    (span,) = exporter.get_finished_spans()
    return span


def test_the_sdk_span_alone_is_the_span_native_tracing_makes() -> None:
    spans = {}
    for kind in ("sdk-span", "native"):
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        app, _ = overhead.one_route_app("bare")
        if kind == "native":
            app.config.update(OBSERVE_TRACING_INSTRUMENTATION="native", **overhead.LOGS_OFF)
            Observe(app, registry=CollectorRegistry(), tracer_provider=provider)
        else:
            overhead.sdk_span_alone(app, provider)
        spans[kind] = _one_span(app, provider, exporter)
        provider.shutdown()
    floor, native = spans["sdk-span"], spans["native"]
    assert floor.name == native.name == "GET /orders/<int:order_id>"
    assert floor.kind == native.kind
    assert dict(floor.attributes) == dict(native.attributes)


def test_the_floor_line_has_the_fields_and_values_of_the_access_line() -> None:
    """bench/access_line.py's floor writes what flask-observe's access line writes: the same
    keys in the same order, the same values but for the time, the logger, the duration and
    the request ID; and only the app with the access line writes one."""
    apps = {kind: access_line.one_route_app(kind) for kind in access_line.KINDS}
    access_line.check_lines(apps)
