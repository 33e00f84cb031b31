"""flask-observe's handler, and the test of whether it alone would see a record."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, Callable, Optional

from ..observation import Observation
from .context import _WRITTEN_ATTR
from .formatter import JsonLogFormatter

__all__ = ["LOST_REASONS", "ObserveHandler", "lost_reason"]

#: Why a line could not be written: the ``reason`` label of
#: ``flask_observe_log_lines_lost_total``; ``suppressed`` is a repeated warning held back.
LOST_REASONS = ("closed", "broken_pipe", "os_error", "encoding", "other", "suppressed")

_told: set[str] = set()


def lost_reason(exc: Optional[BaseException]) -> str:
    """The reason a line was lost, from the exception writing it raised."""
    if isinstance(exc, BrokenPipeError):
        return "broken_pipe"
    if isinstance(exc, OSError):
        return "os_error"
    if isinstance(exc, UnicodeError):
        return "encoding"
    if isinstance(exc, ValueError) and "closed" in str(exc):
        return "closed"
    return "other"


def _tell(message: str) -> None:
    """Write one JSON line to file descriptor 2 itself, bypassing ``sys.stderr``, which
    may be the stream that failed; give up quietly if that fails too."""
    line = json.dumps({"level": "error", "logger": "flask_observe", "event": message})
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode("utf-8", "replace"))


class ObserveHandler(logging.Handler):
    """Writes each formatted record as one line to ``sys.stderr``, as it is at the time.

    Looking ``sys.stderr`` up at each record, rather than keeping the stream it was made
    with, follows a test runner or a server that replaces it.

    A record is written once, however many of these handlers it reaches on its way up the
    logger tree: the first one marks it, and the others skip it.

    .. versionadded:: 0.1
    """

    #: Called with a reason (:data:`LOST_REASONS`) for each line that could not be written:
    #: the counter of ``flask_observe_log_lines_lost_total``.
    on_lost: Optional[Callable[[str], None]] = None

    def handle(self, record: logging.LogRecord) -> bool:
        # Checked before the filters and the lock: a record skipped costs a look-up.
        if _WRITTEN_ATTR in record.__dict__:
            return False
        return bool(super().handle(record))

    def emit(self, record: logging.LogRecord) -> None:
        record.__dict__[_WRITTEN_ATTR] = True
        try:
            self._write(self.format(record))
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """A line could not be written (a closed or broken stream, an encoding): count it
        by reason, say so once per reason on file descriptor 2 directly (not through the
        stream that failed), and never raise into the code that logged."""
        reason = lost_reason(sys.exc_info()[1])
        on_lost = self.on_lost
        if on_lost is not None:
            with contextlib.suppress(Exception):
                on_lost(reason)
        if reason not in _told:
            _told.add(reason)
            _tell(
                f"A log line could not be written ({reason}: {sys.exc_info()[1]!r}); lines "
                "lost this way are counted in "
                f"flask_observe_log_lines_lost_total{{reason={reason!r}}}."
            )

    def _write(self, line: str) -> None:
        stream = sys.stderr
        stream.write(line + "\n")
        if not getattr(stream, "line_buffering", False):  # sys.stderr is; others may not be
            stream.flush()

    def write_access(
        self, level: int, logger: str, observation: Observation, fields: Mapping[str, Any]
    ) -> None:
        """Write the access line of *observation* without a log record: what
        :meth:`~logging.Handler.handle` would write for the access record, under the same
        lock. Raises what formatting or writing raises; the caller then logs the record."""
        formatter = self.formatter
        if not isinstance(formatter, JsonLogFormatter):
            raise TypeError(f"not flask-observe's formatter: {formatter!r}")
        line = formatter.access_line(level, logger, observation, fields)
        with self.lock:  # type: ignore[union-attr]  # createLock() made it
            self._write(line)


def _sole_handler(logger: logging.Logger, level: int) -> Optional[ObserveHandler]:
    """flask-observe's handler, if a record of *level* from *logger* would reach it and
    nothing else: no filter on *logger*, no other handler on its way up, the handler's own
    filter and formatter, and the standard record factory. Else ``None``.

    The walk follows :meth:`logging.Logger.callHandlers`: the loggers above *logger* add
    their handlers, not their filters, up to one that does not propagate.
    """
    if logger.filters or logger.disabled or logging.getLogRecordFactory() is not _RECORD:
        return None
    found: Optional[ObserveHandler] = None
    current: Optional[logging.Logger] = logger
    while current is not None:
        for handler in current.handlers:
            if level < handler.level:
                continue
            if (
                found is not None
                or type(handler) is not ObserveHandler
                or len(handler.filters) != 1
                or not isinstance(handler.formatter, JsonLogFormatter)
            ):
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found


_RECORD = logging.LogRecord
