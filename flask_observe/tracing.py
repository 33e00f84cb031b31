"""Traces: which tracer provider an app's spans come from, and a server span per request
(``@traced`` business spans are :mod:`flask_observe.spans`; the provider flask-observe makes
when the app has none is :mod:`flask_observe.export`).

The spans are OpenTelemetry's: this module only decides when they start and end, what they
are called and which attributes they carry. The request span is made by the pipeline's
tracing sink (``native`` mode), or by opentelemetry-instrumentation-flask (``contrib``
mode), in which case the sink only reads the span that instrumentation made current.

Every span's IDs reach the other pillars as plain data: the sink writes them on the
observation (the metrics take the trace ID as an exemplar, the access line both IDs), and
:class:`TraceContextFilter` stamps the current span's IDs on log records.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Callable, Optional

from flask import Flask, request
from opentelemetry import context, propagate, trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from ._http import KNOWN_METHODS, OTHER_METHOD, environ_key
from ._version import __version__
from .config import ConfigError, Settings
from .export import DROP_REASONS, OnDrop, build_provider
from .export.span import LeanSpan, lean_tracer
from .observation import ENVIRON_KEY, Observation
from .spans import SCOPE, error_status

__all__ = ["DROP_REASONS", "TraceSink", "instrument_contrib", "is_instrumented", "tracer_for"]

_log = logging.getLogger("flask_observe")

# -- the request span --


class _EnvironGetter(Getter[Mapping[str, Any]]):
    """Reads propagation headers from a WSGI environ."""

    def get(self, carrier: Mapping[str, Any], key: str) -> Optional[list[str]]:
        value = carrier.get(environ_key(key))
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


_getter = _EnvironGetter()


#: The longest host name DNS allows; a Host header longer than that is clipped.
_MAX_HOST_CHARS = 253


def _server_address(environ: Mapping[str, Any]) -> tuple[Optional[str], Optional[int]]:
    """Host and port the client addressed: the ``Host`` header, else the server's own."""
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME")
    port: Optional[str] = environ.get("SERVER_PORT")
    if host and host.startswith("["):  # [::1]:8080
        address, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else port
    elif host and host.count(":") == 1:
        address, port = host.split(":")
    else:
        address = host
    # The Host header is the client's: only a port a TCP connection can have is believed.
    number = int(port) if port and len(port) <= 5 and port.isascii() and port.isdigit() else None
    if number is not None and number > 65535:
        number = None
    return (address[:_MAX_HOST_CHARS] if address else None), number


def _adopt(observation: Observation, span: Span) -> None:
    """Make *span* the request's: its IDs on the observation, and in the ``traceresponse``
    header (W3C Trace Context Level 2) if it is sampled."""
    # span_ids() says the same, but a call and a second get_span_context() more cost
    # ~170 ns a request, on the request path.
    span_context = span.get_span_context()
    flags = span_context.trace_flags
    if span_context.is_valid and flags.sampled:
        trace_id = observation.trace_id = f"{span_context.trace_id:032x}"
        span_id = observation.span_id = f"{span_context.span_id:016x}"
        observation.add_response_header("traceresponse", f"00-{trace_id}-{span_id}-{flags:02x}")


#: The attributes a request span takes from the server it arrived at, by the environ
#: values they come from: the same few for every request, so worked out once each.
_ServerKey = tuple[Optional[str], Optional[str], Optional[str], str, str]
_server_attributes: dict[_ServerKey, dict[str, Any]] = {}


def _server_attributes_of(environ: Mapping[str, Any]) -> dict[str, Any]:
    key: _ServerKey = (
        environ.get("HTTP_HOST"),
        environ.get("SERVER_NAME"),
        environ.get("SERVER_PORT"),
        environ.get("wsgi.url_scheme", "http"),
        environ.get("SERVER_PROTOCOL", ""),
    )
    attributes = _server_attributes.get(key)
    if attributes is not None:
        return attributes
    attributes = {"url.scheme": key[3]}
    address, port = _server_address(environ)
    if address:
        attributes["server.address"] = address
    if port is not None:
        attributes["server.port"] = port
    protocol = key[4]
    if protocol.upper().startswith("HTTP/"):
        attributes["network.protocol.version"] = protocol[5:]
    if len(_server_attributes) < 256:  # Host is the client's to choose: keep only a few
        _server_attributes[key] = attributes
    return attributes


def _request_attributes(environ: Mapping[str, Any], method: str, raw_method: str) -> dict[str, Any]:
    """A request span's attributes at its start, from the request's environ."""
    attributes: dict[str, Any] = {"http.request.method": method}
    if method == OTHER_METHOD:
        attributes["http.request.method_original"] = raw_method[:64]
    attributes.update(_server_attributes_of(environ))
    attributes["url.path"] = environ.get("PATH_INFO") or "/"
    client = environ.get("REMOTE_ADDR")
    if client:
        attributes["client.address"] = client
    agent = environ.get("HTTP_USER_AGENT")
    if agent:
        attributes["user_agent.original"] = agent[:1024]
    return attributes


class TraceSink:
    """The ``native`` request span: started when the request arrives, as the current span
    while it is served, ended when its response is complete.

    Its attributes are those of OpenTelemetry's stable HTTP conventions that
    opentelemetry-instrumentation-flask sets, so both modes give the same span; but a request
    that matches no route is named by its method alone, never by its path.
    """

    name = "tracing"

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        #: The lean tracer's start for attributes known to be valid, which skips cleaning.
        self._start_trusted = getattr(tracer, "start_trusted", None)
        #: No provider anywhere (the global proxy, and none set yet): until the application
        #: sets one, a request only passes an incoming trace context on.
        self._waiting = isinstance(tracer, (trace.ProxyTracer, trace.NoOpTracer))
        propagator = propagate.get_global_textmap()
        self._propagator = propagator
        #: The environ keys of the headers the propagator reads: without any of them there
        #: is nothing to extract, and the extraction is skipped.
        self._carrier_keys = frozenset(environ_key(field) for field in propagator.fields)

    def start(self, observation: Observation) -> None:
        environ = observation.environ
        parent = None
        if not self._carrier_keys.isdisjoint(environ):
            parent = self._propagator.extract(environ, getter=_getter)
        if self._waiting and self._no_provider():
            if parent is not None:
                # Current while the request is served, so its IDs reach the log lines and
                # calls made from the view carry them on.
                observation.span = (None, context.attach(parent), parent)
                _adopt(observation, trace.get_current_span(parent))
            return
        raw_method = environ.get("REQUEST_METHOD", "")
        method = raw_method if raw_method in KNOWN_METHODS else OTHER_METHOD
        name = "HTTP" if method == OTHER_METHOD else method
        if self._start_trusted is not None:
            # Made only if the span records: most requests of a sampled service do not.
            span = self._start_trusted(
                name,
                parent,
                SpanKind.SERVER,
                lambda: _request_attributes(environ, method, raw_method),
            )
        else:
            span = self._tracer.start_span(
                name,
                context=parent,
                kind=SpanKind.SERVER,
                attributes=_request_attributes(environ, method, raw_method),
            )
        # In the extracted context, so that its baggage is current too.
        current = trace.set_span_in_context(span, parent)
        observation.span = (span, context.attach(current), current)
        _adopt(observation, span)

    def _no_provider(self) -> bool:
        if isinstance(self._tracer, trace.ProxyTracer) and _global_provider_set():
            self._waiting = False  # the application has set its provider: trace from now on
            return False
        return True

    def finish(self, observation: Observation) -> None:
        if observation.span is None:
            return  # no provider, and no trace context came with the request
        span, token, current = observation.span
        try:
            if span is None or not span.is_recording():
                return  # nothing to set on a span that is not sampled; it has no end to tell
            route = observation.route
            status = observation.status or 500
            attributes: dict[str, Any] = {"http.response.status_code": status}
            if route is not None:
                method = observation.environ.get("REQUEST_METHOD", "")
                span.update_name(f"{method if method in KNOWN_METHODS else 'HTTP'} {route}")
                attributes = {"http.route": route, **attributes}
            if status >= 500:
                attributes["error.type"] = str(status)
            if type(span) is LeanSpan:
                span.set_trusted_attributes(attributes)
            else:
                span.set_attributes(attributes)  # one lock and one pass, not one per attribute
            if status >= 500:
                error = observation.error
                if error is not None:
                    span.record_exception(error)
                    span.set_status(error_status(error))
                else:
                    span.set_status(Status(StatusCode.ERROR))
            span.end()
        finally:
            # Only where it was attached: a body closed in another context leaves it be.
            if context.get_current() is current:
                context.detach(token)


class SpanReader:
    """The ``contrib`` mode's sink: takes the IDs of the span opentelemetry-instrumentation-flask
    made, from a ``before_request`` function registered after that instrumentation's."""

    name = "tracing"
    start: Optional[Callable[[Observation], None]] = None

    def read(self) -> None:
        try:
            observation = request.environ.get(ENVIRON_KEY)
            if observation is not None:
                _adopt(observation, trace.get_current_span())
        except Exception:  # correlation is never worth a failed request
            _log.debug("Could not read the request span", exc_info=True)

    def finish(self, observation: Observation) -> None:
        pass


if hasattr(trace, "_TRACER_PROVIDER"):

    def _global_provider_set() -> bool:
        """Whether the application has set a global tracer provider.

        Asked for every request while none is set, so read where the API keeps it: the
        public way looks at the environment each time.
        """
        return trace._TRACER_PROVIDER is not None

else:  # pragma: no cover - an API that keeps it elsewhere

    def _global_provider_set() -> bool:
        return _is_set(trace.get_tracer_provider())


def _is_set(provider: trace.TracerProvider) -> bool:
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def tracer_for(
    settings: Settings, given: Optional[trace.TracerProvider], on_drop: OnDrop
) -> tuple[trace.TracerProvider, Tracer]:
    """The tracer an app's spans come from, per ``OBSERVE_TRACING_SETUP``.

    A provider given to ``Observe`` is used as it is. ``auto`` uses the global provider if
    one is set, else makes one and sets it as the global provider; ``always`` makes one for
    the app (and sets it as the global provider only if none is set); ``never``, and
    ``OBSERVE_TRACING_INSTRUMENTATION = "off"``, use the global provider, a no-op one until
    the application sets its own.
    """
    provider: trace.TracerProvider
    if given is not None:
        provider = given
    elif (
        settings.tracing_setup == "never"
        or settings.tracing_instrumentation == "off"
        or (settings.tracing_setup == "auto" and _is_set(trace.get_tracer_provider()))
    ):
        provider = trace.get_tracer_provider()
    else:
        provider = build_provider(settings, on_drop)
        if not _is_set(trace.get_tracer_provider()):
            trace.set_tracer_provider(provider)
        # The provider is ours: its spans may take the lean path.
        return provider, lean_tracer(provider.get_tracer(SCOPE, __version__))
    return provider, provider.get_tracer(SCOPE, __version__)


def is_instrumented(app: Flask) -> bool:
    """Whether opentelemetry-instrumentation-flask already instruments *app*."""
    return bool(getattr(app, "_is_instrumented_by_opentelemetry", False))


def instrument_contrib(
    app: Flask, settings: Settings, provider: trace.TracerProvider
) -> SpanReader:
    """``contrib`` mode: opentelemetry-instrumentation-flask makes the request spans.

    An app it already instruments (``opentelemetry-instrument``, or a call of the user's own)
    is left as it is.
    """
    try:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor
    except ImportError:
        raise ConfigError(
            "OBSERVE_TRACING_INSTRUMENTATION",
            "contrib",
            "opentelemetry-instrumentation-flask installed: pip install "
            "'flask-observe[contrib]', or 'native'",
        ) from None
    if not is_instrumented(app):
        excluded = ",".join(
            rf"^[a-z]+://[^/]+{re.escape(path)}(?:[/?]|$)" for path in settings.exclude_paths
        )
        FlaskInstrumentor().instrument_app(  # type: ignore[no-untyped-call]
            app,
            excluded_urls=excluded or None,
            tracer_provider=provider,
            meter_provider=NoOpMeterProvider(),
        )
    reader = SpanReader()
    app.before_request(reader.read)
    return reader
