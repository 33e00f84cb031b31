"""The filter that stamps each record with the IDs of the span current where it was made."""

from __future__ import annotations

import logging

from opentelemetry import trace

from ..observation import span_ids
from .context import _ACCESS_ATTR

__all__ = ["TraceContextFilter"]


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
