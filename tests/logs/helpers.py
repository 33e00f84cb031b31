"""What the access-line tests build the same way: an observation as the pipeline leaves it,
the access fields as LogSink makes them, and the access record of both."""

from __future__ import annotations

import logging
from typing import Any, Optional

from flask_observe.logs import ACCESS_LOGGER
from flask_observe.logs.context import _ACCESS_ATTR, _REQUEST_ATTR
from flask_observe.observation import Observation, Owner

#: The fields of every line, and those of a line in a request, in the design's order.
CORE = ["timestamp", "level", "logger", "event", "service"]
CONTEXT = ["request_id", "trace_id", "span_id", "method", "route", "path"]
#: The access line's, after them; the last two only sometimes.
ACCESS = ["status", "duration_ms", "client_addr", "user_agent", "response_bytes"]
ACCESS_LATE = ["exception", "query"]


def routed(
    owner: Owner,
    *,
    method: str,
    route: Optional[str],
    path: str,
    request_id: str,
    ids: Optional[tuple[str, str]],
) -> Observation:
    """A request *owner* observed, routed, given its ID, and traced when *ids* are given."""
    observation = Observation(0.0, {"REQUEST_METHOD": method}, owner)
    observation.endpoint, observation.route, observation.path = "routed", route, path
    observation.request_id = request_id
    if ids is not None:
        observation.trace_id, observation.span_id = ids
    return observation


def access_fields(
    status: int,
    duration_ms: float,
    client_addr: Optional[str],
    user_agent: Optional[str],
    size: int,
    exception: Optional[str] = None,
    query: Optional[str] = None,
) -> dict[str, Any]:
    """The access fields as LogSink makes them: the optional ones only when there."""
    fields: dict[str, Any] = {
        "status": status,
        "duration_ms": duration_ms,
        "client_addr": client_addr,
        "user_agent": user_agent,
        "response_bytes": size,
    }
    if exception is not None:
        fields["exception"] = exception
    if query is not None:
        fields["query"] = query
    return fields


def access_record(
    logger: str,
    level: int,
    observation: Observation,
    fields: dict[str, Any],
    created: float,
) -> logging.LogRecord:
    """The access record LogSink makes when a handler other than flask-observe's is on the
    way."""
    record = logging.getLogger(ACCESS_LOGGER).makeRecord(
        logger, level, "flask_observe", 0, "request", (), None
    )
    record.created = created
    record.__dict__.update(fields)
    record.__dict__[_REQUEST_ATTR] = observation
    record.__dict__[_ACCESS_ATTR] = True
    return record
