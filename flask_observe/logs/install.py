"""Where flask-observe's handler goes: the loggers the settings name, and every logger
:func:`adopt` was given (those of :func:`~flask_observe.get_logger`), whatever its name."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Callable, NamedTuple, Optional

from flask.logging import default_handler

from ..config import Settings
from .console import ConsoleLogFormatter
from .filters import RepeatFilter, TraceContextFilter
from .formatter import JsonLogFormatter
from .handler import ObserveHandler

__all__ = ["THIRD_PARTY", "adopt", "install_logging"]


class _Installed(NamedTuple):
    """What the last :func:`install_logging` did, which an adopted logger then gets."""

    handler: ObserveHandler
    level: int
    #: The loggers the handler went on (``None``: the root); a logger at or below one of them
    #: keeps its level, as it does when it is not adopted.
    names: tuple[Optional[str], ...]


_installed: Optional[_Installed] = None
#: The names of the adopted loggers. Kept, not the loggers: a later install finds them again.
_adopted: set[str] = set()
_adopting = threading.Lock()


def adopt(logger: logging.Logger) -> None:
    """Have flask-observe's handler write *logger*'s records, whatever its name: now, if
    logging is set up, and after every later :func:`install_logging`.

    The handler goes on *logger* itself, so that its records reach it however propagation
    is set; a record that also reaches the handler on a logger above is written once, as
    :class:`ObserveHandler` skips what another of its kind wrote. A logger outside the
    configured ones gets the configured level too, as one in ``OBSERVE_LOG_LOGGERS`` does.
    The root logger is left alone: it is adopted by ``OBSERVE_LOG_ROOT`` or not at all.
    """
    if logger.name in _adopted or logger is logging.root:
        return
    with _adopting:
        _adopted.add(logger.name)
        if _installed is not None:
            _attach(logger, _installed)


def _attach(logger: logging.Logger, installed: _Installed) -> None:
    if installed.handler not in logger.handlers:
        logger.addHandler(installed.handler)
    if not _below(logger.name, installed.names):
        logger.setLevel(installed.level)


def _below(name: str, names: Sequence[Optional[str]]) -> bool:
    """Whether the logger *name* is one of *names* or below one (all are below the root)."""
    return any(other is None or name == other or name.startswith(other + ".") for other in names)


#: Loggers of libraries on the request path that write what a client sent: OpenTelemetry's
#: propagators warn with the raw header, werkzeug logs the request line. With no handler
#: of their own, their lines reach Python's last-resort handler (plain text, a client's
#: bytes and newlines included) or werkzeug's own.
THIRD_PARTY = ("opentelemetry", "werkzeug")


def install_logging(
    app_logger: str, settings: Settings, on_lost: Optional[Callable[[str], None]] = None
) -> list[logging.Logger]:
    """Put one :class:`ObserveHandler` on the loggers *settings* names; return them.

    A handler left by an earlier app on the same logger is replaced, not doubled. Flask's
    own default handler on the app's logger is removed, so a line is not written twice.
    The adopted loggers (see :func:`adopt`) get the new handler. The loggers of
    :data:`THIRD_PARTY` get a handler of their own, which holds back repeated warnings, so
    that every line on standard error is one JSON object.

    :param on_lost: called with a reason for each line that could not be written (and each
        repeated warning held back, ``"suppressed"``).
    """
    global _installed
    handler = ObserveHandler()
    handler.on_lost = on_lost
    handler.addFilter(TraceContextFilter())
    formatter: JsonLogFormatter
    if settings.log_format == "console":
        formatter = ConsoleLogFormatter(service=settings.service_name, redact=settings.log_redact)
    else:
        formatter = JsonLogFormatter(
            service=settings.service_name,
            redact=settings.log_redact,
            preset=settings.log_format,
            environment=settings.service_environment,
            version=settings.service_version,
            gcp_project=settings.gcp_project,
        )
    handler.setFormatter(formatter)
    if settings.log_root:
        names: Sequence[Optional[str]] = [None]
    else:
        names = [app_logger, "flask_observe", *settings.log_loggers]
    # An earlier setup's handler goes, wherever it was: root or not, it is replaced.
    for name in {None, app_logger, "flask_observe", *settings.log_loggers}:
        _remove_earlier(logging.getLogger(name), handler)
    loggers = []
    for name in dict.fromkeys(names):
        logger = logging.getLogger(name)
        # Below another of the names, a record reaches the handler there: one is enough.
        if not any(name and other and name.startswith(other + ".") for other in names):
            logger.addHandler(handler)
        logger.setLevel(settings.log_level)
        loggers.append(logger)
    logging.getLogger(app_logger).removeHandler(default_handler)
    _install_third_party(handler, on_lost)
    if settings.log_root:
        logging.getLogger("flask_observe").setLevel(settings.log_level)
    with _adopting:
        _installed = _Installed(handler, settings.log_level, tuple(names))
        for name in _adopted:
            logger = logging.getLogger(name)
            _remove_earlier(logger, handler)
            _attach(logger, _installed)
    return loggers


def _install_third_party(main: ObserveHandler, on_lost: Optional[Callable[[str], None]]) -> None:
    """A handler like *main* for :data:`THIRD_PARTY`, holding back repeated warnings. Not
    *main* itself: its filters are the one the access line's fast path expects."""
    handler = ObserveHandler()
    handler.on_lost = on_lost
    handler.addFilter(TraceContextFilter())
    handler.addFilter(
        RepeatFilter(on_held=None if on_lost is None else lambda: on_lost("suppressed"))
    )
    handler.setFormatter(main.formatter)
    for name in THIRD_PARTY:
        logger = logging.getLogger(name)
        _remove_earlier(logger, handler)
        for other in list(logger.handlers):
            # werkzeug adds a plain stream handler of its own when it finds none.
            if type(other).__module__.startswith("werkzeug"):
                logger.removeHandler(other)
        logger.addHandler(handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)  # werkzeug's request lines, as werkzeug sets it


def _remove_earlier(logger: logging.Logger, handler: ObserveHandler) -> None:
    """Take the handlers of earlier setups off *logger*, leaving *handler*."""
    for old in [h for h in logger.handlers if isinstance(h, ObserveHandler)]:
        if old is not handler:
            logger.removeHandler(old)
