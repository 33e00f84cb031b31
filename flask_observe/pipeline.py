"""The request lifecycle: one observation per request, finished once, fed to every sink.

``before_request`` makes the :class:`~flask_observe.observation.Observation` and starts the
sinks; ``after_request`` notes the status and body size; ``teardown_request`` finishes it, or,
for a streamed body, the response's close does, so the duration covers the whole body. A sink
that raises is counted and logged once; the request never sees the failure.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable, Optional

from flask import Flask, Response, request

from .config import Settings
from .observation import UNMATCHED, Observation, Sink

__all__ = ["RequestPipeline"]

_log = logging.getLogger("flask_observe")

#: Where the observation lives during a request: the WSGI environ, which belongs to exactly
#: one request, unlike ``g``, which an app context pushed around a test client shares.
ENVIRON_KEY = "flask_observe.observation"

#: Methods kept as label values. Any other method the matched route does not declare is
#: reported as ``_OTHER`` (the OpenTelemetry convention), so made-up methods cannot add series.
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}
)


class _CountingBody:
    """A streamed body that counts the bytes it yields and notes a failure mid-stream."""

    __slots__ = ("_body", "_observation")

    def __init__(self, body: Iterable[Any], observation: Observation) -> None:
        self._body = body
        self._observation = observation
        observation.response_size = 0

    def __iter__(self) -> Iterator[bytes]:
        observation = self._observation
        size = 0
        try:
            for chunk in self._body:
                if isinstance(chunk, str):
                    chunk = chunk.encode()
                size += len(chunk)
                observation.response_size = size
                yield chunk
        except Exception as exc:
            observation.exception = type(exc).__name__
            observation.status = 500
            raise

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


class RequestPipeline:
    """Observes every request of one app and hands each observation to the sinks.

    :param settings: the app's validated settings.
    :param sinks: the consumers, called in order.
    :param on_sink_error: called with a sink's name each time it raises (the error counter).
    """

    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[Sink],
        on_sink_error: Callable[[str], None],
    ) -> None:
        self._sinks = tuple(sinks)
        self._on_sink_error = on_sink_error
        self._logged: set[str] = set()
        self._by_endpoint = settings.group_by == "endpoint"
        self._exclude = frozenset(settings.exclude_paths)
        self._exclude_prefixes = tuple(p.rstrip("/") + "/" for p in settings.exclude_paths)

    def add_sink(self, sink: Sink) -> None:
        """Feed every later observation to *sink* too, after the sinks already there."""
        self._sinks = (*self._sinks, sink)

    def install(self, app: Flask) -> None:
        """Register the hooks: first of the before_request functions, last of the others.

        Running first means a user's ``before_request`` that returns early or raises is still
        observed; running last means the response seen is the one that is sent.
        """
        app.before_request_funcs.setdefault(None, []).insert(0, self.before_request)
        app.after_request_funcs.setdefault(None, []).insert(0, self.after_request)
        app.teardown_request_funcs.setdefault(None, []).insert(0, self.teardown_request)

    # -- the hooks --

    def before_request(self) -> None:
        if not self._sinks:
            return
        try:
            req = request._get_current_object()  # type: ignore[attr-defined]
            path: str = req.path
            if path in self._exclude or path.startswith(self._exclude_prefixes):
                return
            rule = req.url_rule
            method: str = req.method
            if rule is None:
                route, endpoint = None, UNMATCHED
            else:
                route = rule.rule
                endpoint = rule.endpoint if self._by_endpoint else route
            if method not in _KNOWN_METHODS and (rule is None or method not in rule.methods):
                method = "_OTHER"
            observation = Observation(
                start=time.perf_counter(),
                method=method,
                endpoint=endpoint,
                route=route,
                path=path,
                request_size=req.content_length or 0,
            )
            req.environ[ENVIRON_KEY] = observation
        except Exception:
            self._failed("pipeline")
            return
        for sink in self._sinks:
            try:
                sink.start(observation)
            except Exception:
                self._failed(sink.name)
                if observation.failed_sinks is None:
                    observation.failed_sinks = set()
                observation.failed_sinks.add(sink.name)

    def after_request(self, response: Response) -> Response:
        try:
            observation: Optional[Observation] = request.environ.get(ENVIRON_KEY)
            if observation is None:
                return response
            observation.status = response.status_code
            length = response.content_length
            if length is not None:
                # A body of known size (any buffered body, an error page, send_file): the
                # work is done, and teardown finishes the observation.
                observation.response_size = length
            elif response.is_streamed:
                # A generator: its work happens as the server sends it, so the observation
                # ends when the response closes, and the bytes are counted as they go.
                observation.streamed = True
                response.response = _CountingBody(response.response, observation)
                response.call_on_close(lambda: self.finish(observation))
            else:
                observation.response_size = response.calculate_content_length()
        except Exception:
            self._failed("pipeline")
        return response

    def teardown_request(self, exc: Optional[BaseException]) -> None:
        try:
            observation: Optional[Observation] = request.environ.pop(ENVIRON_KEY, None)
            if observation is None:
                return
            if exc is not None:
                observation.exception = type(exc).__name__
                if observation.status is None:
                    # The exception propagated (PROPAGATE_EXCEPTIONS): no response was made
                    # here, and the server will answer 500.
                    observation.status = 500
            if not observation.streamed:
                self.finish(observation)
        except Exception:
            self._failed("pipeline")

    # -- finishing --

    def finish(self, observation: Observation) -> None:
        """End the observation and feed it to the sinks; a second call does nothing."""
        if observation.finished:
            return
        observation.finished = True
        observation.duration = time.perf_counter() - observation.start
        failed = observation.failed_sinks
        for sink in self._sinks:
            if failed is not None and sink.name in failed:
                continue
            try:
                sink.finish(observation)
            except Exception:
                self._failed(sink.name)

    def _failed(self, name: str) -> None:
        """Count a failure of *name*; log its traceback the first time only, not per request."""
        # Should the counter itself break, the log line below still tells someone.
        with contextlib.suppress(Exception):
            self._on_sink_error(name)
        if name not in self._logged:
            self._logged.add(name)
            _log.error(
                "flask-observe sink %r failed; the request goes on. Later failures of this "
                "sink are only counted in flask_observe_errors_total{sink=%r}.",
                name,
                name,
                exc_info=True,
            )
