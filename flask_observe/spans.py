"""``@traced``: a span of its own for each call of a business function.

The spans are OpenTelemetry's, made by the tracer of the app in context (the one
flask-observe set up for it, or the global one outside any app), so a function called
while a request is served gets a span under the request's, and the spans made inside it
are its children.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, Callable, Optional, TypeVar, Union, overload

from flask import current_app, has_app_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from ._version import __version__
from .signals import announce_failure

__all__ = ["SCOPE", "current_tracer", "error_status", "traced"]

F = TypeVar("F", bound=Callable[..., Any])

#: The instrumentation scope of every span flask-observe makes.
SCOPE = "flask_observe"

#: What ``attributes=`` of :func:`traced` maps a span attribute to: the name of one of the
#: function's arguments, or a callable given the call's arguments.
AttributeSource = Union[str, Callable[..., Any]]

_MAX_VALUE_CHARS = 256


def current_tracer() -> Tracer:
    """The tracer of the app in context, if it has flask-observe; else the global one."""
    if has_app_context():
        state = current_app.extensions.get("observe")
        tracer: Optional[Tracer] = getattr(state, "tracer", None)
        if tracer is not None:
            return tracer
    return trace.get_tracer(SCOPE, __version__)


def _attribute_value(value: Any) -> Any:
    """*value* as OpenTelemetry takes it: a number or boolean as it is, anything else as
    text clipped to 256 characters."""
    if isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS] + "..."


def error_status(exc: BaseException) -> Status:
    return Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")


class _Call:
    """What one decorated function needs to open a span for a call."""

    __slots__ = ("attributes", "name", "record_args", "signature")

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        attributes: Mapping[str, AttributeSource],
        record_args: bool,
    ) -> None:
        self.name = name
        self.attributes = dict(attributes)
        self.record_args = record_args
        self.signature = inspect.signature(fn)
        parameters = self.signature.parameters
        for key, source in self.attributes.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"@traced attribute names must be non-empty strings, not {key!r}")
            if isinstance(source, str) and source not in parameters:
                raise TypeError(
                    f"@traced attribute {key!r} names the argument {source!r}, which "
                    f"{fn.__qualname__}() does not have"
                )
            if not isinstance(source, str) and not callable(source):
                raise TypeError(
                    f"@traced attribute {key!r} must name an argument or be a callable, "
                    f"not {source!r}"
                )

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span:
        """A span for a call with *args* and *kwargs*, started (not made current)."""
        attributes: dict[str, Any] = {}
        if self.attributes or self.record_args:
            try:
                bound = self.signature.bind(*args, **kwargs)
                bound.apply_defaults()
                arguments = bound.arguments
            except TypeError:
                arguments = {}  # the call itself will raise, and say why
            for key, source in self.attributes.items():
                try:
                    value = (
                        arguments[source] if isinstance(source, str) else source(*args, **kwargs)
                    )
                except Exception:  # an attribute never breaks the call
                    continue
                attributes[key] = _attribute_value(value)
            if self.record_args:
                for arg, value in arguments.items():
                    attributes.setdefault(f"code.arg.{arg}", _attribute_value(value))
        tracer = current_tracer()
        start_trusted = getattr(tracer, "start_trusted", None)
        if start_trusted is not None:  # the values are valid: no need to clean them again
            span: Span = start_trusted(self.name, None, SpanKind.INTERNAL, attributes)
            return span
        return tracer.start_span(self.name, kind=SpanKind.INTERNAL, attributes=attributes)


def _instrument(fn: F, call: _Call) -> F:
    """Wrap *fn* (sync, async, generator or async generator) in a span per call.

    A generator's span lasts from its first step to its end, and is current only while the
    generator runs, never in its consumer between two items.
    """
    use = functools.partial(
        trace.use_span, end_on_exit=False, record_exception=False, set_status_on_exception=False
    )
    base = inspect.unwrap(fn)

    def failed(span: Span, exc: BaseException) -> None:
        span.record_exception(exc)
        span.set_status(error_status(exc))
        if isinstance(exc, Exception):
            announce_failure(base, call.name, exc)

    wrapper: Callable[..., Any]
    if inspect.isasyncgenfunction(fn):

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            span = call.start(args, kwargs)
            agen = fn(*args, **kwargs)
            step: Callable[[Any], Any] = agen.asend
            value: Any = None
            try:
                while True:
                    with use(span):
                        try:
                            item = await step(value)
                        except StopAsyncIteration:
                            return
                    try:
                        value, step = (yield item), agen.asend
                    except GeneratorExit:
                        with use(span):
                            await agen.aclose()
                        raise
                    except BaseException as thrown:  # handed on to the generator
                        value, step = thrown, agen.athrow
            except GeneratorExit:
                raise
            except BaseException as exc:
                failed(span, exc)
                raise
            finally:
                span.end()

    elif inspect.iscoroutinefunction(fn):

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            span = call.start(args, kwargs)
            try:
                with use(span):
                    return await fn(*args, **kwargs)
            except BaseException as exc:
                failed(span, exc)
                raise
            finally:
                span.end()

    elif inspect.isgeneratorfunction(fn):

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            span = call.start(args, kwargs)
            gen = fn(*args, **kwargs)
            step: Callable[[Any], Any] = gen.send
            value: Any = None
            try:
                while True:
                    with use(span):
                        try:
                            item = step(value)
                        except StopIteration as stop:
                            return stop.value
                    try:
                        value, step = (yield item), gen.send
                    except GeneratorExit:
                        with use(span):
                            gen.close()
                        raise
                    except BaseException as thrown:  # handed on to the generator
                        value, step = thrown, gen.throw
            except GeneratorExit:
                raise  # the consumer stopped early: the function did not fail
            except BaseException as exc:
                failed(span, exc)
                raise
            finally:
                span.end()

    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            span = call.start(args, kwargs)
            try:
                with use(span):
                    return fn(*args, **kwargs)
            except BaseException as exc:
                failed(span, exc)
                raise
            finally:
                span.end()

    return functools.wraps(fn)(wrapper)  # type: ignore[return-value]


@overload
def traced(fn: F, /) -> F: ...
@overload
def traced(
    fn_or_name: Optional[str] = None,
    /,
    *,
    name: Optional[str] = None,
    attributes: Optional[Mapping[str, AttributeSource]] = None,
    record_args: bool = False,
) -> Callable[[F], F]: ...


def traced(
    fn_or_name: Any = None,
    /,
    *,
    name: Optional[str] = None,
    attributes: Optional[Mapping[str, AttributeSource]] = None,
    record_args: bool = False,
) -> Any:
    """Run each call of the function in a span of its own.

    Use it bare (``@traced``) or with a span name and options
    (``@traced("inventory.check", attributes={"order.id": "order_id"})``) on a plain,
    ``async``, generator or async generator function. The span is a child of the span
    current at the call (the request's, inside a request) and is current while the function
    runs, so spans made inside it are its children. A generator's span covers its whole
    iteration. An exception is recorded on the span, which is marked as an error, and is
    raised unchanged (:data:`~flask_observe.signals.function_failed` is sent first); a
    generator closed early is not an error.

    Without a tracer provider the spans are OpenTelemetry's no-op ones and cost little.

    :param fn_or_name: the span name; default ``module.qualname`` of the function. It may
        be given as ``name=`` too, as with :func:`~flask_observe.timed`.
    :param attributes: span attributes to set from each call: each maps an attribute name to
        the name of one of the function's arguments, or to a callable that is given the
        call's arguments and returns the value. A callable that raises leaves its attribute
        out; it never fails the call.
    :param record_args: also record every argument as ``code.arg.<name>``: numbers and
        booleans as they are, anything else as text clipped to 256 characters (as are the
        values of *attributes*). Off by default, so no argument value leaves the process
        unless asked.

    .. versionadded:: 0.1
    """
    if callable(fn_or_name):
        fn: Callable[..., Any] = fn_or_name
        return _instrument(fn, _Call(fn, _default_name(fn), {}, False))
    if fn_or_name is not None and name is not None:
        raise TypeError("give the span name once: @traced('name') or @traced(name='name')")
    name = fn_or_name if name is None else name
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"the span name must be a non-empty string, not {name!r}")

    def decorate(f: F) -> F:
        return _instrument(f, _Call(f, name or _default_name(f), attributes or {}, record_args))

    return decorate


def _default_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"
