"""The benchmark's apps, untimed: each kind answers, logs and traces as ``make bench`` expects
(its spans reaching the benchmark's collector stand-in over OTLP), and its "SDK span alone"
floor makes the span flask-observe's native tracing makes. The encoding benchmark runs,
briefly, on the spans it says it encodes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from flask_observe import Observe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
# bench/ is no package: its directory is on the path above.
import access_line
import encoding
import overhead


@pytest.fixture(scope="module")
def collector() -> Iterator[None]:
    """The benchmark's collector stand-in, in its own process, stopped by its PID after."""
    saved = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    overhead.start_collector()
    yield
    overhead.stop_collector()
    if saved is None:
        os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    else:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = saved


@pytest.fixture
def providers(collector: None) -> Iterator[None]:
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


def test_the_console_kind_keeps_spans_and_lines_only_while_its_batches_run(
    providers: None,
) -> None:
    app, _ = overhead.one_route_app("observe-console")
    console = app.extensions["observe"].console
    call = overhead.caller(app, "GET", "/orders/42")
    overhead.timed_batch(call, 3, kind="observe-console")
    assert len(console.spans.items()) == 3
    assert len(console.logs.items()) == 3  # the access lines
    call()  # outside its batches, other kinds' lines must not reach the console's handler
    assert len(console.logs.items()) == 3
    assert len(console.spans.items()) == 4  # the provider is the kind's own


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


def test_the_encoding_floor_encodes_request_spans_with_both_encoders() -> None:
    spans = encoding.request_spans(2)
    assert {span.name for span in spans} == {"GET /orders/<int:order_id>"}
    assert dict(spans[0].attributes) == encoding.REQUEST_ATTRIBUTES

    floor = encoding.encoding_floor(batch=8, rounds=2)

    assert set(floor) == {"sdk", "flask_observe", "bytes", "gzip_bytes"}
    assert all(value > 0 for value in floor.values())


def test_the_floor_line_has_the_fields_and_values_of_the_access_line() -> None:
    """bench/access_line.py's floor writes what flask-observe's access line writes: the same
    keys in the same order, the same values but for the time, the logger, the duration and
    the request ID; and only the app with the access line writes one."""
    apps = {kind: access_line.one_route_app(kind) for kind in access_line.KINDS}
    access_line.check_lines(apps)


def test_the_clients_benchmark_runs_every_case(capsys: pytest.CaptureFixture[str]) -> None:
    import clients  # bench/clients.py, not flask_observe.clients

    assert clients.main(["--calls", "5", "--rounds", "1", "--all-cpus"]) == 0
    out = capsys.readouterr().out
    for case in ("bare send", "metrics only", "metrics and span", "observed"):
        assert case in out
    # The contrib instrumentation it compares with is gone again.
    assert not getattr(
        requests.Session.send, "opentelemetry_instrumentation_requests_applied", False
    )


def test_the_recycling_benchmark_compares_folded_files_with_files_left_in_place(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """bench/recycle.py, briefly: both gunicorns count every request, and the directory
    with flask-observe's hooks ends with fewer files than the one with mark_process_dead's
    alone."""
    import recycle

    args = "--workers 1 --max-requests 10 --rounds 2 --requests 40 --routes 2"
    assert recycle.main(args.split()) == 0
    out = capsys.readouterr().out
    assert out.count("(every one)") == 2, out
    last = next(line for line in out.splitlines() if line.split()[:1] == ["2"]).split()
    exited_folded, files_folded, exited_left, files_left = (int(last[i]) for i in (2, 3, 5, 6))
    assert exited_folded >= 4, out
    assert exited_left >= 4, out
    assert files_folded < files_left, out
