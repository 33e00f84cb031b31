"""The lean span against the SDK's span: the same calls, the same span for the processors.

Each test makes an SDK ``TracerProvider`` (real sampler, ID generator, limits, processors,
an in-memory exporter) and compares what its own tracer hands the exporter with what a
:class:`~flask_observe.export.span.LeanTracer` over a tracer of that provider does, for the
same calls. Through an app, ``tests/test_tracing.py`` runs every test both ways.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, Optional

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes
from prometheus_client import CollectorRegistry

from flask_observe import Observe
from flask_observe.export.span import LeanSpan, LeanTracer, _plan

from ..otlp import export_to, receiving

REMOTE = SpanContext(
    0x0AF7651916CD43DD8448EB211C80319C,
    0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(1),
    trace_state=TraceState([("vendor", "x")]),
)


class Tracers:
    """An SDK provider and its exporter; the SDK's tracer and a lean one over the same."""

    def __init__(self, **provider: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(**provider)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.sdk = self.provider.get_tracer("parity", "1.0")
        self.lean = LeanTracer(self.sdk)

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def tracers() -> Iterator[Tracers]:
    made = Tracers(resource=Resource.create({"service.name": "parity"}))
    yield made
    made.provider.shutdown()


def _attributes(attributes: Attributes) -> dict[str, Any]:
    return dict(attributes or {})


def _dropped(value: Any) -> int:
    return int(getattr(value, "dropped_attributes", 0))


def summary(span: ReadableSpan) -> dict[str, Any]:
    """All a processor can read of *span*, but its IDs and clock readings."""
    return {
        "name": span.name,
        "kind": span.kind,
        "status": (span.status.status_code, span.status.description),
        "attributes": _attributes(span.attributes),
        "dropped_attributes": span.dropped_attributes,
        "events": [
            (
                event.name,
                {
                    k: v
                    for k, v in _attributes(event.attributes).items()
                    if k != "exception.stacktrace"
                },
                _dropped(event),
            )
            for event in span.events
        ],
        "dropped_events": span.dropped_events,
        "links": [
            (link.context, _attributes(link.attributes), _dropped(link)) for link in span.links
        ],
        "dropped_links": span.dropped_links,
        "parent": span.parent,
        "resource": span.resource,
        "scope": span.instrumentation_scope,
        "flags": span.context.trace_flags,
        "trace_state": span.context.trace_state,
        "remote": span.context.is_remote,
    }


# -- the same calls, the same span --

KEYS = st.sampled_from(["a", "b", "c", "d", "e", "", "http.route"])
VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(st.text(max_size=3), max_size=3),
    st.lists(st.integers(-5, 5), max_size=3),
    st.lists(st.one_of(st.integers(0, 3), st.text(max_size=2)), max_size=3),  # mixed: invalid
    st.just(object()),  # not an attribute value
)
ATTRIBUTES = st.dictionaries(KEYS, VALUES, max_size=4)
CONTEXTS = st.sampled_from(
    [
        REMOTE,
        SpanContext(1, 2, is_remote=False),
        SpanContext(0, 0, is_remote=False),  # invalid, kept only with attributes
    ]
)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("attribute"), KEYS, VALUES),
        st.tuples(st.just("attributes"), ATTRIBUTES),
        st.tuples(st.just("event"), st.text(max_size=5), ATTRIBUTES, st.integers(1, 2**60)),
        st.tuples(st.just("link"), CONTEXTS, ATTRIBUTES),
        st.tuples(
            st.just("status"),
            st.sampled_from(list(StatusCode)),
            st.one_of(st.none(), st.text(max_size=5)),
            st.booleans(),
        ),
        st.tuples(st.just("name"), st.text(max_size=8)),
        st.tuples(st.just("exception"), st.sampled_from([ValueError, KeyError, RuntimeError])),
    ),
    max_size=25,
)
LIMITS = st.builds(
    SpanLimits,
    max_span_attributes=st.sampled_from([None, 0, 2, 5, 128]),
    max_events=st.sampled_from([None, 1, 3]),
    max_links=st.sampled_from([None, 1, 3]),
    max_span_attribute_length=st.sampled_from([None, 0, 3]),
    max_event_attributes=st.sampled_from([None, 1, 2]),
    max_link_attributes=st.sampled_from([None, 1, 2]),
    max_attribute_length=st.sampled_from([None, 2]),
)


def apply(span: trace.Span, operations: Sequence[tuple[Any, ...]]) -> None:
    for operation in operations:
        kind = operation[0]
        if kind == "attribute":
            span.set_attribute(operation[1], operation[2])
        elif kind == "attributes":
            span.set_attributes(operation[1])
        elif kind == "event":
            span.add_event(operation[1], operation[2], timestamp=operation[3])
        elif kind == "link":
            span.add_link(operation[1], operation[2])
        elif kind == "status":
            _, code, description, as_object = operation
            if as_object:
                span.set_status(Status(code, description if code is StatusCode.ERROR else None))
            else:
                span.set_status(code, description)
        elif kind == "name":
            span.update_name(operation[1])
        else:
            try:
                raise operation[1]("it failed")
            except Exception as exc:
                span.record_exception(exc, attributes={"extra": 1})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limits=LIMITS,
    start_attributes=ATTRIBUTES,
    links=st.lists(st.tuples(CONTEXTS, ATTRIBUTES), max_size=3),
    operations=OPERATIONS,
    kind=st.sampled_from(list(SpanKind)),
    parent=st.sampled_from([None, REMOTE]),
)
def test_the_same_calls_give_the_processors_the_same_span(
    limits: SpanLimits,
    start_attributes: dict[str, Any],
    links: list[tuple[SpanContext, dict[str, Any]]],
    operations: list[tuple[Any, ...]],
    kind: SpanKind,
    parent: Optional[SpanContext],
) -> None:
    logging.disable(logging.WARNING)  # both warn about what they drop, maybe not as often
    tracers = Tracers(span_limits=limits)
    try:
        parent_context = (
            None if parent is None else trace.set_span_in_context(trace.NonRecordingSpan(parent))
        )
        made = []
        for tracer in (tracers.sdk, tracers.lean):
            span = tracer.start_span(
                "work",
                context=parent_context,
                kind=kind,
                attributes=start_attributes,
                links=[Link(c, a) for c, a in links],
            )
            apply(span, operations)
            span.end()
            made.append(span)
        assert type(made[1]) is LeanSpan
        sdk, lean = tracers.finished()
        assert summary(lean) == summary(sdk)
    finally:
        logging.disable(logging.NOTSET)
        tracers.provider.shutdown()


def test_a_lean_span_is_an_opentelemetry_span_current_in_the_context(tracers: Tracers) -> None:
    with tracers.lean.start_as_current_span("outer", attributes={"k": 1}) as outer:
        assert type(outer) is LeanSpan
        assert trace.get_current_span() is outer
        trace.get_current_span().set_attribute("from.view", "yes")
        with tracers.sdk.start_as_current_span("inner") as inner:  # any OTel tracer's child
            assert inner.parent.span_id == outer.get_span_context().span_id
        with pytest.raises(KeyError), tracers.lean.start_as_current_span("failing"):
            raise KeyError("gone")
    inner_span, failing, outer_span = tracers.finished()
    assert dict(outer_span.attributes) == {"k": 1, "from.view": "yes"}
    assert inner_span.context.trace_id == outer_span.context.trace_id
    assert failing.parent.span_id == outer_span.context.span_id
    assert failing.status.status_code is StatusCode.ERROR
    assert failing.status.description == "KeyError: 'gone'"
    assert [e.name for e in failing.events] == ["exception"]
    assert failing.events[0].attributes["exception.type"] == "KeyError"


def test_the_processors_get_one_readable_span_built_at_the_end(tracers: Tracers) -> None:
    class Seen(SpanProcessor):
        def __init__(self) -> None:
            self.ended: list[Any] = []

        def on_end(self, span: ReadableSpan) -> None:
            self.ended.append(span)

    seen = Seen()
    tracers.provider.add_span_processor(seen)
    span = tracers.lean.start_span("work")
    assert seen.ended == []
    span.end()
    (readable,) = seen.ended
    assert type(readable) is ReadableSpan
    assert readable.end_time is not None
    assert readable.end_time >= readable.start_time
    assert not span.is_recording()


def test_the_providers_sampler_decides(tracers: Tracers) -> None:
    class Tagging(Sampler):
        """Samples every span, tagging it and putting its own tracestate on it."""

        def should_sample(
            self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any
        ) -> SamplingResult:
            return SamplingResult(
                Decision.RECORD_AND_SAMPLE, {"sampled.by": "tagging"}, TraceState([("t", "1")])
            )

        def get_description(self) -> str:
            return "Tagging"

    class RecordOnly(Sampler):
        def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
            return SamplingResult(Decision.RECORD_ONLY)

        def get_description(self) -> str:
            return "RecordOnly"

    dropped = Tracers(sampler=ALWAYS_OFF)
    span = dropped.lean.start_trusted("work", None, SpanKind.SERVER, {"a": 1})
    assert type(span) is trace.NonRecordingSpan
    assert span.get_span_context().is_valid
    assert not span.get_span_context().trace_flags.sampled

    tagged = Tracers(sampler=Tagging())
    tagged.lean.start_trusted("work", None, SpanKind.SERVER, {"a": 1}).end()
    (span,) = tagged.finished()
    assert dict(span.attributes) == {"sampled.by": "tagging"}
    assert span.context.trace_state == TraceState([("t", "1")])

    recorded = Tracers(sampler=RecordOnly())
    only = recorded.lean.start_span("work")
    assert type(only) is LeanSpan
    assert only.is_recording()
    assert not only.get_span_context().trace_flags.sampled
    only.end()
    assert recorded.finished() == []  # the SDK's processors export sampled spans only
    for made in (dropped, tagged, recorded):
        made.provider.shutdown()


def test_trusted_attributes_are_made_only_when_the_span_records_or_the_sampler_asks() -> None:
    made: list[str] = []

    def attributes(name: str) -> Any:
        def make() -> dict[str, Any]:
            made.append(name)
            return {"made.by": name}

        return make

    class Asking(Sampler):
        """Looks at the attributes, then drops the span."""

        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any,
            attributes: Any,
            *args: Any,
            **kwargs: Any,
        ) -> SamplingResult:
            assert attributes == {"made.by": "asked"}
            return SamplingResult(Decision.DROP)

        def get_description(self) -> str:
            return "Asking"

    dropped, sampled, asking = (
        Tracers(sampler=ALWAYS_OFF),
        Tracers(sampler=ALWAYS_ON),
        Tracers(sampler=Asking()),
    )
    span = dropped.lean.start_trusted("work", None, SpanKind.SERVER, attributes("dropped"))
    assert not span.is_recording()
    span = asking.lean.start_trusted("work", None, SpanKind.SERVER, attributes("asked"))
    assert not span.is_recording()
    sampled.lean.start_trusted("work", None, SpanKind.SERVER, attributes("sampled")).end()
    assert made == ["asked", "sampled"]
    (readable,) = sampled.finished()
    assert dict(readable.attributes or {}) == {"made.by": "sampled"}
    for tracers in (dropped, sampled, asking):
        tracers.provider.shutdown()


def test_the_providers_id_generator_and_resource_name_the_span() -> None:
    class Counting(IdGenerator):
        def __init__(self) -> None:
            self.next = 0x10

        def generate_span_id(self) -> int:
            self.next += 1
            return self.next

        def generate_trace_id(self) -> int:
            return 0xABC

    resource = Resource.create({"service.name": "ids"})
    made = Tracers(id_generator=Counting(), resource=resource)
    with made.lean.start_as_current_span("parent"):
        made.lean.start_span("child").end()
    child, parent = made.finished()
    assert (parent.context.trace_id, parent.context.span_id) == (0xABC, 0x11)
    assert (child.context.trace_id, child.context.span_id, child.parent.span_id) == (
        0xABC,
        0x12,
        0x11,
    )
    assert child.resource is resource
    assert child.instrumentation_scope.name == "parity"
    made.provider.shutdown()


def test_a_processor_that_needs_on_start_gets_sdk_spans(tracers: Tracers) -> None:
    class Starting(SpanProcessor):
        def __init__(self) -> None:
            self.started: list[str] = []

        def on_start(self, span: Any, parent_context: Optional[context.Context] = None) -> None:
            self.started.append(span.name)

    assert type(tracers.lean.start_span("before")) is LeanSpan
    starting = Starting()
    tracers.provider.add_span_processor(starting)
    span = tracers.lean.start_span("after")
    assert type(span) is not LeanSpan
    assert starting.started == ["after"]


def test_an_ended_span_takes_nothing_more(
    tracers: Tracers, caplog: pytest.LogCaptureFixture
) -> None:
    span = tracers.lean.start_span("work")
    span.end()
    span.set_attribute("late", 1)
    span.add_event("late")
    span.update_name("renamed")
    span.set_status(StatusCode.ERROR)
    span.end()
    (finished,) = tracers.finished()
    assert finished.name == "work"
    assert dict(finished.attributes) == {}
    assert finished.events == ()
    assert finished.status.status_code is StatusCode.UNSET
    assert "Calling end() on an ended span." in caplog.text
    assert "Setting attribute on ended span." in caplog.text


def test_a_span_given_attribute_after_attribute_stays_bounded(tracers: Tracers) -> None:
    span = tracers.lean.start_span("busy")
    assert type(span) is LeanSpan
    for n in range(10_000):
        span.set_attribute(f"key.{n}", n)
        assert len(span._attributes) <= 2 * 128 + 1
    span.end()
    (finished,) = tracers.finished()
    assert len(finished.attributes) == 128
    assert finished.dropped_attributes == 10_000 - 128
    assert finished.attributes["key.9999"] == 9999


def test_a_list_value_is_kept_as_it_was_when_set(tracers: Tracers) -> None:
    values = ["a", "b"]
    span = tracers.lean.start_span("work")
    span.set_attribute("letters", values)
    values.append("c")
    span.end()
    (finished,) = tracers.finished()
    assert finished.attributes["letters"] == ("a", "b")


# -- through the app --


def test_processors_that_idle_at_start_allow_the_lean_path() -> None:
    from flask_observe.export.processor import CountingBatchProcessor, CountingExporter
    from flask_observe.export.span import _needs_no_start

    class Starting(SimpleSpanProcessor):
        def on_start(self, span: Any, parent_context: Optional[context.Context] = None) -> None:
            pass

    exporter = InMemorySpanExporter()
    counting = CountingBatchProcessor(
        CountingExporter(exporter, lambda reason, count: None), lambda reason, count: None
    )
    try:
        assert _needs_no_start(counting)  # the processor flask-observe makes
        assert _needs_no_start(SimpleSpanProcessor(exporter))
        assert _needs_no_start(SpanProcessor())
        assert not _needs_no_start(Starting(exporter))
    finally:
        counting.shutdown()


@pytest.mark.parametrize("exporter_name", ["none", "otlp"])
def test_the_request_span_of_a_provider_flask_observe_made_is_lean(
    exporter_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    app = Flask("shop")
    app.config.update(OBSERVE_TRACING_SETUP="always", OBSERVE_TRACING_EXPORTER=exporter_name)

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> Any:
        span = trace.get_current_span()
        assert type(span) is LeanSpan
        span.set_attribute("order.id", order_id)
        return {"id": order_id}

    with receiving() as receiver:
        export_to(monkeypatch, receiver)
        Observe(app, registry=CollectorRegistry())
        provider = app.extensions["observe"].tracer_provider
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        traceparent = f"00-{REMOTE.trace_id:032x}-{REMOTE.span_id:016x}-01"
        response = app.test_client().get("/orders/7", headers={"traceparent": traceparent})
        provider.shutdown()
    assert response.status_code == 200
    (server,) = exporter.get_finished_spans()
    assert type(server) is ReadableSpan
    assert server.name == "GET /orders/<int:order_id>"
    assert (server.parent.trace_id, server.parent.span_id) == (REMOTE.trace_id, REMOTE.span_id)
    assert server.attributes["order.id"] == 7
    assert server.attributes["http.route"] == "/orders/<int:order_id>"
    assert server.attributes["http.response.status_code"] == 200
    if exporter_name == "otlp":  # its batch processor sent the same span on the wire
        ((_resource, sent),) = receiver.spans()
        assert sent.name == server.name
        assert sent.span_id == server.context.span_id.to_bytes(8, "big")


# -- the SDK's samplers, decided without asking them --

LEAVES = st.one_of(
    st.sampled_from([ALWAYS_ON, ALWAYS_OFF]),
    st.floats(0.0, 1.0).map(TraceIdRatioBased),
)
SAMPLERS = st.one_of(
    LEAVES,
    st.builds(
        ParentBased,
        root=LEAVES,
        remote_parent_sampled=LEAVES,
        remote_parent_not_sampled=LEAVES,
        local_parent_sampled=LEAVES,
        local_parent_not_sampled=LEAVES,
    ),
    st.floats(0.0, 1.0).map(ParentBasedTraceIdRatio),
)
PARENTS = st.one_of(
    st.none(),
    st.builds(
        SpanContext,
        trace_id=st.integers(1, 2**128 - 1),
        span_id=st.integers(1, 2**64 - 1),
        is_remote=st.booleans(),
        trace_flags=st.sampled_from([TraceFlags(0), TraceFlags(1), TraceFlags(3)]),
        trace_state=st.sampled_from([None, TraceState([("k", "v")])]),
    ),
)


@settings(max_examples=300, deadline=None)
@given(sampler=SAMPLERS, parent=PARENTS, trace_id=st.integers(1, 2**128 - 1))
def test_the_plan_of_an_sdk_sampler_decides_as_the_sampler(
    sampler: Sampler, parent: Optional[SpanContext], trace_id: int
) -> None:
    plan = _plan(sampler)
    assert plan is not None
    context_ = None if parent is None else trace.set_span_in_context(trace.NonRecordingSpan(parent))
    result = sampler.should_sample(context_, trace_id, "work", SpanKind.SERVER, {"a": 1})
    assert plan(parent, trace_id) is result.decision
    assert (None if parent is None else parent.trace_state) == result.trace_state


def test_a_sampler_of_ones_own_is_asked_for_every_span() -> None:
    class Odd(Sampler):
        def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
            return SamplingResult(Decision.RECORD_AND_SAMPLE)

        def get_description(self) -> str:
            return "Odd"

    assert _plan(Odd()) is None
    assert _plan(ParentBased(root=Odd())) is None
    assert _plan(ParentBased(ALWAYS_ON, local_parent_sampled=Odd())) is None
