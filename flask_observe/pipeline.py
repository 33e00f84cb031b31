"""The request lifecycle: one observation per request, finished once, fed to every sink.

Two places see a request, chosen because they are the cheapest that see all of it:

- a thin wrapper around ``app.wsgi_app`` starts the clock before Flask does any work, reads
  the status and ``Content-Length`` as they pass through ``start_response``, and finishes the
  observation when the response is complete: at once for a body of known length, at the
  body's ``close()`` for one made as it is sent (a generator), so the duration covers it all;
- a ``before_request`` function, the first of the app's, fills in what only Flask knows (the
  matched route) and starts the sinks.

Flask's ``got_request_exception`` signal names the class of an unhandled exception; the
wrapper sees those that propagate. A sink that raises is counted and logged once; the request
never sees the failure.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable, Optional

from flask import Flask, current_app, got_request_exception, request
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import Rule

from .config import Settings
from .observation import UNMATCHED, Observation, Sink

__all__ = ["ENVIRON_KEY", "RequestPipeline"]

_log = logging.getLogger("flask_observe")

#: Where the observation lives during a request: the WSGI environ, which belongs to exactly
#: one request, unlike ``g``, which an app context pushed around a test client shares.
ENVIRON_KEY = "flask_observe.observation"

#: Methods kept as label values. Any other method the matched route does not declare is
#: reported as ``_OTHER`` (the OpenTelemetry convention), so made-up methods cannot add series.
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}
)
#: Statuses whose response has no body by definition.
_NO_BODY = frozenset({204, 304})

WSGIApp = Callable[[Any, Callable[..., Any]], Iterable[bytes]]


def _size(header: Optional[str]) -> int:
    """A length header as a number of bytes; 0 when absent or not a number."""
    if not header:
        return 0
    try:
        return max(int(header), 0)
    except ValueError:
        return 0


def _rule_of_405(req: Any) -> Optional[Rule]:
    """The rule whose path a 405 request matched, so it is labelled with its route.

    Flask leaves ``url_rule`` unset when only the method was wrong; matching again with an
    allowed method finds the rule. This runs on the 405 path only.
    """
    allowed = req.routing_exception.valid_methods
    if not allowed:
        return None
    try:
        adapter = current_app.create_url_adapter(req)
        if adapter is None:
            return None
        rule, _args = adapter.match(method=next(iter(allowed)), return_rule=True)
    except Exception:
        return None
    return rule


class _ObservedBody:
    """A body of unknown length: counts the bytes as they are sent, finishes on close."""

    __slots__ = ("_body", "_finish", "_observation")

    def __init__(
        self,
        body: Iterable[bytes],
        observation: Observation,
        finish: Callable[[Observation], None],
    ) -> None:
        self._body = body
        self._observation = observation
        self._finish = finish
        observation.response_size = 0

    def __iter__(self) -> Iterator[bytes]:
        observation = self._observation
        try:
            for chunk in self._body:
                observation.response_size += len(chunk)  # type: ignore[operator]
                yield chunk
        except Exception as exc:
            # The status line has gone out, but the response failed: an error all the same.
            observation.exception = type(exc).__name__
            observation.status = 500
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._finish(self._observation)


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
        self._sinks: tuple[Sink, ...] = tuple(sinks)
        self._on_sink_error = on_sink_error
        self._logged: set[str] = set()
        self._by_endpoint = settings.group_by == "endpoint"
        self._exclude = frozenset(settings.exclude_paths)
        self._exclude_prefixes = tuple(p.rstrip("/") + "/" for p in settings.exclude_paths)

    def add_sink(self, sink: Sink) -> None:
        """Feed every later observation to *sink* too, after the sinks already there."""
        self._sinks = (*self._sinks, sink)

    def install(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app`` and register the ``before_request`` function first.

        Running first means a user's ``before_request`` that answers early or raises is still
        observed. Middleware the user adds later wraps this one, as usual.
        """
        app.wsgi_app = self._wrap(app.wsgi_app)  # type: ignore[method-assign,assignment]
        app.before_request_funcs.setdefault(None, []).insert(0, self.before_request)
        got_request_exception.connect(self._on_exception, app)

    # -- the WSGI side: the clock, the status, the end --

    def _wrap(self, inner: WSGIApp) -> WSGIApp:
        exclude, prefixes = self._exclude, self._exclude_prefixes

        def observed_wsgi_app(environ: Any, start_response: Callable[..., Any]) -> Any:
            path = environ.get("PATH_INFO") or "/"
            if not self._sinks or path in exclude or path.startswith(prefixes):
                return inner(environ, start_response)
            observation = Observation(time.perf_counter())
            environ[ENVIRON_KEY] = observation

            def capture(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
                try:
                    observation.status = int(status[:3])
                    for name, value in headers:
                        if name.lower() == "content-length":
                            observation.response_size = _size(value)
                            break
                except Exception:
                    self._failed("pipeline")
                return start_response(status, headers, *exc_info)

            try:
                body = inner(environ, capture)
            except BaseException as exc:
                # Propagated (PROPAGATE_EXCEPTIONS, or not an Exception): the server answers
                # 500 without us seeing a response.
                if observation.started:
                    if observation.exception is None:
                        observation.exception = type(exc).__name__
                    observation.status = 500
                    self.finish(observation)
                raise
            if not observation.started:
                return body
            if observation.response_size is None:
                if observation.status not in _NO_BODY and observation.method != "HEAD":
                    return _ObservedBody(body, observation, self.finish)
                observation.response_size = 0
            self.finish(observation)
            return body

        return observed_wsgi_app

    # -- the Flask side: the route, read through _get_current_object() once, since every
    # -- attribute read through the ``request`` proxy costs a lookup.

    def before_request(self) -> None:
        try:
            req = request._get_current_object()  # type: ignore[attr-defined]
            environ = req.environ
            observation: Optional[Observation] = environ.get(ENVIRON_KEY)
            if observation is None or observation.started:
                return
            rule = req.url_rule
            method: str = req.method
            if rule is None and isinstance(req.routing_exception, MethodNotAllowed):
                rule = _rule_of_405(req)
            if rule is None:
                observation.route, observation.endpoint = None, UNMATCHED
            else:
                observation.route = route = rule.rule
                observation.endpoint = rule.endpoint if self._by_endpoint else route
            if method not in _KNOWN_METHODS and (rule is None or method not in rule.methods):
                method = "_OTHER"
            observation.method = method
            observation.path = req.path
            length = environ.get("CONTENT_LENGTH")
            if length:
                observation.request_size = _size(length)
            observation.started = True
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

    def _on_exception(self, sender: Flask, exception: BaseException, **extra: Any) -> None:
        with contextlib.suppress(Exception):
            observation = request.environ.get(ENVIRON_KEY)
            if observation is not None:
                observation.exception = type(exception).__name__

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
