"""What one request looked like: the plain data the pipeline hands to every sink."""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

__all__ = ["ENVIRON_KEY", "UNMATCHED", "Observation", "Owner", "RoutedSink", "Sink", "span_ids"]

#: Where the observation lives during a request: the WSGI environ, which belongs to exactly
#: one request, unlike ``g``, which an app context pushed around a test client shares.
ENVIRON_KEY = "flask_observe.observation"

#: The ``endpoint`` label of a request that matched no route. A fixed value keeps a scan of
#: random paths from adding series.
UNMATCHED = "<unmatched>"


class Observation:
    """One request, from its arrival to the end of its response.

    The pipeline fills it in; sinks read it. ``endpoint`` is the metric label (the route
    template, or the view name with ``OBSERVE_GROUP_BY = "endpoint"``).
    """

    __slots__ = (
        "duration",
        "endpoint",
        "environ",
        "error",
        "exception",
        "failed_sinks",
        "finished",
        "method",
        "owner",
        "path",
        "request_id",
        "request_size",
        "response_headers",
        "response_size",
        "route",
        "span",
        "span_id",
        "start",
        "status",
        "trace_id",
    )

    def __init__(
        self, start: float, environ: dict[str, Any], owner: Optional[Owner] = None
    ) -> None:
        #: ``time.perf_counter()`` when the request reached the app.
        self.start = start
        #: The request's WSGI environ.
        self.environ = environ
        #: The pipeline observing the request.
        self.owner = owner
        #: The request ID, when the log sink is on: the client's, or one made for it.
        self.request_id: Optional[str] = None
        # The four below are filled in together once Flask has routed the request, when the
        # response starts; until then ``endpoint`` is "".
        #: The method label: the request method, or ``_OTHER`` for one neither standard nor
        #: declared by the matched route.
        self.method = ""
        #: The ``endpoint`` metric label.
        self.endpoint = ""
        #: The matched route template, ``None`` if no route matched.
        self.route: Optional[str] = None
        #: The request path, as Flask decoded it.
        self.path = ""
        #: The request's ``Content-Length``; 0 when absent.
        self.request_size = 0
        #: The response status; ``None`` until a response exists (500 if none ever does).
        self.status: Optional[int] = None
        #: Body bytes sent; ``None`` until known.
        self.response_size: Optional[int] = None
        #: The class name of an unhandled exception, if the request raised one.
        self.exception: Optional[str] = None
        #: That exception itself.
        self.error: Optional[BaseException] = None
        #: The request's server span, its trace and span IDs in lower-case hex (``None``
        #: when the request is not traced, or not sampled).
        self.span: Any = None
        self.trace_id: Optional[str] = None
        self.span_id: Optional[str] = None
        #: Headers the sinks add to the response, unless the app set them itself.
        self.response_headers: Optional[list[tuple[str, str]]] = None
        #: Seconds from the start to the end of the response body, set when finished.
        self.duration = 0.0
        self.finished = False
        #: Names of sinks whose ``start`` failed; they are not asked to ``finish``.
        self.failed_sinks: Optional[set[str]] = None

    @property
    def service(self) -> str:
        """The service name of the app serving the request."""
        return self.owner.service if self.owner is not None else ""

    def add_response_header(self, name: str, value: str) -> None:
        """Send *name*: *value* with the response, unless the app sets *name* itself."""
        if self.response_headers is None:
            self.response_headers = []
        self.response_headers.append((name, value))

    def ensure_routed(self) -> None:
        """Fill in ``method``, ``endpoint``, ``route`` and ``path`` now, if they are not yet.

        They are filled in when the response starts; a sink that needs them earlier (a log
        line written by the view) calls this, from the thread serving the request.
        """
        if not self.endpoint and self.owner is not None:
            self.owner.resolve(self)


def span_ids(span: Any) -> Optional[tuple[str, str]]:
    """``(trace_id, span_id)`` of an OpenTelemetry span in lower-case hex (32 and 16
    digits), as observations and log lines carry them; ``None`` for a span that records no
    valid, sampled trace (no provider, or not sampled)."""
    context = span.get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class Owner(Protocol):
    """What an observation asks of the pipeline that made it."""

    #: The service name of the app.
    service: str

    def resolve(self, observation: Observation) -> None:
        """Fill in the route of *observation* from the request being served."""


class Sink(Protocol):
    """A consumer of observations: metrics now; logs, spans and signals later."""

    #: The ``sink`` label of ``flask_observe_errors_total`` when this sink raises.
    name: str

    @property
    def start(self) -> Optional[Callable[[Observation], None]]:
        """Called with the observation when the request reaches the app, before Flask
        routes it (``method``, ``endpoint``, ``route`` and ``path`` are not filled in yet);
        ``None`` for a sink with nothing to do then, which saves a call per request."""

    def finish(self, observation: Observation) -> None:
        """Called exactly once, when the response is complete."""


class RoutedSink(Sink, Protocol):
    """A sink that also acts once Flask has routed the request: the pipeline calls its
    ``routed`` from Flask's ``request_started`` signal, before the app's ``before_request``
    functions and the view, with ``method``, ``endpoint``, ``route`` and ``path`` filled in.
    Not called for a request Flask never dispatches (one that failed before), nor for a sink
    whose ``start`` failed; ``finish`` is called all the same, so a sink must not assume its
    ``routed`` ran."""

    def routed(self, observation: Observation) -> None:
        """Called at most once, from the thread serving the request."""
