"""The console's log handler: recent log lines, kept in a ring as flask-observe writes them.

A :class:`logging.Handler` of the console's own, put on the loggers flask-observe's logs
cover (the app's, ``flask_observe`` and :data:`OBSERVE_LOG_LOGGERS`, or the root logger
with :data:`OBSERVE_LOG_ROOT`). It formats each record with flask-observe's
:class:`~flask_observe.logs.JsonLogFormatter`, so a line here has the fields, the request
and trace IDs and the redaction of a line on stderr, and keeps the line's text; a page
parses the lines it shows. Only the stdlib logging API is used, nothing of the log module's
internals.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from ..logs import JsonLogFormatter, TraceContextFilter
from .buffers import Ring

__all__ = ["ConsoleLogHandler", "attach_log_handler", "parse_lines"]

#: The longest line kept as it is; a longer one (a deep traceback, a huge field) has its
#: long values clipped, so that the ring's count bounds its memory.
MAX_LINE_CHARS = 16384
#: What a clipped value keeps.
_MAX_VALUE_CHARS = 2048


def _clipped(line: str) -> str:
    try:
        data = json.loads(line)
    except ValueError:
        return line[:MAX_LINE_CHARS]
    if not isinstance(data, dict):
        return line[:MAX_LINE_CHARS]
    for key, value in data.items():
        text = value if isinstance(value, str) else None
        if text is None and isinstance(value, (dict, list)):
            text = json.dumps(value, default=str)
        if text is not None and len(text) > _MAX_VALUE_CHARS:
            data[key] = text[:_MAX_VALUE_CHARS] + "...[clipped by the console]"
    return json.dumps(data, default=str)[: MAX_LINE_CHARS * 2]


class ConsoleLogHandler(logging.Handler):
    """Formats each record as flask-observe's JSON line and keeps it in *ring*.

    :param ring: where the lines go; its size bounds their count.
    :param service: the ``service`` of lines logged outside a request.
    :param redact: the patterns of :data:`OBSERVE_LOG_REDACT`.
    """

    def __init__(self, ring: Ring[str], *, service: str, redact: Sequence[str]) -> None:
        super().__init__()
        self.ring = ring
        self._append = ring.append
        # Its own filter: which handler sees a record first depends on the loggers.
        self.addFilter(TraceContextFilter())
        self.setFormatter(JsonLogFormatter(service=service, redact=redact))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if len(line) > MAX_LINE_CHARS:
                line = _clipped(line)
            self._append(line)
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """Leave out a line the console could not keep. The default would print a traceback
        on stderr, where every line is JSON, for a line that stderr has anyway."""


def attach_log_handler(handler: ConsoleLogHandler, loggers: Iterable[Optional[str]]) -> None:
    """Put *handler* on each of *loggers* (``None``: the root), once along each line of
    ancestry, replacing a console handler an earlier app of the process left there."""
    names = list(dict.fromkeys(loggers))
    for name in names:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, ConsoleLogHandler)]:
            logger.removeHandler(old)
    for name in names:
        # Below another of the names, a record reaches the handler there: one is enough.
        if name is None or not any(
            other is None or name.startswith(other + ".") for other in names if other != name
        ):
            logging.getLogger(name).addHandler(handler)


def parse_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The kept lines as objects; a line that is not one (it cannot happen with the
    console's formatter, but a page must not fail on it) becomes ``{"event": line}``."""
    parsed = []
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        parsed.append(data if isinstance(data, dict) else {"event": line})
    return parsed
