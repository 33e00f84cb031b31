"""The lean span: how flask-observe makes its own spans when it made the tracer provider.

An SDK span does its bookkeeping as it goes: every attribute is cleaned under a lock as it
is set, the span processors are called when it starts, and a second object, the
:class:`~opentelemetry.sdk.trace.ReadableSpan` the processors get, is built when it ends.
For a request span, that costs more than the request it watches. A :class:`LeanSpan` keeps
its state in plain slots until it ends, then builds that ``ReadableSpan`` once and hands it
to the provider's span processors, which see what an SDK span would have given them:

- the provider's sampler, ID generator, resource and span limits decide as they would for
  an SDK span (a span the sampler drops is OpenTelemetry's ``NonRecordingSpan``);
- attributes flask-observe sets itself (the request's, ``@traced`` arguments) are valid by
  construction and are not cleaned; anything else (a user's ``set_attribute`` on the
  current span, a sampler's attributes) is cleaned at the end, by the SDK's own
  ``BoundedAttributes``, with the same limits and dropped counts;
- events, links, status, ``record_exception`` and ``update_name`` behave as the SDK's.

The lean path is taken only while every span processor of the provider does nothing when
a span starts (the SDK's batch and simple processors, and any processor that keeps the
base class's ``on_start``): a processor added later that needs ``on_start`` switches the
tracer back to SDK spans from the next span on. Providers the user gives are never wrapped.

A span belongs to the code that made it: like any span, it may be read from other threads,
but it is not locked; ending it twice is still harmless (the second ``end`` warns).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from time import time_ns
from types import TracebackType
from typing import Any, Callable, Optional, Union, cast

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util import types

__all__ = ["LeanSpan", "LeanTracer", "lean_tracer"]

_log = logging.getLogger("opentelemetry.sdk.trace")  # where the SDK's span warnings go

_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
#: How many changes of a user's a span keeps before it applies them.
_MAX_CHANGES = 256
#: Whether the SDK's spans set a mapping of attributes in one call (newer SDKs): the
#: lean span replays a ``set_attributes`` the same way, for the same dropped counts.
_SET_ITEMS = hasattr(BoundedAttributes, "_set_items")
#: W3C Trace Context level 2's random-trace-ID flag, where the API knows it.
_RANDOM_FLAG: int = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)


#: What the SDK's own processors do when a span starts or is ending: nothing. A processor
#: whose hooks are these (its class's own, or inherited) needs no call then.
_IDLE_HOOKS = {
    name: {
        getattr(kind, name, None)
        for kind in (SpanProcessor, BatchSpanProcessor, SimpleSpanProcessor)
    }
    for name in ("on_start", "_on_ending")
}


def _needs_no_start(processor: Any) -> bool:
    """Whether *processor* does nothing when a span starts or is ending, so a span may skip
    calling it then and be built for it only at its end."""
    kind = type(processor)
    return all(getattr(kind, name, None) in idle for name, idle in _IDLE_HOOKS.items())


#: A sampler's decision for a span of *parent* (``None`` for a root) and *trace_id*.
_Decide = Callable[[Optional[SpanContext], int], Decision]


def _plan(sampler: Sampler) -> Optional[_Decide]:
    """The decisions of *sampler*, worked out without calling it, where it is one of the
    SDK's own (``ParentBased`` over always-on, always-off or trace-ID-ratio samplers, or one
    of those alone), which decide from the parent's flags and the trace ID only and pass
    the attributes and the parent's trace state through. ``None`` for any other sampler,
    which is then asked for each span. ``tests/export/test_span.py`` checks the plan
    against the sampler itself.
    """
    kind = type(sampler)
    if isinstance(sampler, ParentBased) and kind.should_sample is ParentBased.should_sample:
        delegates = [
            _plan(getattr(sampler, name, None))  # type: ignore[arg-type]
            for name in (
                "_root",
                "_remote_parent_sampled",
                "_remote_parent_not_sampled",
                "_local_parent_sampled",
                "_local_parent_not_sampled",
            )
        ]
        if any(delegate is None for delegate in delegates):
            return None
        root, remote_on, remote_off, local_on, local_off = cast(list[_Decide], delegates)

        def parent_based(parent: Optional[SpanContext], trace_id: int) -> Decision:
            if parent is None:
                return root(parent, trace_id)
            if parent.is_remote:
                chosen = remote_on if parent.trace_flags.sampled else remote_off
            else:
                chosen = local_on if parent.trace_flags.sampled else local_off
            return chosen(parent, trace_id)

        return parent_based
    if kind is StaticSampler:
        decision: Decision = sampler._decision  # type: ignore[attr-defined]
        return lambda parent, trace_id: decision
    if kind is TraceIdRatioBased:
        bound, limit = sampler.bound, TraceIdRatioBased.TRACE_ID_LIMIT  # type: ignore[attr-defined]
        keep, drop = Decision.RECORD_AND_SAMPLE, Decision.DROP
        return lambda parent, trace_id: keep if trace_id & limit < bound else drop
    return None


class LeanTracer(trace.Tracer):
    """A tracer whose spans are :class:`LeanSpan`\\ s, over an SDK tracer of a provider
    flask-observe made: that tracer's sampler, ID generator, resource, limits, scope and
    span processors are the lean spans' too, and it makes the spans itself whenever the
    lean path does not apply."""

    def __init__(self, sdk_tracer: sdk_trace.Tracer) -> None:
        self._sdk = sdk_tracer
        self._processor: Any = sdk_tracer.span_processor
        self._limits: sdk_trace.SpanLimits = sdk_tracer._span_limits
        self._scope = sdk_tracer._instrumentation_scope
        self._info = sdk_tracer.instrumentation_info
        generator = sdk_tracer.id_generator
        self._new_trace_id = generator.generate_trace_id
        self._new_span_id = generator.generate_span_id
        is_random = getattr(generator, "is_trace_id_random", None)
        self._random_ids = bool(_RANDOM_FLAG and is_random is not None and is_random())
        #: The processors last checked, and whether they allowed the lean path.
        self._checked: Any = None
        self._lean = False
        #: The sampler last planned for, and its plan (see :func:`_plan`).
        self._planned: Any = None
        self._plan: Optional[_Decide] = None
        # The SDK counts its spans in metrics of its own when asked to; only its spans can.
        self._sdk_metrics = (
            os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "").strip().lower() == "true"
        )

    def _usable(self) -> bool:
        processors = getattr(self._processor, "_span_processors", None)
        if processors is not self._checked:
            self._lean = (
                processors is not None
                and not self._sdk_metrics
                and all(_needs_no_start(p) for p in processors)
            )
            self._checked = processors
        if not self._lean:
            return False
        enabled = getattr(self._sdk, "_is_enabled", None)
        return enabled is None or bool(enabled())

    def start_span(
        self,
        name: str,
        context: Optional[context_api.Context] = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Optional[Sequence[Link]] = (),
        start_time: Optional[int] = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        """Start a span as the SDK's tracer would (see
        :meth:`opentelemetry.trace.Tracer.start_span`)."""
        if not self._usable():
            return self._sdk.start_span(
                name,
                context,
                kind,
                attributes,
                links,
                start_time,
                record_exception,
                set_status_on_exception,
            )
        return self._start(
            name,
            context,
            kind,
            dict(attributes) if attributes else {},
            False,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    def start_trusted(
        self,
        name: str,
        context: Optional[context_api.Context],
        kind: SpanKind,
        attributes: Union[dict[str, Any], Callable[[], dict[str, Any]]],
    ) -> trace.Span:
        """Start a span whose *attributes* are valid OpenTelemetry attribute values already
        (strings, booleans, numbers) under non-empty string keys, so that they are not
        cleaned. The dict becomes the span's: the caller must not keep it.

        *attributes* may be a function that makes the dict: it is called only when the span
        records, or when the sampler must see them, so a request that is not sampled does
        not pay for them."""
        if not self._usable():
            return self._sdk.start_span(
                name, context, kind, attributes() if callable(attributes) else attributes
            )
        return self._start(name, context, kind, attributes, True, (), None, True, True)

    def _start(
        self,
        name: str,
        context: Optional[context_api.Context],
        kind: SpanKind,
        given: Union[dict[str, Any], Callable[[], dict[str, Any]]],
        trusted: bool,
        links: Optional[Sequence[Link]],
        start_time: Optional[int],
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> trace.Span:
        parent: Optional[SpanContext] = trace.get_current_span(context).get_span_context()
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = self._new_trace_id()
            random_ids = self._random_ids
        else:
            trace_id = parent.trace_id
            random_ids = bool(_RANDOM_FLAG and parent.trace_flags & _RANDOM_FLAG)
        links = links or ()
        sampler = self._sdk.sampler
        if sampler is not self._planned:
            self._plan = _plan(sampler)
            self._planned = sampler
        if self._plan is not None:
            decision = self._plan(parent, trace_id)
            trace_state = None if parent is None else parent.trace_state
        else:
            # A sampler of the application's may look at the attributes: made now.
            attributes = given = given() if callable(given) else given
            result = sampler.should_sample(context, trace_id, name, kind, attributes, links)
            decision = result.decision
            trace_state = result.trace_state
            if decision is not Decision.DROP and result.attributes != attributes:
                # The sampler had its say: its attributes are the span's.
                given, trusted = dict(result.attributes), False
        flags = _SAMPLED if decision is Decision.RECORD_AND_SAMPLE else _NOT_SAMPLED
        if random_ids:
            flags = TraceFlags(flags | _RANDOM_FLAG)
        span_context = SpanContext(
            trace_id,
            self._new_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=trace_state,
        )
        if decision is Decision.DROP:
            return NonRecordingSpan(span_context)
        attributes = given() if callable(given) else given
        return LeanSpan(
            self,
            name,
            span_context,
            parent,
            kind,
            attributes,
            trusted,
            links,
            start_time if start_time is not None else time_ns(),
            record_exception,
            set_status_on_exception,
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]  # the API's decorator is private
        self,
        name: str,
        context: Optional[context_api.Context] = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Optional[Sequence[Link]] = (),
        start_time: Optional[int] = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        """Start a span and make it current in a ``with`` block, as the SDK's tracer does."""
        span = self.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current

    def _ended(self, span: sdk_trace.ReadableSpan) -> None:
        self._processor.on_end(span)


class LeanSpan(trace.Span):
    """A recording span of a :class:`LeanTracer`: OpenTelemetry's whole ``Span`` API, its
    state in slots until :meth:`end` hands the span processors one ``ReadableSpan``."""

    __slots__ = (
        "_attributes",
        "_bounded",
        "_changes",
        "_context",
        "_end_time",
        "_events",
        "_kind",
        "_links",
        "_name",
        "_open",
        "_parent",
        "_record_exception",
        "_set_status_on_exception",
        "_start_time",
        "_status",
        "_tracer",
        "_trusted",
    )

    def __init__(
        self,
        tracer: LeanTracer,
        name: str,
        context: SpanContext,
        parent: Optional[SpanContext],
        kind: SpanKind,
        attributes: dict[str, Any],
        trusted: bool,
        links: Sequence[Link],
        start_time: int,
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes = attributes
        #: Whether every attribute is known to be valid (set by flask-observe itself).
        self._trusted = trusted
        #: A user's changes to the attributes, in order, cleaned at the end.
        self._changes: Optional[list[Union[tuple[str, Any], dict[str, Any]]]] = None
        #: The attributes once cleaned (at the end, or when the changes pile up).
        self._bounded: Optional[BoundedAttributes] = None
        self._events: Optional[BoundedList[Any]] = None
        self._links: Optional[BoundedList[Any]] = None
        self._status = _UNSET
        self._start_time = start_time
        self._end_time: Optional[int] = None
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        #: Emptied by the first ``end``: ``list.pop`` is atomic, so two ends race safely.
        self._open = [True]
        for link in links:
            if link:
                self.add_link(link.context, link.attributes)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'

    # -- reading --

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    @property
    def name(self) -> str:
        """The span's name, as it stands."""
        return self._name

    # -- attributes --

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if not self._ended_already():
            self._later((key, _kept(value)))

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if not self._ended_already():
            self._later({key: _kept(value) for key, value in attributes.items()})

    def set_trusted_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Set attributes known to be valid values, without cleaning them."""
        if self._ended_already():
            return
        if self._changes is None and self._bounded is None:
            self._attributes.update(attributes)
        else:  # after a user's, in the order they came
            self._later(dict(attributes))

    def _later(self, change: Union[tuple[str, Any], dict[str, Any]]) -> None:
        """Note a user's change, to be cleaned at the end. Past a few hundred, they are
        applied now, so that a span given attribute after attribute stays small."""
        if self._changes is None:
            self._changes = []
        self._changes.append(change)
        if len(self._changes) > _MAX_CHANGES:
            self._apply()

    def _apply(self) -> BoundedAttributes:
        """The span's attributes as the SDK's span would hold them: those it started with,
        then each change in turn, cleaned, limited and counted by the SDK's own
        ``BoundedAttributes``, as its ``set_attribute`` and ``set_attributes`` do."""
        bounded = self._bounded
        if bounded is None:
            limits = self._tracer._limits
            bounded = self._bounded = BoundedAttributes(
                limits.max_span_attributes,
                self._attributes,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
        for change in self._changes or ():
            if isinstance(change, tuple):
                bounded[change[0]] = change[1]
            elif _SET_ITEMS:
                bounded._set_items(change)
            else:
                for key, value in change.items():
                    bounded[key] = value
        self._changes = None
        return bounded

    def _final_attributes(self) -> Union[dict[str, Any], BoundedAttributes]:
        limits = self._tracer._limits
        limit = limits.max_span_attributes
        if (
            self._trusted
            and self._changes is None
            and self._bounded is None
            and limits.max_span_attribute_length is None
            and (limit is None or len(self._attributes) <= limit)
        ):
            return self._attributes
        bounded = self._apply()
        bounded._immutable = True
        return bounded

    # -- events and links --

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: Optional[int] = None,
    ) -> None:
        if self._refused("add_event"):
            return
        limits = self._tracer._limits
        event = sdk_trace.Event(
            name,
            BoundedAttributes(
                limits.max_event_attributes,
                attributes,
                max_value_len=limits.max_attribute_length,
                immutable=True,
            ),
            timestamp,
        )
        if self._events is None:
            self._events = BoundedList(limits.max_events)
        self._events.append(event)

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not (context and (context.is_valid or attributes or context.trace_state)):
            return  # what the SDK keeps: a valid context, or one that carries something
        if self._refused("add_link"):
            return
        limits = self._tracer._limits
        link = Link(
            context,
            BoundedAttributes(
                limits.max_link_attributes,
                attributes,
                max_value_len=limits.max_attribute_length,
                immutable=True,
            ),
        )
        if self._links is None:
            self._links = BoundedList(limits.max_links)
        self._links.append(link)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: Optional[int] = None,
        escaped: bool = False,
    ) -> None:
        # The SDK's own method, which only calls add_event: the event is the SDK's, field
        # for field, in whichever SDK version is installed.
        sdk_trace.Span.record_exception(
            cast(sdk_trace.Span, self), exception, attributes, timestamp, escaped
        )

    # -- name, status, end --

    def update_name(self, name: str) -> None:
        if not self._refused("update_name"):
            self._name = name

    def set_status(
        self, status: Union[Status, StatusCode], description: Optional[str] = None
    ) -> None:
        if self._refused("set_status") or self._status.status_code is StatusCode.OK:
            return  # an OK status is final
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                _log.warning(
                    "Description %s ignored. Use either `Status` or `(StatusCode, Description)`",
                    description,
                )
            self._status = status
        elif isinstance(status, StatusCode) and status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def end(self, end_time: Optional[int] = None) -> None:
        try:
            self._open.pop()
        except IndexError:
            _log.warning("Calling end() on an ended span.")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        tracer = self._tracer
        tracer._ended(
            sdk_trace.ReadableSpan(
                name=self._name,
                context=self._context,
                parent=self._parent,
                resource=tracer._sdk.resource,
                attributes=self._final_attributes(),
                events=self._events if self._events is not None else (),
                links=self._links if self._links is not None else (),
                kind=self._kind,
                instrumentation_info=tracer._info,
                status=self._status,
                start_time=self._start_time,
                end_time=self._end_time,
                instrumentation_scope=tracer._scope,
            )
        )

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_val: Optional[BaseException],
        exc_tb: Optional[TracebackType],
    ) -> None:
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        super().__exit__(exc_type, exc_val, exc_tb)

    def _ended_already(self) -> bool:
        if self._end_time is None:
            return False
        _log.warning("Setting attribute on ended span.")
        return True

    def _refused(self, what: str) -> bool:
        if self._end_time is None:
            return False
        _log.warning("Tried calling %s on an ended span.", what)
        return True


def _kept(value: Any) -> Any:
    """*value* as it is when set: a list is copied, as the SDK's cleaning copies it then."""
    return tuple(value) if isinstance(value, list) else value


def lean_tracer(tracer: trace.Tracer) -> trace.Tracer:
    """*tracer*, made lean if it is an SDK tracer (not a no-op one, as a disabled SDK gives)."""
    if isinstance(tracer, sdk_trace.Tracer):
        return LeanTracer(tracer)
    return tracer
