"""The log sink: each request's ID and context, and its access line when it ends."""

from __future__ import annotations

import logging
import random
import re

from ..config import Settings
from ..observation import Observation
from .context import _ACCESS_ATTR, _REQUEST_ATTR, ACCESS_LOGGER, _clip, _current
from .handler import _sole_handler
from .redaction import Redactor

__all__ = ["LogSink"]

#: Request IDs taken from the client: 1 to 128 characters of this set, nothing else.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class LogSink:
    """Gives each request its ID and context, and writes its access line when it ends."""

    name = "logs"

    def __init__(self, settings: Settings) -> None:
        header = self._header = settings.request_id_header
        self._header_key = None if header is None else "HTTP_" + header.upper().replace("-", "_")
        self._access = logging.getLogger(ACCESS_LOGGER) if settings.access_log else None
        self._sample = settings.access_log_sample
        self._slow = settings.slow_request_seconds
        self._query = Redactor(settings.log_redact) if settings.log_query_string else None

    def start(self, observation: Observation) -> None:
        given = None if self._header_key is None else observation.environ.get(self._header_key)
        if given is None or not _REQUEST_ID.fullmatch(given):
            # Unique, not secret: Python reseeds random in a forked child, so workers differ.
            # The bytes' hex is the 32 digits of f"{bits:032x}", in less than half the time.
            given = random.getrandbits(128).to_bytes(16, "big").hex()
        observation.request_id = given
        if self._header is not None:
            observation.add_response_header(self._header, given)
        _current.set(observation)

    def finish(self, observation: Observation) -> None:
        try:
            if self._access is not None:
                self._write_access(self._access, observation)
        finally:
            _current.set(None)

    def _write_access(self, logger: logging.Logger, observation: Observation) -> None:
        status = observation.status or 500
        level = (
            logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        )
        if not logger.isEnabledFor(level):
            return
        if (
            self._sample < 1.0
            and status < 400
            and observation.duration < self._slow
            and random.random() >= self._sample
        ):
            return
        environ = observation.environ
        fields = {
            "status": status,
            # Microseconds rounded to an integer, then divided: the same three decimals as
            # round(ms, 3) but within a rounding error of a tie, in a third of the time.
            "duration_ms": round(observation.duration * 1e6) / 1000,
            "client_addr": _clip(environ.get("REMOTE_ADDR"), 64),
            "user_agent": _clip(environ.get("HTTP_USER_AGENT")),
            "response_bytes": observation.response_size or 0,
        }
        if observation.exception is not None:
            fields["exception"] = observation.exception
        query = environ.get("QUERY_STRING")
        if self._query is not None and query:
            fields["query"] = _clip(self._query.query(query))
        # When only flask-observe's handler would see the record, the line is written
        # without one: a record costs more to make and hand on than the line to format.
        handler = _sole_handler(logger, level)
        if handler is not None:
            try:
                handler.write_access(level, logger.name, observation, fields)
                return
            except Exception:  # the record below goes the usual way, errors and all
                pass
        # Made directly, not through logger.info(): that would look up the caller's frame.
        record = logger.makeRecord(logger.name, level, "flask_observe", 0, "request", (), None)
        record.__dict__.update(fields)
        record.__dict__[_REQUEST_ATTR] = observation
        record.__dict__[_ACCESS_ATTR] = True
        logger.handle(record)
