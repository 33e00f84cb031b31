"""One outgoing call, recorded: what the ``requests`` and ``httpx`` hooks share.

A hook asks :func:`observer_for` whether the call is to be observed, and by which app's
settings (:class:`ClientState`); then :meth:`Call.start` makes the CLIENT span, puts the
trace context and the request ID in the call's headers, and makes the span current while
the library sends; :meth:`Call.answered` or :meth:`Call.failed` ends it all and counts the
call. Nothing here may fail a call: every step is guarded, a failure is counted in
``flask_observe_errors_total{sink="clients"}`` and logged once, and the call goes on as if
it were not observed.

Several instrumentations may wrap the same call: flask-observe's own hooks at two levels
(``requests`` re-enters ``Session.send`` for each redirect), or OpenTelemetry's contrib
instrumentations around or inside them. Two context values keep each call to one span and
one set of headers:

- flask-observe's own key, set while a call it observes is sent: a call made inside it is
  the same call, and is passed through untouched;
- OpenTelemetry's "suppress HTTP instrumentation" key, which the contrib instrumentations
  set around the call they have made a span for, and skip their work under: set by
  flask-observe around the calls it makes a span for, and read to leave the span and the
  trace headers to an instrumentation outside (the call is still counted).
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
import time
from collections.abc import MutableMapping
from contextvars import Token
from typing import Any, Callable, Optional, Union
from urllib.parse import urlsplit, urlunsplit

from flask import current_app, has_app_context, has_request_context, request
from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from .._http import KNOWN_METHODS, OTHER_METHOD
from .._version import __version__
from ..logs import get_logger
from ..observation import ENVIRON_KEY, span_ids
from ..spans import SCOPE, error_status
from .metrics import ClientMetrics

__all__ = [
    "LOGGER",
    "Call",
    "ClientState",
    "Describe",
    "HostPatterns",
    "observed",
    "observed_async",
    "observer_for",
    "peer_of",
    "redact_url",
    "set_default",
]

#: The logger of the line written per call with ``OBSERVE_HTTP_CLIENT_LOG``.
LOGGER = "flask_observe.http_client"
#: What replaces credentials and query values in ``url.full``, as OpenTelemetry spells it.
REDACTED = "REDACTED"

_log = logging.getLogger("flask_observe")
_call_log = get_logger(LOGGER)

#: Set while flask-observe observes a call: a call made inside it is the same one.
_IN_CALL = context.create_key("flask_observe.http_client_call")
# Where the API keeps OpenTelemetry's suppression keys (1.27 and later); a key of our own,
# which nobody sets, would leave the checks without effect on an API that had none.
_SUPPRESS_HTTP: str = getattr(
    context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", context.create_key("suppress_http")
)
_SUPPRESS_ALL: str = getattr(
    context, "_SUPPRESS_INSTRUMENTATION_KEY", context.create_key("suppress_instrumentation")
)
#: The key some instrumentations still set under its plain name.
_SUPPRESS_ALL_PLAIN = "suppress_instrumentation"

try:
    # Flask's own context variables (2.2 and later): one look-up each, where asking through
    # has_app_context() and the current_app and request proxies costs microseconds a call.
    from flask.globals import _cv_app, _cv_request

    _contexts_known = True
except ImportError:  # pragma: no cover - a Flask that keeps its contexts elsewhere
    _contexts_known = False

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: How many host verdicts a pattern list remembers: hosts are few; hostile ones not kept.
_MAX_VERDICTS = 1024


def peer_of(host: str, port: Optional[int], scheme: str) -> tuple[str, int]:
    """``("host:port", port)`` of a call: the host lower-cased (an IPv6 address in brackets),
    the port the URL gives or its scheme's default."""
    host = host.lower()
    if port is None:
        port = _DEFAULT_PORTS.get(scheme.lower(), 0)
    if ":" in host:
        return f"[{host}]:{port}", port
    return f"{host}:{port}", port


def redact_url(url: str) -> str:
    """*url* as ``url.full`` carries it: user and password replaced by ``REDACTED``, every
    query value too (the names stay), and no fragment, which is never sent."""
    if "@" not in url and "?" not in url and "#" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = f"{REDACTED}:{REDACTED}" if ":" in userinfo else REDACTED
        netloc = f"{user}@{hostport}"
    query = "&".join(
        f"{item.partition('=')[0]}={REDACTED}" if "=" in item else item
        for item in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class HostPatterns:
    """Which hosts a call's trace context and request ID may go to:
    ``OBSERVE_PROPAGATE_HOSTS``. ``None`` allows every host.

    A pattern is a host (``api.internal``, ``10.0.0.7``, ``[::1]``) or ``*.`` and a domain,
    which allows every name below the domain but not the domain itself; either may end in
    ``:port``, which then must match too.
    """

    def __init__(self, patterns: Optional[tuple[str, ...]]) -> None:
        self._every = patterns is None
        self._exact: set[tuple[str, Optional[int]]] = set()
        self._suffixes: list[tuple[str, Optional[int]]] = []
        for pattern in patterns or ():
            host, port = _split_pattern(pattern)
            if host.startswith("*."):
                self._suffixes.append((host[1:], port))
            else:
                self._exact.add((host, port))
        self._verdicts: dict[tuple[str, int], bool] = {}

    def allows(self, host: str, port: int) -> bool:
        if self._every:
            return True
        key = (host, port)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = (
                (host, None) in self._exact
                or (host, port) in self._exact
                or any(
                    host.endswith(suffix) and (wanted is None or wanted == port)
                    for suffix, wanted in self._suffixes
                )
            )
            if len(self._verdicts) < _MAX_VERDICTS:
                self._verdicts[key] = verdict
        return verdict


def _split_pattern(pattern: str) -> tuple[str, Optional[int]]:
    """``(host, port)`` of a checked pattern; the brackets of an IPv6 address dropped, as
    URL parsers drop them from the host."""
    if pattern.startswith("["):
        address, _, rest = pattern[1:].partition("]")
        return address, int(rest[1:]) if rest else None
    host, _, port = pattern.partition(":")
    return host, int(port) if port else None


class ClientState:
    """What one app's outgoing calls are observed with, from its settings.

    :param libraries: the libraries of ``OBSERVE_HTTP_CLIENTS``.
    :param contrib: those whose calls get their span and trace headers from OpenTelemetry's
        contrib instrumentation (``contrib`` mode); flask-observe only counts them.
    :param spans: whether the others get a CLIENT span (not with tracing ``off``); they
        carry the trace context current at the call either way.
    :param tracer: the app's tracer; ``None`` for the global one, looked up per call.
    :param metrics: where the calls are counted; ``None`` with the metrics off.
    :param hosts: the hosts the headers may go to.
    :param max_peers: ``OBSERVE_HTTP_CLIENT_MAX_PEERS``.
    :param request_id_header: ``OBSERVE_REQUEST_ID_HEADER``.
    :param log: ``OBSERVE_HTTP_CLIENT_LOG``.
    :param on_error: called each time recording a call fails.
    """

    __slots__ = (
        "contrib",
        "hosts",
        "libraries",
        "log",
        "max_peers",
        "metrics",
        "on_error",
        "request_id_header",
        "spans",
        "tracer",
    )

    def __init__(
        self,
        *,
        libraries: frozenset[str],
        contrib: frozenset[str],
        spans: bool,
        tracer: Optional[Tracer],
        metrics: Optional[ClientMetrics],
        hosts: HostPatterns,
        max_peers: int,
        request_id_header: Optional[str],
        log: bool,
        on_error: Callable[[], None],
    ) -> None:
        self.libraries = libraries
        self.contrib = contrib
        self.spans = spans
        self.tracer = tracer
        self.metrics = metrics
        self.hosts = hosts
        self.max_peers = max_peers
        self.request_id_header = request_id_header
        self.log = log
        self.on_error = on_error

    def outside_app(self) -> ClientState:
        """This state for calls made outside any app context, whose spans come from the
        global tracer provider, as ``@traced`` ones do there."""
        state = copy.copy(self)
        state.tracer = None
        return state


#: The state of the app set up last, for calls made outside any app context (a thread of
#: the app's own, a job worker): a process usually serves one app.
_default: Optional[ClientState] = None
_logged_failure = False
_failure_lock = threading.Lock()


def set_default(state: Optional[ClientState]) -> None:
    """Observe the calls made outside any app context as *state*'s app does, with spans
    from the global tracer provider."""
    global _default
    _default = None if state is None else state.outside_app()


def _failed(state: Optional[ClientState]) -> None:
    """Count a failure to record a call; log its traceback the first time only."""
    global _logged_failure
    try:
        if state is not None:
            state.on_error()
        with _failure_lock:
            first, _logged_failure = not _logged_failure, True
        if first:
            _log.error(
                "flask-observe failed to record an outgoing HTTP call; the call goes on. "
                "Later failures are only counted in flask_observe_errors_total{sink=%r}.",
                "clients",
                exc_info=True,
            )
    except Exception:  # the report must not fail the call either
        pass


def observer_for(library: str) -> Optional[ClientState]:
    """The state to observe a call of *library* with, or ``None`` to leave it alone: inside
    a call flask-observe observes already, under OpenTelemetry's suppression of all
    instrumentation (an exporter sending spans), or when the app does not ask for it."""
    try:
        current = context.get_current()
        if current.get(_IN_CALL) or current.get(_SUPPRESS_ALL) or current.get(_SUPPRESS_ALL_PLAIN):
            return None
        state: Optional[ClientState]
        if _contexts_known:
            app_context = _cv_app.get(None)
            if app_context is None:
                state = _default
            else:
                state = getattr(app_context.app.extensions.get("observe"), "clients", None)
        elif has_app_context():  # pragma: no cover
            state = getattr(current_app.extensions.get("observe"), "clients", None)
        else:  # pragma: no cover
            state = _default
        if state is None or library not in state.libraries:
            return None
        return state
    except Exception:
        _failed(None)
        return None


#: The global propagator last seen, and the header names it writes.
_fields: tuple[Optional[TextMapPropagator], frozenset[str]] = (None, frozenset())


def _propagator() -> tuple[TextMapPropagator, frozenset[str]]:
    global _fields
    propagator = propagate.get_global_textmap()
    seen, fields = _fields
    if seen is not propagator:
        fields = frozenset(field.lower() for field in propagator.fields)
        _fields = (propagator, fields)
    return propagator, fields


def _request_id() -> Optional[str]:
    """The ID of the request being served in this context, if flask-observe gave it one."""
    if _contexts_known:
        request_context = _cv_request.get(None)
        if request_context is None:
            return None
        observation = request_context.request.environ.get(ENVIRON_KEY)
    elif has_request_context():  # pragma: no cover
        observation = request.environ.get(ENVIRON_KEY)
    else:  # pragma: no cover
        return None
    request_id: Optional[str] = getattr(observation, "request_id", None)
    return request_id


#: What a hook reads from the request of a call: method, URL, scheme, host, port (``None``
#: for the scheme's default) and the headers it will send, which may be written to.
Describe = Callable[[Any], tuple[str, str, str, str, Optional[int], MutableMapping[str, str]]]


class Call:
    """One outgoing call being observed."""

    __slots__ = ("_method", "_peer", "_span", "_start", "_state", "_token")

    def __init__(self, state: ClientState) -> None:
        self._state = state
        self._method = ""
        self._peer = ""
        self._span: Any = None
        self._token: Optional[Token[context.Context]] = None
        self._start = 0.0

    @classmethod
    def observe(cls, library: str, describe: Describe, request: Any) -> Optional[Call]:
        """:meth:`start` the call of *request* if :func:`observer_for` says to observe it."""
        state = observer_for(library)
        return None if state is None else cls.start(state, library, describe, request)

    @classmethod
    def start(
        cls, state: ClientState, library: str, describe: Describe, request: Any
    ) -> Optional[Call]:
        """Observe the call of *request*, about to be sent: its span started and current,
        its headers set. ``None`` if that failed; the call is then sent as it is.

        :param describe: the hook's reading of *request*, called here so that its failures
            are caught too.
        """
        call = cls(state)
        try:
            call._begin(library, *describe(request))
            return call
        except Exception:
            call._abandon()
            _failed(state)
            return None

    def _begin(
        self,
        library: str,
        method: str,
        url: str,
        scheme: str,
        host: str,
        port: Optional[int],
        headers: MutableMapping[str, str],
    ) -> None:
        state = self._state
        label = method if method in KNOWN_METHODS else OTHER_METHOD
        self._method = label
        host = host.lower()
        peer, port = peer_of(host, port, scheme)
        metrics = state.metrics
        self._peer = peer if metrics is None else metrics.peer_label(peer, state.max_peers)
        parent = context.get_current()
        propagator, fields = _propagator()
        # Lower-cased once: a case-insensitive mapping's `in` raises and catches KeyError
        # for each name it lacks.
        sent = {name.lower() for name in headers}
        # Another instrumentation makes the call's span and writes its trace headers: one
        # outside this hook has already (OpenTelemetry's contrib one, which suppresses the
        # others inside it), or one inside will (contrib mode). Counting is what is left.
        traced_elsewhere = (
            library in state.contrib or parent.get(_SUPPRESS_HTTP) or not fields.isdisjoint(sent)
        )
        current = context.set_value(_IN_CALL, True, parent)
        if not traced_elsewhere and state.spans:
            attributes: dict[str, Any] = {"http.request.method": label}
            if label == OTHER_METHOD:
                attributes["http.request.method_original"] = method[:64]
            if host:
                attributes["server.address"] = host
                attributes["server.port"] = port
            attributes["url.full"] = redact_url(url)
            tracer = state.tracer or trace.get_tracer(SCOPE, __version__)
            name = "HTTP" if label == OTHER_METHOD else label
            start_trusted = getattr(tracer, "start_trusted", None)
            if start_trusted is not None:  # the values are valid: no need to clean them
                span = start_trusted(name, parent, SpanKind.CLIENT, attributes)
            else:
                span = tracer.start_span(
                    name, context=parent, kind=SpanKind.CLIENT, attributes=attributes
                )
            self._span = span
            if span.get_span_context().is_valid:
                current = trace.set_span_in_context(span, current)
            # A contrib instrumentation inside this hook (httpx's transports) leaves the
            # call to this span.
            current = context.set_value(_SUPPRESS_HTTP, True, current)
        if host and state.hosts.allows(host, port):
            if not traced_elsewhere:
                propagator.inject(headers, context=current)
            header = state.request_id_header
            if header is not None and header.lower() not in sent:
                request_id = _request_id()
                if request_id is not None:
                    headers[header] = request_id
        self._token = context.attach(current)
        self._start = time.perf_counter()

    def _abandon(self) -> None:
        """Undo what a failed start did, so that the call goes on as if not observed."""
        try:
            if self._token is not None:
                context.detach(self._token)
                self._token = None
            if self._span is not None:
                self._span.end()
        except Exception:
            pass

    def answered(self, status: int) -> None:
        """The call got a response with *status*."""
        self._finish(status, None)

    def failed(self, error: BaseException) -> None:
        """The call raised *error* (refused, timed out, cancelled); it is raised on as it is."""
        self._finish(None, error)

    def _finish(self, status: Optional[int], error: Optional[BaseException]) -> None:
        duration = time.perf_counter() - self._start
        state = self._state
        span = self._span
        # Each part on its own: a broken store still lets the span end, and the reverse.
        try:
            if state.metrics is not None:
                self._count(state.metrics, status, error, duration)
        except Exception:
            _failed(state)
        try:
            if span is not None:
                self._end_span(span, status, error)
            if state.log:
                # While the call's span is current, so that the line carries its IDs. Names
                # of their own: ``method``, ``status`` and ``duration_ms`` are the request's
                # on its lines, and ``status`` is the level in some presets.
                _call_log.debug(
                    "http_client_call",
                    peer=self._peer,
                    call_method=self._method,
                    call_status=status if status is not None else type(error).__name__,
                    call_duration_ms=round(duration * 1e6) / 1000,
                )
        except Exception:
            _failed(state)
        finally:
            token, self._token = self._token, None
            if token is not None:
                try:
                    context.detach(token)
                except Exception:
                    _failed(state)

    def _count(
        self,
        metrics: ClientMetrics,
        status: Optional[int],
        error: Optional[BaseException],
        duration: float,
    ) -> None:
        name = type(error).__name__
        label = str(status) if status is not None else metrics.error_label(name)
        # The call's own span, or the one current (an instrumentation inside made the
        # call's): the exemplar needs only the trace.
        ids = span_ids(self._span if self._span is not None else trace.get_current_span())
        metrics.record(self._method, self._peer, label, duration, None if ids is None else ids[0])

    @staticmethod
    def _end_span(span: Any, status: Optional[int], error: Optional[BaseException]) -> None:
        attributes: dict[str, Union[str, int]] = {}
        if status is not None:
            attributes["http.response.status_code"] = status
            if status >= 400:
                attributes["error.type"] = str(status)
        elif error is not None:
            attributes["error.type"] = type(error).__qualname__
        set_trusted = getattr(span, "set_trusted_attributes", None)
        if set_trusted is not None:
            set_trusted(attributes)
        else:
            span.set_attributes(attributes)
        if error is not None:
            span.record_exception(error)
            span.set_status(error_status(error))
        elif status is not None and status >= 400:
            span.set_status(Status(StatusCode.ERROR))
        span.end()


Send = Callable[..., Any]


def observed(library: str, describe: Describe) -> Callable[[Send], Send]:
    """A wrapper maker for *library*'s send method, ``send(self, request, **kwargs)``,
    which returns a response with a ``status_code``: each call observed, its outcome
    unchanged."""

    def wrap(send: Send) -> Send:
        def observed_send(self: Any, request: Any, **kwargs: Any) -> Any:
            call = Call.observe(library, describe, request)
            if call is None:
                return send(self, request, **kwargs)
            try:
                response = send(self, request, **kwargs)
            except BaseException as exc:
                call.failed(exc)
                raise
            call.answered(response.status_code)
            return response

        # Not the original's __dict__: another instrumentation's marks stay on its own.
        return functools.update_wrapper(observed_send, send, updated=())

    return wrap


def observed_async(library: str, describe: Describe) -> Callable[[Send], Send]:
    """:func:`observed` for an ``async`` send method."""

    def wrap(send: Send) -> Send:
        async def observed_send(self: Any, request: Any, **kwargs: Any) -> Any:
            call = Call.observe(library, describe, request)
            if call is None:
                return await send(self, request, **kwargs)
            try:
                response = await send(self, request, **kwargs)
            except BaseException as exc:
                call.failed(exc)
                raise
            call.answered(response.status_code)
            return response

        return functools.update_wrapper(observed_send, send, updated=())

    return wrap
