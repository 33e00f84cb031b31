"""What one request looked like: the plain data the pipeline hands to every sink."""

from __future__ import annotations

from typing import Optional, Protocol

__all__ = ["UNMATCHED", "Observation", "Sink"]

#: The ``endpoint`` label of a request that matched no route. A fixed value keeps a scan of
#: random paths from adding series.
UNMATCHED = "<unmatched>"


class Observation:
    """One request, from ``before_request`` to the end of its response.

    The pipeline fills it in; sinks read it. ``endpoint`` is the metric label (the route
    template, or the view name with ``OBSERVE_GROUP_BY = "endpoint"``); ``route`` is the route
    template, ``None`` when nothing matched.
    """

    __slots__ = (
        "duration",
        "endpoint",
        "exception",
        "failed_sinks",
        "finished",
        "method",
        "path",
        "request_size",
        "response_size",
        "route",
        "start",
        "status",
        "streamed",
    )

    def __init__(
        self,
        *,
        start: float,
        method: str,
        endpoint: str,
        route: Optional[str],
        path: str,
        request_size: int,
    ) -> None:
        self.start = start
        self.method = method
        self.endpoint = endpoint
        self.route = route
        self.path = path
        self.request_size = request_size
        #: The response status; ``None`` until a response exists (500 if none ever does).
        self.status: Optional[int] = None
        #: Body bytes sent; ``None`` when unknown.
        self.response_size: Optional[int] = None
        #: The class name of an unhandled exception, if the request raised one.
        self.exception: Optional[str] = None
        #: Seconds from ``before_request`` to the end of the response, set when finished.
        self.duration = 0.0
        self.streamed = False
        self.finished = False
        #: Names of sinks whose ``start`` failed; they are not asked to ``finish``.
        self.failed_sinks: Optional[set[str]] = None


class Sink(Protocol):
    """A consumer of observations: metrics now; logs, spans and signals later."""

    #: The ``sink`` label of ``flask_observe_errors_total`` when this sink raises.
    name: str

    def start(self, observation: Observation) -> None:
        """Called in ``before_request``, once the route is known."""

    def finish(self, observation: Observation) -> None:
        """Called exactly once, when the response is complete."""
