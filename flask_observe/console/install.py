"""Setting the console up on an app: its buffers, its span processor and log handler, its
blueprint. ``init_app`` calls :func:`install_console` only when the console is on, so an
app without it carries none of this on its request path."""

from __future__ import annotations

import time
from typing import Any, Optional

from flask import Flask
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import TracerProvider

from ..config import Settings
from ..logs.redaction import Redactor
from .buffers import Ring
from .figures import History
from .loglines import ConsoleLogHandler, attach_log_handler
from .spans import ConsoleSpanProcessor

__all__ = ["Console", "install_console"]


class Console:
    """What the console of one app keeps: in ``app.extensions["observe"].console``."""

    def __init__(self, settings: Settings, *, multiprocess: bool) -> None:
        self.settings = settings
        #: Whether the route figures come from every worker's files.
        self.multiprocess = multiprocess
        self.spans: Ring[ReadableSpan] = Ring(settings.console_spans)
        self.logs: Ring[str] = Ring(settings.console_logs)
        self.history = History(settings.console_window, from_zero=not multiprocess)
        self.redactor = Redactor(settings.log_redact)
        #: Why the console keeps no spans, when it does not.
        self.tracing_note: Optional[str] = None
        self.processor: Optional[ConsoleSpanProcessor] = None
        self.log_handler: Optional[ConsoleLogHandler] = None
        self.started = time.time()

    def skip_endpoint(self, endpoint: str) -> bool:
        """Whether a metric's ``endpoint`` is the console's own (never shown as a route)."""
        path = self.settings.console_path
        return (
            endpoint == path
            or endpoint.startswith(path + "/")
            or endpoint.startswith("flask_observe_console.")
        )


def _keep_spans(
    console: Console, settings: Settings, provider: TracerProvider, own_provider: bool
) -> None:
    if settings.tracing_instrumentation == "off":
        console.tracing_note = "Tracing is off (OBSERVE_TRACING_INSTRUMENTATION = 'off')."
        return
    if not own_provider:
        console.tracing_note = (
            "The app's spans go to a tracer provider that flask-observe neither made nor "
            "was given (the global one): pass it as Observe(tracer_provider=...) for the "
            "console to keep them."
        )
        return
    add: Any = getattr(provider, "add_span_processor", None)
    if add is None:
        console.tracing_note = (
            f"The app's tracer provider is a {type(provider).__qualname__}, not the "
            "OpenTelemetry SDK's TracerProvider: the console cannot see its spans."
        )
        return
    console.processor = ConsoleSpanProcessor(console.spans)
    add(console.processor)


def install_console(
    app: Flask,
    settings: Settings,
    *,
    provider: TracerProvider,
    own_provider: bool,
    multiprocess: bool,
) -> Console:
    """Set the console up on *app*: keep the spans of *provider* (when *own_provider*: one
    flask-observe made, or was given) and the log lines of the loggers flask-observe's
    logs cover, and serve the pages at :data:`OBSERVE_CONSOLE_PATH`."""
    from .views import console_blueprint  # Jinja and the views only for an app that has it

    console = Console(settings, multiprocess=multiprocess)
    _keep_spans(console, settings, provider, own_provider)
    handler = ConsoleLogHandler(
        console.logs, service=settings.service_name, redact=settings.log_redact
    )
    console.log_handler = handler
    loggers: list[Optional[str]] = (
        [None] if settings.log_root else [app.name, "flask_observe", *settings.log_loggers]
    )
    attach_log_handler(handler, loggers)
    app.register_blueprint(console_blueprint(settings))
    return console
