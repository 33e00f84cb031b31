"""The console's span processor: every span the app's tracer provider ends, kept in a ring.

It is a :class:`~opentelemetry.sdk.trace.SpanProcessor` that keeps the base class's
``on_start`` (it has nothing to do when a span starts), so the provider flask-observe makes
still takes its lean path (:mod:`flask_observe.export.span`). Its ``on_end`` runs on the
request path, in the thread that ends the span, once per span: it appends the finished
span to a :class:`~.buffers.Ring` and does nothing else. A finished span no longer changes
(the lean path builds it once; an SDK span refuses changes once ended), and it holds no
more than the pages read of it (IDs, name, kind, times, status, attributes, events; its
resource and scope are the provider's, shared), so keeping it costs an append, where
copying those parts out would cost a few microseconds per span. IDs are formatted,
attributes redacted and spans grouped by trace only when a page asks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Optional

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from .buffers import Ring

__all__ = ["ConsoleSpanProcessor", "KeptSpan", "Trace", "group_traces"]


class ConsoleSpanProcessor(SpanProcessor):
    """Keeps each ended span in *ring*.

    ``on_start`` and ``_on_ending`` are the base class's, on purpose: see the module's
    docstring.

    :param ring: where the spans go; its size bounds how many are kept.
    """

    def __init__(self, ring: Ring[ReadableSpan]) -> None:
        self.ring = ring
        self._append = ring.append

    def on_end(self, span: ReadableSpan) -> None:
        self._append(span)


class KeptSpan(NamedTuple):
    """One span as the pages show it; IDs in lower-case hex."""

    trace_id: str
    span_id: str
    parent_id: Optional[str]
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_description: Optional[str]
    attributes: Mapping[str, Any]
    events: Sequence[Any]

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    @property
    def failed(self) -> bool:
        return self.status == "ERROR"


def _span(span: ReadableSpan) -> Optional[KeptSpan]:
    context = span.context
    if context is None:  # pragma: no cover - the SDK's spans always have one
        return None
    parent = span.parent
    status = span.status
    return KeptSpan(
        format(context.trace_id, "032x"),
        format(context.span_id, "016x"),
        None if parent is None else format(parent.span_id, "016x"),
        span.name,
        span.kind.name,
        span.start_time or 0,
        span.end_time or 0,
        status.status_code.name,
        status.description,
        span.attributes or {},
        span.events,
    )


class Trace(NamedTuple):
    """The spans of one trace this process ended, with what the traces list shows."""

    trace_id: str
    #: Its spans, by start time.
    spans: list[KeptSpan]
    #: The span that started it here: the root, else the earliest whose parent is not here
    #: (a request whose caller's span is in another service).
    root: KeptSpan

    @property
    def start_ns(self) -> int:
        return min(span.start_ns for span in self.spans)

    @property
    def duration_ms(self) -> float:
        return max(0, max(span.end_ns for span in self.spans) - self.start_ns) / 1e6

    @property
    def failed(self) -> bool:
        """Any span failed, or the request span answered with a server error."""
        return any(span.failed for span in self.spans) or self.status_code >= 500

    @property
    def route(self) -> Optional[str]:
        route = self.root.attributes.get("http.route")
        return route if isinstance(route, str) else None

    @property
    def method(self) -> Optional[str]:
        method = self.root.attributes.get("http.request.method")
        return method if isinstance(method, str) else None

    @property
    def status_code(self) -> int:
        code = self.root.attributes.get("http.response.status_code")
        return code if isinstance(code, int) and not isinstance(code, bool) else 0


def group_traces(kept: Iterable[ReadableSpan]) -> dict[str, Trace]:
    """The kept spans grouped by trace, in the order each trace's first span ended."""
    by_trace: dict[str, list[KeptSpan]] = {}
    for item in kept:
        span = _span(item)
        if span is not None:
            by_trace.setdefault(span.trace_id, []).append(span)
    traces = {}
    for trace_id, spans in by_trace.items():
        spans.sort(key=lambda span: (span.start_ns, -span.end_ns))
        here = {span.span_id for span in spans}
        roots = [span for span in spans if span.parent_id is None or span.parent_id not in here]
        traces[trace_id] = Trace(trace_id, spans, roots[0] if roots else spans[0])
    return traces
