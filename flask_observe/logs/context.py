"""What a log line knows beyond its record: the request being served in this context, and
the attributes flask-observe puts on the records it makes."""

from __future__ import annotations

import contextvars
from typing import Optional

from ..observation import Observation

__all__ = ["ACCESS_LOGGER"]

#: The logger of the access lines.
ACCESS_LOGGER = "flask_observe.access"

#: The request being served in this context, if any.
_current: contextvars.ContextVar[Optional[Observation]] = contextvars.ContextVar(
    "flask_observe.request", default=None
)

#: Where the fields given to :func:`get_logger`'s methods travel on a record: one attribute,
#: so a field may have any name, ``name`` or ``msg`` included.
_FIELDS_ATTR = "_observe_fields"
#: The observation an access record is about; other records use the context.
_REQUEST_ATTR = "_observe_request"
#: Marks an access record, whose fields are :data:`_ACCESS_FIELDS`.
_ACCESS_ATTR = "_observe_access"
#: Marks a record one of flask-observe's handlers wrote, so that no other of them does.
_WRITTEN_ATTR = "_observe_written"
#: The access fields that are there only sometimes, last on the line.
_ACCESS_LATE = ("exception", "query")
_ACCESS_FIELDS = (
    "status",
    "duration_ms",
    "client_addr",
    "user_agent",
    "response_bytes",
    *_ACCESS_LATE,
)
#: The longest value taken from a request header or URL into a log line.
_MAX_HEADER_CHARS = 1024


def _clip(value: Optional[str], limit: int = _MAX_HEADER_CHARS) -> Optional[str]:
    """*value*, cut to *limit* characters with a mark, so a 10 kB header stays a header."""
    if value is None or len(value) <= limit:
        return value
    return value[:limit] + "...[truncated]"
