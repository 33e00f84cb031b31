"""Where flask-observe's handler goes: the loggers the settings name."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Optional

from flask.logging import default_handler

from ..config import Settings
from .console import ConsoleLogFormatter
from .filters import TraceContextFilter
from .formatter import JsonLogFormatter
from .handler import ObserveHandler

__all__ = ["install_logging"]


def install_logging(app_logger: str, settings: Settings) -> list[logging.Logger]:
    """Put one :class:`ObserveHandler` on the loggers *settings* names; return them.

    A handler left by an earlier app on the same logger is replaced, not doubled. Flask's
    own default handler on the app's logger is removed, so a line is not written twice.
    """
    formatter_class = ConsoleLogFormatter if settings.log_format == "console" else JsonLogFormatter
    handler = ObserveHandler()
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(formatter_class(service=settings.service_name, redact=settings.log_redact))
    if settings.log_root:
        names: Sequence[Optional[str]] = [None]
    else:
        names = [app_logger, "flask_observe", *settings.log_loggers]
    # An earlier setup's handler goes, wherever it was: root or not, it is replaced.
    for name in {None, app_logger, "flask_observe", *settings.log_loggers}:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, ObserveHandler)]:
            logger.removeHandler(old)
    loggers = []
    for name in dict.fromkeys(names):
        logger = logging.getLogger(name)
        # Below another of the names, a record reaches the handler there: one is enough.
        if not any(name and other and name.startswith(other + ".") for other in names):
            logger.addHandler(handler)
        logger.setLevel(settings.log_level)
        loggers.append(logger)
    logging.getLogger(app_logger).removeHandler(default_handler)
    if settings.log_root:
        logging.getLogger("flask_observe").setLevel(settings.log_level)
    return loggers
