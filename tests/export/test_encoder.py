"""flask-observe's OTLP span encoder against the SDK's.

``flask_observe.export.encoder.encode_spans`` writes the protobuf bytes of an
``ExportTraceServiceRequest`` itself. It must say exactly what the SDK's encoder
(opentelemetry-exporter-otlp-proto-common, ``encode_spans(spans).SerializeToString()``)
says: the property test generates batches of spans of every shape and checks that both
decode, with opentelemetry-proto, to the same message, and that the bytes are the same.
Where the SDK's encoder raises (a span name that is not UTF-8), ours must raise too.

The installed SDK decides one case: before 1.45 its encoder refused a ``None`` attribute
value, which 1.45 sends as an empty value (as ours does); ``None`` values are generated
only when the installed SDK encodes them.
"""

from __future__ import annotations

import logging
import math
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from flask_observe.export import encoder
from flask_observe.export.encoder import encode_spans

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import encoding  # bench/ is no package: its directory is on the path above

#: The attributes of a request span, as flask-observe sets them: the benchmark's.
REQUEST_ATTRIBUTES = encoding.REQUEST_ATTRIBUTES

START = 1_764_000_000_000_000_000


def sdk_bytes(spans: Sequence[ReadableSpan]) -> bytes:
    return sdk_encode(spans).SerializeToString()


def decoded(body: bytes) -> dict[str, Any]:
    """*body* parsed as the request it is, as a dict: unlike protobuf messages, dicts
    compare a NaN double equal to itself (it is the string ``"NaN"`` there)."""
    return MessageToDict(ExportTraceServiceRequest.FromString(body))


def _sdk_encodes_none() -> bool:
    """Whether the installed SDK's encoder sends ``None`` values (1.45 does; 1.41 logs an
    error and leaves the attribute out), alone and inside a sequence."""
    span = ReadableSpan(
        "probe",
        context=SpanContext(1, 1, False),
        resource=Resource({}),
        attributes={"alone": None, "inside": ["a", None]},
    )
    logging.disable(logging.ERROR)  # the refusal, logged with a traceback
    try:
        message = sdk_encode([span])
    finally:
        logging.disable(logging.NOTSET)
    (resource_spans,) = message.resource_spans
    (scope_spans,) = resource_spans.scope_spans
    (proto,) = scope_spans.spans
    return [kv.key for kv in proto.attributes] == ["alone", "inside"]


SDK_ENCODES_NONE = _sdk_encodes_none()


def request_span(
    path: str = "/orders/42", resource: Optional[Resource] = None, offset: int = 0
) -> ReadableSpan:
    """A finished server span with the attributes of a request to ``GET /orders/42``."""
    return ReadableSpan(
        "GET /orders/<int:order_id>",
        context=SpanContext(
            0x0AF7651916CD43DD8448EB211C80319C + offset,
            0xB7AD6B7169203331 + offset,
            False,
            TraceFlags(TraceFlags.SAMPLED),
        ),
        resource=resource or Resource.create({"service.name": "shop"}),
        attributes=BoundedAttributes(128, {**REQUEST_ATTRIBUTES, "url.path": path}),
        kind=SpanKind.SERVER,
        instrumentation_scope=InstrumentationScope("flask_observe", "0.1.0"),
        start_time=START + offset,
        end_time=START + offset + 1_250_000,
    )


# -- the example tests --


def test_a_request_span_is_encoded_to_the_sdks_bytes() -> None:
    resource = Resource.create({"service.name": "shop"})
    spans = [request_span(f"/orders/{n}", resource, n) for n in range(3)]

    body = encode_spans(spans)

    assert body == sdk_bytes(spans)
    (resource_spans,) = ExportTraceServiceRequest.FromString(body).resource_spans
    assert {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}[
        "service.name"
    ] == "shop"
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("flask_observe", "0.1.0")
    first = scope_spans.spans[0]
    assert first.name == "GET /orders/<int:order_id>"
    assert first.kind == ProtoSpan.SpanKind.SPAN_KIND_SERVER
    assert first.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
    assert first.span_id.hex() == "b7ad6b7169203331"
    assert first.end_time_unix_nano - first.start_time_unix_nano == 1_250_000
    assert first.status.code == ProtoStatus.StatusCode.STATUS_CODE_UNSET
    assert first.flags == 0x100  # "is the parent remote" is known: there is none
    attributes = {kv.key: kv.value for kv in first.attributes}
    assert attributes["http.route"].string_value == "/orders/<int:order_id>"
    assert attributes["http.response.status_code"].int_value == 200
    assert [span.attributes[5].value.string_value for span in scope_spans.spans] == [
        "/orders/0",
        "/orders/1",
        "/orders/2",
    ]


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_spans([]) == sdk_bytes([]) == b""


def test_the_encoder_needs_neither_protobuf_nor_opentelemetry_proto() -> None:
    code = (
        "import sys; import flask_observe.export.encoder; "
        "print(sorted(m for m in sys.modules if m.startswith(('google', 'opentelemetry.proto'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "[]"


def test_an_attribute_out_of_int64_is_left_out_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    encoder._forget()
    caplog.set_level(logging.WARNING)
    spans = [
        ReadableSpan(
            "big",
            context=SpanContext(1, n + 1, False),
            resource=Resource({}),
            attributes={"ok": 1, "too.big": 2**63 + n, "too.small": -(2**63) - 1},
        )
        for n in range(50)
    ]
    caplog.clear()  # what the SDK's encoder logs is not ours to count
    body = encode_spans(spans)

    mine = [r for r in caplog.records if r.name == "flask_observe"]
    assert sorted(r.getMessage().split("'")[1] for r in mine) == ["too.big", "too.small"]
    assert all(r.exc_info is None for r in mine)
    assert body == sdk_bytes(spans)
    (resource_spans,) = ExportTraceServiceRequest.FromString(body).resource_spans
    for span in resource_spans.scope_spans[0].spans:
        assert [kv.key for kv in span.attributes] == ["ok"]


def test_the_cache_of_attributes_stays_bounded_under_client_chosen_values() -> None:
    encoder._forget()
    resource = Resource({"service.name": "shop"})
    for start in range(0, 3 * encoder._PAIRS_MAX, 512):
        spans = [request_span(f"/p/{n}", resource, n) for n in range(start, start + 512)]
        body = encode_spans(spans)
        assert len(encoder._span_pairs) <= encoder._PAIRS_MAX
    assert body == sdk_bytes(spans)


def test_equal_resources_are_one_group_and_distinct_ones_keep_their_order() -> None:
    shop = Resource({"service.name": "shop"}, "https://opentelemetry.io/schemas/1.26.0")
    same_shop = Resource({"service.name": "shop"}, "https://opentelemetry.io/schemas/1.26.0")
    billing = Resource({"service.name": "billing"})
    spans = [
        request_span("/a", billing, 1),
        request_span("/b", shop, 2),
        request_span("/c", same_shop, 3),
        request_span("/d", billing, 4),
    ]
    body = encode_spans(spans)
    assert body == sdk_bytes(spans)
    groups = ExportTraceServiceRequest.FromString(body).resource_spans
    assert [len(group.scope_spans[0].spans) for group in groups] == [2, 2]
    assert [group.schema_url for group in groups] == ["", shop.schema_url]


class ComputedSpan(ReadableSpan):
    """A span whose events and links are properties of its own, not the lists it keeps."""

    @property
    def events(self) -> Sequence[Event]:
        return (Event("computed", {"n": 1}, START),)

    @property
    def links(self) -> Sequence[Link]:
        return (Link(SpanContext(7, 8, True), {"n": 2}),)


def test_events_and_links_are_read_through_a_subclasss_own_properties() -> None:
    spans = [ComputedSpan("computed", context=SpanContext(1, 2, False), resource=Resource({}))]
    body = encode_spans(spans)
    assert body == sdk_bytes(spans)
    (proto,) = ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans
    assert [event.name for event in proto.events] == ["computed"]
    assert [link.span_id.hex() for link in proto.links] == ["0000000000000008"]
    assert proto.links[0].flags == 0x300


# -- the property test --

#: Lone surrogates among other characters: UTF-8 cannot encode them. (``st.text`` leaves
#: them out whatever its alphabet, hence the join.)
NOT_UTF8 = st.lists(
    st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    min_size=1,
    max_size=3,
).map("".join)
UTF8 = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "http.route", "GET /orders/<int:order_id>", "é", "日本", "\U0001f600"]),
)
#: Keys and values: an attribute that is not UTF-8 is left out, the others are sent.
TEXT = st.one_of(UTF8, NOT_UTF8)
#: Span and event names, status messages: one not UTF-8 makes the batch fail, so seldom.
NAMES = st.integers(0, 63).flatmap(lambda n: NOT_UTF8 if n == 0 else UTF8)
KEYS = st.one_of(TEXT, st.sampled_from(["a", "b", "http.request.method"]))

SCALARS = st.one_of(
    st.booleans(),
    TEXT,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 127, 128, 2**63 - 1, -(2**63)]),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, -(2**70)]),  # outside int64: left out
    st.floats(),  # NaN, infinities and -0.0 included
    st.sampled_from([0.0, -0.0, math.nan, -math.nan, math.inf, -math.inf]),
    st.floats().map(lambda f: struct.unpack("<d", struct.pack("<d", f))[0]),
    st.binary(max_size=8),
    st.none() if SDK_ENCODES_NONE else st.nothing(),
)

VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(KEYS, st.integers(-2, 2)), inner, max_size=3),
    ),
    max_leaves=8,
)

ATTRIBUTE_DICTS = st.dictionaries(KEYS, VALUES, max_size=5)


@st.composite
def attribute_maps(draw: st.DrawFn) -> Optional[Mapping[str, Any]]:
    """``None``, a plain dict, or a BoundedAttributes that dropped some (a dropped count)."""
    attributes = draw(ATTRIBUTE_DICTS)
    shape = draw(st.sampled_from(["none", "dict", "bounded"]))
    if shape == "none":
        return None
    if shape == "dict":
        return attributes
    return BoundedAttributes(draw(st.integers(0, 4)), attributes, immutable=True)


IDS = st.tuples(
    st.one_of(st.integers(1, 2**128 - 1), st.sampled_from([1, 2**128 - 1])),
    st.one_of(st.integers(1, 2**64 - 1), st.sampled_from([1, 2**64 - 1])),
)
TRACE_STATES = st.one_of(
    st.just(TraceState()),
    st.lists(
        st.tuples(
            st.sampled_from(["rojo", "congo", "vendor@tenant", "a_b-c*d/e"]),
            st.sampled_from(["00f067aa0ba902b7", "t61rcWkgMzE", "x", "a b"]),
        ),
        max_size=3,
        unique_by=lambda pair: pair[0],
    ).map(TraceState),
)


@st.composite
def contexts(draw: st.DrawFn) -> SpanContext:
    trace_id, span_id = draw(IDS)
    return SpanContext(
        trace_id,
        span_id,
        draw(st.booleans()),
        TraceFlags(draw(st.sampled_from([0, 1]))),
        draw(TRACE_STATES),
    )


TIMES = st.one_of(
    st.none(),
    st.just(0),
    st.integers(1, 2**64 - 1),
    st.integers(START, START + 10**9),
)
STATUSES = st.one_of(
    st.just(Status(StatusCode.UNSET)),
    st.just(Status(StatusCode.OK)),
    st.builds(Status, st.just(StatusCode.ERROR), st.one_of(st.none(), NAMES)),
)


@st.composite
def events(draw: st.DrawFn) -> Event:
    return Event(draw(NAMES), draw(attribute_maps()), draw(TIMES))


@st.composite
def links(draw: st.DrawFn) -> Link:
    return Link(draw(contexts()), draw(attribute_maps()))


def bounded(items: st.SearchStrategy[Any]) -> st.SearchStrategy[Sequence[Any]]:
    """A list, or a BoundedList that dropped some (a dropped count)."""
    return st.one_of(
        st.lists(items, max_size=3),
        st.builds(BoundedList.from_seq, st.integers(0, 2), st.lists(items, max_size=3)),
    )


RESOURCES = st.builds(
    Resource,
    st.dictionaries(KEYS, VALUES, max_size=3),
    st.sampled_from([None, "", "https://opentelemetry.io/schemas/1.26.0"]),
)
SCOPES = st.one_of(
    st.none(),
    st.builds(
        InstrumentationScope,
        st.one_of(NAMES, st.just("flask_observe")),
        st.one_of(st.none(), st.just(""), st.just("0.1.0")),
        st.sampled_from([None, "", "https://opentelemetry.io/schemas/1.26.0"]),
        st.one_of(st.none(), st.dictionaries(KEYS, VALUES, max_size=2)),
    ),
)


@st.composite
def batches(draw: st.DrawFn) -> list[ReadableSpan]:
    """Spans of every shape, sharing a few resources and scopes, equal ones included."""
    resources = draw(st.lists(RESOURCES, min_size=1, max_size=3))
    resources.append(Resource(dict(resources[0].attributes), resources[0].schema_url))
    scopes = draw(st.lists(SCOPES, min_size=1, max_size=3))
    spans = []
    for _ in range(draw(st.integers(1, 5))):
        trace_id, span_id = draw(IDS)
        spans.append(
            ReadableSpan(
                draw(NAMES),
                context=SpanContext(
                    trace_id, span_id, False, TraceFlags(TraceFlags.SAMPLED), draw(TRACE_STATES)
                ),
                parent=draw(st.one_of(st.none(), contexts())),
                resource=draw(st.sampled_from(resources)),
                attributes=draw(attribute_maps()),
                events=draw(bounded(events())),
                links=draw(bounded(links())),
                kind=draw(st.sampled_from(SpanKind)),
                instrumentation_scope=draw(st.sampled_from(scopes)),
                status=draw(STATUSES),
                start_time=draw(TIMES),
                end_time=draw(TIMES),
            )
        )
    return spans


def holds_none(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, Mapping):
        return any(holds_none(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(holds_none(v) for v in value)
    return False


def attributes_hold_none(spans: list[ReadableSpan]) -> bool:
    """Whether any attribute of *spans* (their resources', scopes', events' and links'
    included) is ``None`` or holds one. The SDK before 1.45 cleans some values into
    ``None`` itself (undecodable bytes in a sequence), which its encoder then refuses."""
    holders: list[Any] = []
    for span in spans:
        holders += [span, span.resource, span.instrumentation_scope, *span.events, *span.links]
    return any(
        holds_none(dict(holder.attributes or {})) for holder in holders if holder is not None
    )


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches())
def test_any_batch_encodes_as_the_sdk_encodes_it(spans: list[ReadableSpan]) -> None:
    assume(SDK_ENCODES_NONE or not attributes_hold_none(spans))
    logging.disable(logging.ERROR)  # the SDK's encoder logs a traceback per bad attribute
    try:
        expected = sdk_bytes(spans)
    except Exception as error:  # a name that is not UTF-8: the SDK gives up the batch
        event(f"the SDK raised {type(error).__name__}")
        with pytest.raises(type(error)):
            encode_spans(spans)
        return
    finally:
        logging.disable(logging.NOTSET)

    event(f"{len(spans)} spans, {len(expected) // 256 * 256}+ bytes")
    first = encode_spans(spans)
    again = encode_spans(spans)  # from the caches this time

    assert decoded(first) == decoded(expected)
    assert first == expected
    assert again == expected
