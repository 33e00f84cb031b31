"""The span processor: what it keeps of each span, within its bound, without taking the
lean path away from the provider flask-observe makes."""

from __future__ import annotations

from flask import Flask
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flask_observe import Observe, traced
from flask_observe.console.buffers import Ring
from flask_observe.console.spans import ConsoleSpanProcessor, group_traces

from .conftest import ConsoleApp, trace_id_of


def test_the_processor_keeps_the_base_classes_start_hooks() -> None:
    # The lean tracer takes its fast path only while no processor acts when a span starts.
    assert "on_start" not in vars(ConsoleSpanProcessor)
    assert "_on_ending" not in vars(ConsoleSpanProcessor)
    assert ConsoleSpanProcessor.on_start is SpanProcessor.on_start


def test_the_app_keeps_its_lean_spans_with_the_console_on(console_app: ConsoleApp) -> None:
    app = console_app()
    state = app.extensions["observe"]
    assert type(state.tracer).__name__ == "LeanTracer"
    assert state.console.processor is not None
    assert state.tracer._usable()
    app.test_client().get("/orders/7")
    (trace,) = group_traces(state.console.spans.items()).values()
    assert trace.root.name == "GET /orders/<int:order_id>"
    assert trace.route == "/orders/<int:order_id>"
    assert trace.status_code == 200


def test_a_trace_groups_the_request_span_and_its_steps(console_app: ConsoleApp) -> None:
    app = console_app()

    @traced("checkout.pay")
    def pay() -> None:
        @traced("checkout.charge_card")
        def charge() -> None:
            pass

        charge()

    @app.get("/pay")
    def pay_view() -> str:
        pay()
        return "paid"

    response = app.test_client().get("/pay")
    console = app.extensions["observe"].console
    trace = group_traces(console.spans.items())[trace_id_of(response)]
    names = [span.name for span in trace.spans]
    assert names == ["GET /pay", "checkout.pay", "checkout.charge_card"]
    request, step, inner = trace.spans
    assert step.parent_id == request.span_id
    assert inner.parent_id == step.span_id
    assert trace.root is request


def test_the_ring_bounds_the_spans_kept(console_app: ConsoleApp) -> None:
    app = console_app(OBSERVE_CONSOLE_SPANS=5)
    client = app.test_client()
    for i in range(1, 20):
        client.get(f"/orders/{i}")
    assert len(app.extensions["observe"].console.spans) == 5


def test_a_failed_request_makes_a_failed_trace(console_app: ConsoleApp) -> None:
    app = console_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/boom")
    trace = group_traces(app.extensions["observe"].console.spans.items())[trace_id_of(response)]
    assert trace.failed
    assert [event.name for event in trace.root.events] == ["exception"]


def test_a_provider_the_user_gives_keeps_its_spans_and_its_processors() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = Flask("given")
    app.config["OBSERVE_CONSOLE_ENABLED"] = True
    from prometheus_client import CollectorRegistry

    Observe(app, registry=CollectorRegistry(), tracer_provider=provider)
    try:
        app.test_client().get("/nowhere")
        assert len(exporter.get_finished_spans()) == 1
        assert len(app.extensions["observe"].console.spans) == 1
    finally:
        provider.shutdown()


def test_a_global_provider_found_is_left_alone_and_the_page_says_why() -> None:
    from prometheus_client import CollectorRegistry

    app = Flask("found")
    app.config["OBSERVE_CONSOLE_ENABLED"] = True  # the suite's global provider is set
    Observe(app, registry=CollectorRegistry())
    console = app.extensions["observe"].console
    assert console.processor is None
    assert "Observe(tracer_provider=...)" in console.tracing_note
    page = app.test_client().get("/observe/traces").get_data(as_text=True)
    assert "Observe(tracer_provider=...)" in page


def test_a_provider_that_is_not_the_sdks_is_named_on_the_page() -> None:
    from opentelemetry.trace import NoOpTracerProvider
    from prometheus_client import CollectorRegistry

    app = Flask("noop")
    app.config["OBSERVE_CONSOLE_ENABLED"] = True
    Observe(app, registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
    assert "NoOpTracerProvider" in app.extensions["observe"].console.tracing_note


def test_the_processor_keeps_the_finished_span_as_the_provider_hands_it() -> None:
    ring: Ring = Ring(10)
    provider = TracerProvider()
    provider.add_span_processor(ConsoleSpanProcessor(ring))
    with provider.get_tracer("t").start_as_current_span("work", attributes={"a": 1}) as span:
        pass
    (kept,) = ring.items()
    # The SDK hands on_end a read-only snapshot of the span: that is what is kept, no copy.
    assert isinstance(kept, ReadableSpan)
    assert kept.context == span.get_span_context()
    (trace,) = group_traces(ring.items()).values()
    assert trace.root.name == "work"
    assert trace.root.parent_id is None
    assert dict(trace.root.attributes) == {"a": 1}
    provider.shutdown()
