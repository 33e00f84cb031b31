"""The body of an OTLP/HTTP trace export, ``ExportTraceServiceRequest``, written straight
in the protobuf wire format.

The SDK's encoder builds a protobuf message object for every span, attribute and value,
then serializes the tree: about 74 microseconds for a request span with ten attributes.
Here each field is written as bytes as soon as it is known, and what recurs from span to
span is written once and kept: the resource and the instrumentation scope (the same
objects in every batch) and the key/value pairs of attributes (a route, a method, a
status code). That is several times faster, and needs neither protobuf nor
opentelemetry-proto at run time.

The output follows opentelemetry-exporter-otlp-proto-common 1.45's encoder field for
field, in field-number order as protobuf serializes it, so that the bytes are the same as
``encode_spans(spans).SerializeToString()``; ``tests/export/test_encoder.py`` checks that
on generated spans of every shape. Where that encoder differs from its predecessors (a
``None`` attribute value, which 1.45 sends as an empty value), this one does as 1.45 does.

The protobuf wire format in short: a field is a tag, ``field_number << 3 | wire_type``,
then its value: a varint (type 0), 8 little-endian bytes (type 1), a varint length and that
many bytes (type 2, for strings, bytes and nested messages), or 4 little-endian bytes
(type 5). A scalar field that holds its default (0, ``""``) is not written; a field of a
``oneof`` (``AnyValue``'s) or a nested message that was set is written even when empty.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode

__all__ = ["encode_spans"]

_log = logging.getLogger("flask_observe")

# -- the wire format --

# Lengths of strings, attributes and spans are mostly short: their varints are made once.
_SMALL_VARINTS = 2048


def _varint_slow(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_VARINTS = tuple(_varint_slow(n) for n in range(_SMALL_VARINTS))


def _varint(value: int) -> bytes:
    """A non-negative integer as a varint."""
    if value < _SMALL_VARINTS:
        return _VARINTS[value]
    return _varint_slow(value)


def _delimited(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: *tag*, the length of *body*, then *body*."""
    size = len(body)
    return tag + (_VARINTS[size] if size < _SMALL_VARINTS else _varint_slow(size)) + body


def _utf8(text: Any) -> bytes:
    """*text* as protobuf takes a string field: a ``str`` (which must encode to UTF-8, so
    a lone surrogate raises ``UnicodeEncodeError``), or ``bytes`` that are UTF-8."""
    if isinstance(text, str):
        return text.encode("utf-8")
    if isinstance(text, bytes):
        text.decode("utf-8")  # protobuf refuses bytes that are not UTF-8, and so do we
        return bytes(text)
    raise TypeError(f"a string field takes str, not {type(text).__name__}")


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MASK = 2**64 - 1

_DOUBLE = struct.Struct("<Bd")  # a tag, then the IEEE 754 bits, NaN payloads included
_FIXED64 = struct.Struct("<BQ")
_TIMES = struct.Struct("<BQBQ")  # a span's start and end, in one call

# Field tags, by message (``opentelemetry/proto/**/*.proto``).
_REQUEST_RESOURCE_SPANS = b"\x0a"
_RESOURCE_SPANS_RESOURCE = b"\x0a"
_RESOURCE_SPANS_SCOPE_SPANS = b"\x12"
_RESOURCE_SPANS_SCHEMA_URL = b"\x1a"
_SCOPE_SPANS_SCOPE = b"\x0a"
_SCOPE_SPANS_SPANS = b"\x12"
_SCOPE_SPANS_SCHEMA_URL = b"\x1a"
_RESOURCE_ATTRIBUTES = b"\x0a"
_SCOPE_NAME = b"\x0a"
_SCOPE_VERSION = b"\x12"
_SCOPE_ATTRIBUTES = b"\x1a"
_KEY_VALUE_KEY = b"\x0a"
_KEY_VALUE_VALUE = b"\x12"
_KEY_VALUE_LIST_VALUES = b"\x0a"
_ARRAY_VALUES = b"\x0a"
_ANY_STRING = b"\x0a"
_ANY_ARRAY = b"\x2a"
_ANY_KVLIST = b"\x32"
_ANY_BYTES = b"\x3a"
_ANY_TRUE = b"\x10\x01"
_ANY_FALSE = b"\x10\x00"
_ANY_INT = b"\x18"
_ANY_DOUBLE = 0x21
_IDS = b"\x0a\x10"  # Span.trace_id and Link.trace_id, 16 bytes; the span_id follows
_SPAN_ID = b"\x12\x08"
_SPAN_TRACE_STATE = b"\x1a"
_SPAN_PARENT_SPAN_ID = b"\x22\x08"
_SPAN_NAME = b"\x2a"
_SPAN_START = 0x39
_SPAN_END = 0x41
_SPAN_ATTRIBUTES = b"\x4a"
_SPAN_DROPPED_ATTRIBUTES = b"\x50"
_SPAN_EVENTS = b"\x5a"
_SPAN_DROPPED_EVENTS = b"\x60"
_SPAN_LINKS = b"\x6a"
_SPAN_DROPPED_LINKS = b"\x70"
_SPAN_STATUS = b"\x7a"
_EVENT_TIME = 0x09
_EVENT_NAME = b"\x12"
_EVENT_ATTRIBUTES = b"\x1a"
_EVENT_DROPPED_ATTRIBUTES = b"\x20"
_LINK_ATTRIBUTES = b"\x22"
_LINK_DROPPED_ATTRIBUTES = b"\x28"
_STATUS_MESSAGE = b"\x12"
_STATUS_CODE = b"\x18"

# Span.flags and Link.flags (field 16 and 6, fixed32): the SpanFlags bits "the context says
# whether it is remote" (0x100), and "it is" (0x200), of the parent or the linked context.
_SPAN_FLAGS_LOCAL = b"\x85\x01" + struct.pack("<I", 0x100)
_SPAN_FLAGS_REMOTE = b"\x85\x01" + struct.pack("<I", 0x300)
_LINK_FLAGS_LOCAL = b"\x35" + struct.pack("<I", 0x100)
_LINK_FLAGS_REMOTE = b"\x35" + struct.pack("<I", 0x300)

_UNSET = StatusCode.UNSET
_STATUS_UNSET = _SPAN_STATUS + b"\x00"  # present though empty, as the SDK always sets it

# The API numbers kinds from 0 (INTERNAL), OTLP from 1 (0 is "unspecified"). Looked up by
# the member's _value_, since an Enum member hashes through a Python-level __hash__.
_KINDS = {kind.value: b"\x30" + _varint(kind.value + 1) for kind in SpanKind}

# -- attributes --

#: The most key/value pairs kept once encoded, per field. Values come from requests
#: (paths, user agents), so the cache is emptied when full rather than left to grow.
_PAIRS_MAX = 4096
#: Longer strings are encoded each time: they are seldom repeated, and would make the
#: cache large.
_PAIR_STRING_MAX = 256
_CACHED_TYPES = frozenset((str, bool, int))

_warned_keys: set[str] = set()
#: Attribute keys whose values could not be encoded are logged once each, up to this many.
_WARNED_MAX = 32


def _any_value(value: Any) -> bytes:
    """The body of an ``AnyValue`` holding *value* (the SDK's choice of field, and order
    of checks: a ``bool`` is not an ``int``, a ``str`` is not a sequence)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _ANY_TRUE if value else _ANY_FALSE
    if isinstance(value, str):
        return _delimited(_ANY_STRING, value.encode("utf-8"))
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"{value} is out of range of an int64")
        return _ANY_INT + _varint(value & _UINT64_MASK)
    if isinstance(value, float):
        return _DOUBLE.pack(_ANY_DOUBLE, value)
    if isinstance(value, bytes):
        return _delimited(_ANY_BYTES, value)
    if isinstance(value, Sequence):
        body = b"".join([_delimited(_ARRAY_VALUES, _any_value(item)) for item in value])
        return _delimited(_ANY_ARRAY, body)
    if isinstance(value, Mapping):
        body = b"".join(
            [_delimited(_KEY_VALUE_LIST_VALUES, _key_value(str(k), v)) for k, v in value.items()]
        )
        return _delimited(_ANY_KVLIST, body)
    raise TypeError(f"an attribute value cannot be a {type(value).__name__}")


def _key_value(key: Any, value: Any) -> bytes:
    """The body of a ``KeyValue``."""
    encoded = _utf8(key)
    value_field = _delimited(_KEY_VALUE_VALUE, _any_value(value))
    return _delimited(_KEY_VALUE_KEY, encoded) + value_field if encoded else value_field


def _left_out(key: Any, error: Exception) -> None:
    """Log an attribute the encoder leaves out, as the SDK's does: once per key (the SDK
    logs a traceback for every span), and only for the first few keys."""
    name = repr(key)
    if name in _warned_keys or len(_warned_keys) >= _WARNED_MAX:
        return
    _warned_keys.add(name)
    _log.warning(
        "The attribute %s cannot be encoded for OTLP and is left out of the spans "
        "exported (%s: %s); this is logged once for this key.",
        name,
        type(error).__name__,
        error,
    )


def _add_attributes(
    fields: list[bytes],
    attributes: Optional[Mapping[Any, Any]],
    tag: bytes,
    cache: dict[tuple[Any, type, Any], bytes],
) -> list[bytes]:
    """Add each attribute to *fields* as a ``KeyValue`` field with *tag*, and return
    *fields*. Those that cannot be encoded (a value out of an int64's range, a lone
    surrogate, a type OTLP has no field for) are left out, as the SDK leaves them out.
    The fields of short strings, ints and bools are kept in *cache*, and taken from it."""
    if attributes is None:
        return fields
    try:
        # A span's attributes are a BoundedAttributes behind a mappingproxy, whose items
        # are read one Python call at a time; its copy() is a plain dict, read in C.
        items = attributes.copy().items()  # type: ignore[attr-defined]
    except AttributeError:
        items = attributes.items()
    append = fields.append
    for key, value in items:
        cls = value.__class__
        # Only exact str, bool and int: their hash and equality cannot fail, and the type
        # is in the key, since True == 1 and OTLP tells them apart.
        cacheable = cls in _CACHED_TYPES
        if cacheable:
            cached = cache.get((key, cls, value))
            if cached is not None:
                append(cached)
                continue
        try:
            field = _delimited(tag, _key_value(key, value))
        except Exception as error:  # what the SDK catches too, a RecursionError included
            _left_out(key, error)
            continue
        if cacheable and (cls is not str or len(value) <= _PAIR_STRING_MAX):
            if len(cache) >= _PAIRS_MAX:
                cache.clear()
            cache[(key, cls, value)] = field
        append(field)
    return fields


_span_pairs: dict[tuple[Any, type, Any], bytes] = {}
_event_pairs: dict[tuple[Any, type, Any], bytes] = {}
_link_pairs: dict[tuple[Any, type, Any], bytes] = {}

# -- resources and scopes --

#: Resources and scopes kept once encoded, by identity (the object is kept with its
#: encoding, so that its id cannot be reused by another while the entry lives). A process
#: has a handful; this bounds a process that makes a new one per span.
_OBJECTS_MAX = 64

_resources: dict[int, tuple[Resource, bytes, bytes]] = {}
_scopes: dict[int, tuple[Optional[InstrumentationScope], bytes, bytes]] = {}


def _remember(cache: dict[int, Any], obj: Any, *fields: bytes) -> None:
    if len(cache) >= _OBJECTS_MAX:
        cache.clear()
    cache[id(obj)] = (obj, *fields)


def _resource_fields(resource: Resource) -> tuple[bytes, bytes]:
    """``ResourceSpans.resource`` and ``ResourceSpans.schema_url`` for *resource*."""
    known = _resources.get(id(resource))
    if known is not None and known[0] is resource:
        return known[1], known[2]
    # Encoded once per object: there is nothing to share, hence the throwaway caches.
    body = b"".join(_add_attributes([], resource.attributes, _RESOURCE_ATTRIBUTES, {}))
    resource_field = _delimited(_RESOURCE_SPANS_RESOURCE, body)
    schema_url = resource.schema_url
    schema_field = _delimited(_RESOURCE_SPANS_SCHEMA_URL, _utf8(schema_url)) if schema_url else b""
    _remember(_resources, resource, resource_field, schema_field)
    return resource_field, schema_field


def _scope_fields(scope: Optional[InstrumentationScope]) -> tuple[bytes, bytes]:
    """``ScopeSpans.scope`` and ``ScopeSpans.schema_url`` for *scope*; a span without a
    scope still has the field, empty."""
    known = _scopes.get(id(scope))
    if known is not None and known[0] is scope:
        return known[1], known[2]
    parts: list[bytes] = []
    schema_field = b""
    if scope is not None:
        if scope.name:
            parts.append(_delimited(_SCOPE_NAME, _utf8(scope.name)))
        if scope.version:
            parts.append(_delimited(_SCOPE_VERSION, _utf8(scope.version)))
        _add_attributes(parts, scope.attributes, _SCOPE_ATTRIBUTES, {})
        if scope.schema_url:
            schema_field = _delimited(_SCOPE_SPANS_SCHEMA_URL, _utf8(scope.schema_url))
    scope_field = _delimited(_SCOPE_SPANS_SCOPE, b"".join(parts))
    _remember(_scopes, scope, scope_field, schema_field)
    return scope_field, schema_field


# -- spans --

#: Span names are route templates and function names: few, and kept once encoded.
_NAMES_MAX = 1024
_names: dict[str, bytes] = {}


def _name_field(name: Any) -> bytes:
    field = _delimited(_SPAN_NAME, _utf8(name)) if name else b""
    if len(_names) >= _NAMES_MAX:
        _names.clear()
    _names[name] = field
    return field


def _event_field(event: Event) -> bytes:
    parts = []
    if event.timestamp:
        parts.append(_FIXED64.pack(_EVENT_TIME, event.timestamp))
    if event.name:
        parts.append(_delimited(_EVENT_NAME, _utf8(event.name)))
    _add_attributes(parts, event.attributes, _EVENT_ATTRIBUTES, _event_pairs)
    if event.dropped_attributes:
        parts.append(_EVENT_DROPPED_ATTRIBUTES + _varint(event.dropped_attributes))
    return _delimited(_SPAN_EVENTS, b"".join(parts))


def _id_fields(context: SpanContext) -> list[bytes]:
    """The trace_id and span_id fields of *context*, numbered 1 and 2 in a Span and in a
    Link alike."""
    return [
        _IDS,
        context.trace_id.to_bytes(16, "big"),
        _SPAN_ID,
        context.span_id.to_bytes(8, "big"),
    ]


def _link_field(link: Link) -> bytes:
    context = link.context
    parts = _id_fields(context)
    _add_attributes(parts, link.attributes, _LINK_ATTRIBUTES, _link_pairs)
    if link.dropped_attributes:
        parts.append(_LINK_DROPPED_ATTRIBUTES + _varint(link.dropped_attributes))
    parts.append(_LINK_FLAGS_REMOTE if context.is_remote else _LINK_FLAGS_LOCAL)
    return _delimited(_SPAN_LINKS, b"".join(parts))


def _trace_state(context: SpanContext) -> bytes:
    state = context.trace_state
    if not state:
        return b""
    return _delimited(_SPAN_TRACE_STATE, _utf8(",".join([f"{k}={v}" for k, v in state.items()])))


_plain_types: dict[type, bool] = {}


def _plain_lists(span: ReadableSpan) -> bool:
    """Whether *span*'s ``events`` and ``links`` are ReadableSpan's own properties, which
    copy its ``_events`` and ``_links``: then those being empty says that the properties
    are. For most spans they are, and the properties copy a BoundedList under its lock, a
    cost the encoding of a span would otherwise pay twice for nothing."""
    cls = span.__class__
    plain = _plain_types.get(cls)
    if plain is None:
        plain = cls.events is ReadableSpan.events and cls.links is ReadableSpan.links
        if len(_plain_types) >= _OBJECTS_MAX:
            _plain_types.clear()
        _plain_types[cls] = plain
    return plain


def _span_field(span: ReadableSpan) -> bytes:
    """One ``ScopeSpans.spans`` field."""
    context = span.context
    parent = span.parent
    parts = _id_fields(context)
    if context.trace_state:
        parts.append(_trace_state(context))
    if parent is not None:
        parts.append(_SPAN_PARENT_SPAN_ID + parent.span_id.to_bytes(8, "big"))
    name = _names.get(span.name)
    parts.append(_name_field(span.name) if name is None else name)
    parts.append(_KINDS[span.kind._value_])
    start = span.start_time
    end = span.end_time
    if start and end:
        parts.append(_TIMES.pack(_SPAN_START, start, _SPAN_END, end))
    elif start:
        parts.append(_FIXED64.pack(_SPAN_START, start))
    elif end:
        parts.append(_FIXED64.pack(_SPAN_END, end))
    _add_attributes(parts, span.attributes, _SPAN_ATTRIBUTES, _span_pairs)
    dropped = span.dropped_attributes
    if dropped:
        parts.append(_SPAN_DROPPED_ATTRIBUTES + _varint(dropped))
    plain = _plain_lists(span)
    events = () if plain and not span._events else span.events
    if events:
        parts += [_event_field(event) for event in events]
    dropped = span.dropped_events
    if dropped:
        parts.append(_SPAN_DROPPED_EVENTS + _varint(dropped))
    links = () if plain and not span._links else span.links
    if links:
        parts += [_link_field(link) for link in links]
    dropped = span.dropped_links
    if dropped:
        parts.append(_SPAN_DROPPED_LINKS + _varint(dropped))
    status = span.status
    if status is not None:
        code = status.status_code
        message = status.description
        if code is _UNSET and not message:
            parts.append(_STATUS_UNSET)
        else:
            body = _delimited(_STATUS_MESSAGE, _utf8(message)) if message else b""
            if code is not _UNSET:
                body += _STATUS_CODE + _varint(code.value)
            parts.append(_delimited(_SPAN_STATUS, body))
    parts.append(
        _SPAN_FLAGS_REMOTE if parent is not None and parent.is_remote else _SPAN_FLAGS_LOCAL
    )
    return _delimited(_SCOPE_SPANS_SPANS, b"".join(parts))


def _length_prefixed(tag: bytes, parts: list[bytes]) -> list[bytes]:
    """*parts* as the body of a field with *tag*, without joining them yet."""
    return [tag + _varint(sum(map(len, parts))), *parts]


def encode_spans(spans: Iterable[ReadableSpan]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` for *spans*, the body of an OTLP/HTTP
    trace export (``Content-Type: application/x-protobuf``).

    Spans are grouped by resource, then by instrumentation scope, each in the order it
    first appears, as the SDK's encoder groups them (two equal resources are one group).
    An attribute whose value cannot be encoded is left out and logged, once per key.
    A string that is not UTF-8 elsewhere (a span or event name with a lone surrogate)
    raises ``UnicodeEncodeError``, as it does in the SDK's encoder.

    :param spans: finished spans, as a span exporter receives them.
    :returns: the request's bytes; ``b""`` for no span.

    .. versionadded:: 0.1
    """
    # resource -> scope -> encoded spans; the dicts compare resources and scopes by value
    # (their __eq__/__hash__), as the SDK's grouping does. The hash of a Resource dumps
    # its attributes as JSON, so each object is looked up once, by identity.
    groups: dict[Resource, dict[Optional[InstrumentationScope], list[bytes]]] = {}
    seen: dict[tuple[int, int], list[bytes]] = {}
    for span in spans:
        resource = span.resource
        scope = span.instrumentation_scope
        found = seen.get((id(resource), id(scope)))
        if found is None:
            found = groups.setdefault(resource, {}).setdefault(scope, [])
            seen[(id(resource), id(scope))] = found
        found.append(_span_field(span))

    out: list[bytes] = []
    for resource, scopes in groups.items():
        resource_field, resource_schema = _resource_fields(resource)
        body = [resource_field]
        for scope, span_fields in scopes.items():
            scope_field, scope_schema = _scope_fields(scope)
            body += _length_prefixed(
                _RESOURCE_SPANS_SCOPE_SPANS, [scope_field, *span_fields, scope_schema]
            )
        body.append(resource_schema)
        out += _length_prefixed(_REQUEST_RESOURCE_SPANS, body)
    return b"".join(out)


def _forget() -> None:
    """Empty every cache, and forget the keys already logged, as at import (for tests)."""
    for cache in (_span_pairs, _event_pairs, _link_pairs, _resources, _scopes, _names):
        cache.clear()
    _warned_keys.clear()
