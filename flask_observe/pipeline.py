"""The request lifecycle: one observation per request, finished once, fed to every sink.

One thin wrapper around ``app.wsgi_app`` sees every request, because it is the cheapest
place that sees all of it (a ``before_request`` function costs more than the metrics it
feeds: Flask checks it for a coroutine on every call):

- it starts the clock and the sinks before Flask does any work;
- it reads the status and ``Content-Length`` as they pass through ``start_response``. Flask
  calls ``start_response`` while the request context is still pushed, so the route Flask
  matched is read there too, from the request object;
- it finishes the observation when the response is complete: at once for a body of known
  length, at the body's ``close()`` for one made as it is sent (a generator), so the duration
  covers it all.

Flask's ``got_request_exception`` signal names the class of an unhandled exception; the
wrapper sees those that propagate. Requests still being served are kept in a set, so the
in-progress gauge can label each with its route when it is scraped. A sink that raises is
counted and logged once; the request never sees the failure.

A sink that must act once the route is known, before the view runs, has a ``routed`` hook
(see :class:`~flask_observe.observation.RoutedSink`), called from Flask's
``request_started`` signal; the pipeline listens for that signal only when a sink needs it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable, Optional

from flask import Flask, got_request_exception, request, request_started
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import Map, Rule

from ._http import KNOWN_METHODS, OTHER_METHOD
from .config import Settings
from .observation import ENVIRON_KEY, UNMATCHED, Observation, Sink

__all__ = ["ENVIRON_KEY", "RequestPipeline"]

_log = logging.getLogger("flask_observe")


#: Statuses whose response has no body by definition.
_NO_BODY = frozenset({204, 304})

WSGIApp = Callable[[Any, Callable[..., Any]], Iterable[bytes]]


def _add_headers(
    headers: list[tuple[str, str]], extra: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """*headers* with each of *extra* added, unless the app set that header itself."""
    present = [name.lower() for name, _ in headers]
    for name, value in extra:
        if name.lower() not in present:
            headers.append((name, value))  # the list is made for this response alone
    return headers


def _decoded_path(environ: Any) -> str:
    """The request path as Flask would decode it (WSGI carries it as latin-1)."""
    raw: str = environ.get("PATH_INFO") or "/"
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")


#: The most digits a length header is believed with: up to a petabyte, which a float still
#: adds exactly. A longer one is the client's invention, and one such request would
#: otherwise swamp ``http_request_size_bytes_sum`` for good.
_MAX_LENGTH_DIGITS = 15


def _size(header: Optional[str]) -> int:
    """A length header as a number of bytes: only plain ASCII digits, at most 15 of them,
    are believed (``int()`` would take ``" 5"``, ``"+5"``, ``"5_000"`` and a hundred-digit
    number alike); anything else counts as absent, 0. The body is never read to measure it.
    """
    if not header or len(header) > _MAX_LENGTH_DIGITS or not header.isascii():
        return 0
    return int(header) if header.isdigit() else 0


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
        self._sinks: tuple[Sink, ...] = ()
        #: The sinks in the order they finish: last started, first finished, so that a
        #: sink's context (the request's span) stays around the sinks started after it.
        self._finishers: tuple[Sink, ...] = ()
        #: ``(name, start)`` of the sinks that have a ``start``, and ``(name, routed)`` of
        #: those that have a ``routed``.
        self._starters: tuple[tuple[str, Callable[[Observation], None]], ...] = ()
        self._routers: tuple[tuple[str, Callable[[Observation], None]], ...] = ()
        for sink in sinks:
            self.add_sink(sink)
        self._on_sink_error = on_sink_error
        self._logged: set[str] = set()
        #: The service name, for the sinks (through each observation).
        self.service = settings.service_name
        self._by_endpoint = settings.group_by == "endpoint"
        self._exclude = frozenset(settings.exclude_paths)
        self._exclude_prefixes = tuple(p.rstrip("/") + "/" for p in settings.exclude_paths)
        self._url_map: Optional[Map] = None
        #: Observations started and not yet finished. ``set.add`` and ``set.discard`` are
        #: atomic, so no lock; readers copy it first.
        self._in_flight: set[Observation] = set()

    def add_sink(self, sink: Sink) -> None:
        """Feed every later observation to *sink* too, after the sinks already there.

        A sink with a ``routed`` hook must be added before :meth:`install`.
        """
        self._sinks = (*self._sinks, sink)
        self._finishers = self._sinks[::-1]
        if sink.start is not None:
            self._starters = (*self._starters, (sink.name, sink.start))
        routed = getattr(sink, "routed", None)
        if routed is not None:
            self._routers = (*self._routers, (sink.name, routed))

    def install(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app`` and listen for the app's unhandled exceptions.

        The wrapper sees a request before any of the app's own functions, so a user's
        ``before_request`` that answers early or raises is still observed. Middleware the
        user adds later wraps this one, as usual.
        """
        self._url_map = app.url_map
        app.wsgi_app = self._wrap(app.wsgi_app)  # type: ignore[method-assign,assignment]
        got_request_exception.connect(self._on_exception, app)
        if self._routers:
            request_started.connect(self._on_routed, app)

    def in_flight(self) -> list[tuple[str, str]]:
        """``(method, endpoint)`` of each request being served whose route is known yet.

        Safe from any thread: a scrape calls it while other threads serve requests.
        """
        labels = []
        for observation in list(self._in_flight):
            if observation.endpoint:
                labels.append((observation.method, observation.endpoint))
                continue
            with contextlib.suppress(Exception):
                facts = self._route_facts(observation.environ, routed_only=True)
                if facts is not None:
                    labels.append((facts[0], facts[1]))
        return labels

    # -- the WSGI side: the clock, the sinks, the status, the end --

    def _wrap(self, inner: WSGIApp) -> WSGIApp:
        exclude, prefixes, in_flight = self._exclude, self._exclude_prefixes, self._in_flight

        def observed_wsgi_app(environ: Any, start_response: Callable[..., Any]) -> Any:
            path = environ.get("PATH_INFO") or "/"
            if not self._sinks or path in exclude or path.startswith(prefixes):
                return inner(environ, start_response)
            observation = Observation(time.perf_counter(), environ, self)
            environ[ENVIRON_KEY] = observation
            if self._starters:
                self._start(observation)
            in_flight.add(observation)

            def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                try:
                    if not observation.endpoint:
                        self.resolve(observation)
                    observation.status = int(status[:3])
                    for name, value in headers:
                        # Werkzeug spells it so; other spellings take the slower test.
                        if name == "Content-Length" or name.lower() == "content-length":
                            observation.response_size = _size(value)
                            break
                    if observation.response_headers:
                        headers = _add_headers(headers, observation.response_headers)
                except Exception:
                    self._failed("pipeline")
                if exc_info is None:
                    return start_response(status, headers)
                return start_response(status, headers, exc_info)

            try:
                body = inner(environ, capture)
            except BaseException as exc:
                # Propagated (PROPAGATE_EXCEPTIONS, or not an Exception): the server answers
                # 500 without us seeing a response.
                if observation.exception is None:
                    observation.exception = type(exc).__name__
                    observation.error = exc
                observation.status = 500
                self.finish(observation)
                raise
            if observation.response_size is None:
                if observation.status not in _NO_BODY and observation.method != "HEAD":
                    return _ObservedBody(body, observation, self.finish)
                observation.response_size = 0
            self.finish(observation)
            return body

        return observed_wsgi_app

    def _start(self, observation: Observation) -> None:
        for name, start in self._starters:
            try:
                start(observation)
            except Exception:
                self._failed(name)
                if observation.failed_sinks is None:
                    observation.failed_sinks = set()
                observation.failed_sinks.add(name)

    # -- the route: read from Flask's request object while its context is pushed --

    def resolve(self, observation: Observation) -> None:
        """Fill in the method label, endpoint, route and path; once per request."""
        try:
            facts = self._route_facts(observation.environ, routed_only=False)
        except Exception:
            self._failed("pipeline")
            facts = None
        if facts is None:
            method = observation.environ.get("REQUEST_METHOD", "")
            facts = (method if method in KNOWN_METHODS else OTHER_METHOD, UNMATCHED, None, "")
        # ``method`` is set before ``endpoint``: a scrape that sees an endpoint sees its method.
        observation.method, observation.endpoint, observation.route, observation.path = facts
        length = observation.environ.get("CONTENT_LENGTH")
        if length:
            observation.request_size = _size(length)

    def _route_facts(
        self, environ: Any, *, routed_only: bool
    ) -> Optional[tuple[str, str, Optional[str], str]]:
        """``(method label, endpoint label, route, path)`` of the request in *environ*.

        Read from the Flask request if it has been routed. Otherwise, unless *routed_only*,
        the URL is matched here: that happens only when the request object is gone before
        the response starts (a middleware inside this one that delays ``start_response``,
        or an exception that escapes Flask).
        """
        # Flask's request once it exists; before that, possibly a plain werkzeug request (the
        # test client leaves one there), which has no routing attributes.
        req = environ.get("werkzeug.request")
        rule: Optional[Rule] = getattr(req, "url_rule", None)
        failed = getattr(req, "routing_exception", None)
        if rule is not None or failed is not None:
            if rule is None and isinstance(failed, MethodNotAllowed):
                rule = self._match(environ, failed.valid_methods)
            path: str = req.path
        elif routed_only:
            return None
        else:
            rule = self._match(environ, None)
            path = _decoded_path(environ)
        method: str = environ.get("REQUEST_METHOD", "")
        # A method the matched route declares is kept, standard or not.
        if method not in KNOWN_METHODS and (rule is None or method not in (rule.methods or ())):
            method = OTHER_METHOD
        if rule is None:
            return method, UNMATCHED, None, path
        route = rule.rule
        return method, rule.endpoint if self._by_endpoint else route, route, path

    def _match(self, environ: Any, allowed: Optional[Iterable[str]]) -> Optional[Rule]:
        """The rule *environ*'s path matches; with *allowed* (a 405), the rule matched by
        path alone. ``None`` when nothing matches."""
        if self._url_map is None:
            return None
        adapter = self._url_map.bind_to_environ(environ)
        try:
            if allowed is None:
                rule, _args = adapter.match(return_rule=True)
            else:
                rule, _args = adapter.match(method=next(iter(allowed)), return_rule=True)
        except MethodNotAllowed as exc:
            if allowed is not None or not exc.valid_methods:
                return None
            return self._match(environ, exc.valid_methods)
        except Exception:  # not found, a redirect, a bad host: no route
            return None
        return rule

    def _on_routed(self, sender: Flask, **extra: Any) -> None:
        """Flask has routed the request and is about to run the app's ``before_request``
        functions and the view: hand the observation to the sinks' ``routed`` hooks."""
        try:
            observation = request.environ.get(ENVIRON_KEY)
            if observation is None or observation.owner is not self or observation.finished:
                return
            if not observation.endpoint:
                self.resolve(observation)
        except Exception:
            self._failed("pipeline")
            return
        failed = observation.failed_sinks
        for name, routed in self._routers:
            if failed is not None and name in failed:
                continue
            try:
                routed(observation)
            except Exception:
                self._failed(name)

    def _on_exception(self, sender: Flask, exception: BaseException, **extra: Any) -> None:
        with contextlib.suppress(Exception):
            observation = request.environ.get(ENVIRON_KEY)
            if observation is not None:
                observation.exception = type(exception).__name__
                observation.error = exception
                if not observation.endpoint:  # the request object may be gone later
                    self.resolve(observation)

    # -- finishing --

    def finish(self, observation: Observation) -> None:
        """End the observation and feed it to the sinks; a second call does nothing."""
        if observation.finished:
            return
        observation.finished = True
        observation.duration = time.perf_counter() - observation.start
        if not observation.endpoint:
            self.resolve(observation)
        failed = observation.failed_sinks
        for sink in self._finishers:
            if failed is not None and sink.name in failed:
                continue
            try:
                sink.finish(observation)
            except Exception:
                self._failed(sink.name)
        self._in_flight.discard(observation)
        # The environ and the observation refer to each other: left so, each request's
        # observation (and its span) would wait for the cycle collector.
        observation.environ.pop(ENVIRON_KEY, None)

    def _failed(self, name: str) -> None:
        """Count a failure of *name*; log its traceback the first time only, not per request."""
        # Should the counter itself break, the log line below still tells someone.
        with contextlib.suppress(Exception):
            self._on_sink_error(name)
        if name not in self._logged:
            self._logged.add(name)
            # Nor may the report itself fail the request: the logs sink fails when stderr
            # does, and this line goes there too.
            with contextlib.suppress(Exception):
                _log.error(
                    "flask-observe sink %r failed; the request goes on. Later failures of "
                    "this sink are only counted in flask_observe_errors_total{sink=%r}.",
                    name,
                    name,
                    exc_info=True,
                )
