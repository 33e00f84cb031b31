"""flask-observe's signals, made with blinker as Flask's own are.

Connect a receiver with ``request_observed.connect(receiver)``, or for one app with
``request_observed.connect(receiver, app)``. Signals are sent only when they have receivers,
and a receiver that raises is skipped: it never breaks the request, the probe or the call
that sent the signal, nor keeps the other receivers from theirs. Its first failure is logged
on the ``flask_observe`` logger with the traceback; every failure is counted in
``flask_observe_errors_total{sink="signals"}`` of the app that sent it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from typing import Any, Callable, Optional

from blinker import NamedSignal, Namespace
from flask import Flask, current_app, has_app_context

from .observation import Observation

__all__ = [
    "SignalSink",
    "announce_failure",
    "function_failed",
    "health_changed",
    "notify",
    "request_observed",
    "slow_request",
]

_log = logging.getLogger("flask_observe")

_signals = Namespace()

#: Sent when a request's response is complete, for every request the app observes (those
#: of :data:`OBSERVE_EXCLUDE_PATHS` are not). The sender is the app; the keyword arguments
#: are the request's facts:
#:
#: - ``method``: the method, as the metrics label it (``_OTHER`` for one neither standard
#:   nor declared by the route);
#: - ``route``: the matched route template, ``None`` when no route matched;
#: - ``path``: the request path;
#: - ``status``: the response status, an ``int`` (500 when the request raised);
#: - ``duration``: seconds from the request's arrival to the end of its response;
#: - ``request_id``: the request ID, ``None`` when the JSON logs and the access log are off;
#: - ``trace_id``: the request span's trace ID in hex, ``None`` when it is not traced or
#:   not sampled;
#: - ``exception``: the class name of an unhandled exception, else ``None``;
#: - ``error``: that exception itself, when flask-observe saw it, else ``None``.
#:
#: It is sent from the thread serving the request when the measurement ends (once the app
#: has returned a body of known length, or once a streamed body has been sent), after the
#: request context has been popped, while the request's span is still current and its log
#: context still set: a receiver's log lines carry the request's ``request_id`` and
#: ``trace_id``. A receiver should be quick: the server has not sent a body of known
#: length yet, and it waits for the receiver.
#:
#: .. versionadded:: 0.1
request_observed = _signals.signal("request-observed")

#: Sent after :data:`request_observed` for a request that took longer than
#: :data:`OBSERVE_SLOW_REQUEST_SECONDS` (by default :data:`OBSERVE_ALERT_LATENCY_SECONDS`),
#: with the same sender and keyword arguments.
#:
#: .. versionadded:: 0.1
slow_request = _signals.signal("slow-request")

#: Sent when a function decorated with :func:`~flask_observe.traced`,
#: :func:`~flask_observe.timed` or :func:`~flask_observe.counted` raises an
#: :class:`Exception` (not a :class:`BaseException` such as ``SystemExit`` or a
#: cancellation). The sender is the app in context, or ``None`` outside an app context;
#: the keyword arguments are ``function``, the name the decorator records the call under
#: (the innermost decorator's, when several are stacked: the signal is sent once per
#: failed call), and ``exception``, the exception, which is then raised unchanged. It is
#: sent from the failing call, before the exception propagates.
#:
#: .. versionadded:: 0.1
function_failed = _signals.signal("function-failed")

#: Sent when a health check's status changes from ``"pass"`` to ``"fail"`` or back. The
#: sender is the app; the keyword arguments are ``check`` (the check's name),
#: ``old_status`` and ``new_status`` (``"pass"`` or ``"fail"``), and ``output`` (why the
#: check fails, or ``None`` when it passes). A check's first result sets where it starts,
#: and is not a change. It is sent from the thread serving the probe that saw the change,
#: so a receiver should be quick.
#:
#: .. versionadded:: 0.1
health_changed = _signals.signal("health-changed")

#: The receivers whose failure has been logged, per sender: later failures are counted only.
_logged: weakref.WeakKeyDictionary[Any, set[tuple[str, str]]] = weakref.WeakKeyDictionary()
_logged_without_sender: set[tuple[str, str]] = set()
_logged_lock = threading.Lock()


def notify(signal: NamedSignal, sender: Any, **kwargs: Any) -> None:
    """Call each receiver of *signal* for *sender*; log and count, and skip, one that
    raises."""
    if signal.receivers:
        _deliver(signal, sender, kwargs)


def _deliver(signal: NamedSignal, sender: Any, kwargs: dict[str, Any]) -> None:
    """:func:`notify` with the keyword arguments in a dict, made once by the caller."""
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except Exception:
            _receiver_failed(signal, sender, receiver)


def _receiver_failed(signal: NamedSignal, sender: Any, receiver: Callable[..., Any]) -> None:
    # Should the counter itself break, the log line below still tells someone.
    try:
        state = sender.extensions.get("observe") if isinstance(sender, Flask) else None
        if state is not None:
            state.http_metrics.errors.labels("signals").inc()
    except Exception:
        pass
    name = getattr(receiver, "__qualname__", None) or type(receiver).__qualname__
    key = (signal.name, f"{getattr(receiver, '__module__', '')}.{name}")
    with _logged_lock:
        try:
            logged = _logged.setdefault(sender, set())
        except TypeError:  # None, or a sender that cannot be weakly referenced
            logged = _logged_without_sender
        first = key not in logged
        logged.add(key)
    if first:
        _log.error(
            "A receiver of the %s signal failed: %r. Later failures of this receiver are "
            'only counted in flask_observe_errors_total{sink="signals"}.',
            signal.name,
            receiver,
            exc_info=True,
        )


#: The attribute of an exception that holds the ``id()`` of the function whose
#: ``function_failed`` it was sent for, so that stacked decorators send it once. An ``int``,
#: not the function, so that the exception still pickles (to a task queue, a process pool).
_ANNOUNCED = "_flask_observe_failed_in"


def announce_failure(fn: Callable[..., Any], name: str, exc: Exception) -> None:
    """Send :data:`function_failed` for a call of *fn* (the undecorated function) that
    raised *exc*, unless a decorator nearer *fn* already has. Never raises."""
    if not function_failed.receivers:
        return
    try:
        # Both functions are alive while the exception passes through them, so their ids
        # cannot be the same.
        if getattr(exc, _ANNOUNCED, None) == id(fn):
            return
        with contextlib.suppress(Exception):  # an exception that takes no attribute
            setattr(exc, _ANNOUNCED, id(fn))
        sender = (
            current_app._get_current_object()  # type: ignore[attr-defined]
            if has_app_context()
            else None
        )
        notify(function_failed, sender, function=name, exception=exc)
    except Exception:
        _log.debug("Could not send function_failed for %s", name, exc_info=True)


class SignalSink:
    """The sink that sends :data:`request_observed` and :data:`slow_request` for one app.

    With no receiver connected to either, a finished request costs two attribute checks.
    """

    name = "signals"
    start: Optional[Callable[[Observation], None]] = None

    def __init__(self, app: Flask, slow_seconds: float) -> None:
        # Weakly: the app holds the pipeline that holds this sink.
        self._app = weakref.ref(app)
        self._slow_seconds = slow_seconds

    def finish(self, observation: Observation) -> None:
        observed = request_observed.receivers
        slow = slow_request.receivers and observation.duration > self._slow_seconds
        if not (observed or slow):
            return
        app = self._app()
        if app is None:
            return
        facts = {
            "method": observation.method,
            "route": observation.route,
            "path": observation.path,
            "status": observation.status or 500,
            "duration": observation.duration,
            "request_id": observation.request_id,
            "trace_id": observation.trace_id,
            "exception": observation.exception,
            "error": observation.error,
        }
        if observed:
            _deliver(request_observed, app, facts)
        if slow:
            _deliver(slow_request, app, facts)
