"""The filter that stamps each record with the IDs of the span current where it was made."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable, Optional

from opentelemetry import trace

from ..observation import span_ids
from .context import _ACCESS_ATTR

__all__ = ["RepeatFilter", "TraceContextFilter"]


class TraceContextFilter(logging.Filter):
    """Stamps each record with the IDs of the span current where it was logged.

    Sets ``trace_id`` (32 lower-case hex digits) and ``span_id`` (16) on every record logged
    inside a sampled span, and empty strings on the others, unless they already have them.
    flask-observe's handler has one; add it to a handler of your own to use
    ``%(trace_id)s`` in its format.

    .. versionadded:: 0.1
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if _ACCESS_ATTR in record.__dict__:
            return True  # the access line carries its request's span IDs already
        ids = span_ids(trace.get_current_span())
        if ids is not None:
            record.trace_id, record.span_id = ids
        else:  # empty, so that a format with %(trace_id)s works outside spans too
            record.__dict__.setdefault("trace_id", "")
            record.__dict__.setdefault("span_id", "")
        return True


class RepeatFilter(logging.Filter):
    """Lets a warning through once per *interval* seconds for each logger and message
    template, and holds back the repeats in between, counting them: the next one let
    through carries ``suppressed``, how many were held back since. Lines below *level*
    pass.

    For the loggers of libraries that run on the request path and may warn about what a
    client sent (OpenTelemetry's propagators), so that a client cannot make the app write a
    line per request.

    :param on_held: called each time a line is held back (a counter of them).
    """

    #: The most distinct templates tracked; past it the oldest are forgotten.
    MAX_KEYS = 256

    def __init__(
        self,
        interval: float = 60.0,
        level: int = logging.WARNING,
        on_held: Optional[Callable[[], None]] = None,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.level = level
        self.on_held = on_held
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        key = (record.name, template)
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(key, (None, 0))
            if last is not None and now - last < self.interval:
                self._seen[key] = (last, held + 1)
                passed = False
            else:
                if len(self._seen) >= self.MAX_KEYS and key not in self._seen:
                    del self._seen[next(iter(self._seen))]
                self._seen[key] = (now, 0)
                passed = True
        if not passed:
            if self.on_held is not None:
                with contextlib.suppress(Exception):  # a counter never stops the filtering
                    self.on_held()
            return False
        if held:
            record.__dict__["suppressed"] = held
        return True
