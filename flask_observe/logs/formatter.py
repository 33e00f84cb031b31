"""The JSON formatter: python-json-logger's, deciding which fields go in, in which order,
under which names: flask-observe's own, or a backend's (:mod:`.presets`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from ..observation import Observation
from .context import (
    _ACCESS_ATTR,
    _ACCESS_FIELDS,
    _ACCESS_LATE,
    _FIELDS_ATTR,
    _REQUEST_ATTR,
    _clip,
    _current,
)
from .encoding import _encode_flat, _encode_str, _rfc3339, _serialize
from .presets import PRESETS, Preset
from .redaction import Redactor

__all__ = ["JsonLogFormatter"]

_MISSING = object()
_INF = float("inf")
#: Fields the formatter may add after the caller's: a caller's field of the same name is
#: renamed all the same, so that it never passes for one of them.
_LATE_FIELDS = frozenset({"exc_type", "exc_message", "stack", "log_error"})


class JsonLogFormatter(JsonFormatter):
    """python-json-logger's formatter, writing flask-observe's fields in their order.

    A field of the caller that has the name of one of the formatter's own (``level``,
    ``request_id``...) is kept, as ``extra_<name>``, rather than overwriting it. An exception
    becomes ``exc_type``, ``exc_message`` and ``stack`` in the same object. A record that
    cannot be serialized (a cyclic value, say) still gives one line, with ``log_error``.

    With a *preset*, the same fields go under the names a log backend links lines to traces
    and requests by (see :doc:`/log-presets`); the caller's fields keep theirs, unless the
    line has its own field of that name at the top level.

    :param service: the ``service`` field of records logged outside any request.
    :param redact: key patterns whose values are replaced (see ``OBSERVE_LOG_REDACT``).
    :param preset: ``"json"``, flask-observe's own names, or ``"ecs"``, ``"gcp"`` or
        ``"datadog"`` (see ``OBSERVE_LOG_FORMAT``).
    :param environment: the deployment environment, for the presets that have a field for
        it (``ecs``, ``datadog``).
    :param version: the service's version, likewise.
    :param gcp_project: the Google Cloud project of the traces, which ``gcp`` needs.
    :raises ValueError: for an unknown preset, or ``gcp`` without a project.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        *,
        service: str,
        redact: Sequence[str] = (),
        preset: str = "json",
        environment: Optional[str] = None,
        version: Optional[str] = None,
        gcp_project: Optional[str] = None,
    ) -> None:
        # No format fields: the formatter's own come from _core, in the design's order.
        super().__init__(
            fmt=[],
            reserved_attrs=[*RESERVED_ATTRS, "taskName", "trace_id", "span_id"],
            json_serializer=_serialize,
        )
        self.service = service
        self.redactor = Redactor(redact)
        self._access_heads: dict[tuple[str, str, str], str] = {}
        self._preset: Optional[Preset] = None
        if preset != "json":
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}: json, {', '.join(PRESETS)}")
            if preset == "gcp" and not gcp_project:
                raise ValueError("the gcp preset needs the Google Cloud project: gcp_project")
            self._preset = PRESETS[preset]
        options = {
            "service_environment": environment,
            "service_version": version,
            "gcp_project": gcp_project,
        }
        self._options = {key: value for key, value in options.items() if value is not None}
        # A subclass that writes the access line its own way (the console's) gets the
        # line's fields as a dict, as from a record; only this class's line is hand-written,
        # and only with flask-observe's own names.
        self._hand_written = (
            self._preset is None
            and type(self).serialize_access is JsonLogFormatter.serialize_access
        )

    def format(self, record: logging.LogRecord) -> str:
        try:
            if _ACCESS_ATTR in record.__dict__:
                # Ours, with known fields: no message to interpolate, no exception, no
                # caller's fields; the encoding is still python-json-logger's.
                return self.serialize_access(self._access_fields(record))
            return super().format(record)
        except Exception as exc:
            fallback = self._core(record, getattr(record, "message", None) or str(record.msg))
            fallback["log_error"] = f"{type(exc).__name__}: {exc}"
            fallback = {
                key: value if isinstance(value, (int, float)) else str(value)
                for key, value in fallback.items()
            }
            if self._preset is not None:
                fallback = self._preset.shape(fallback, self._options)
            return self.serialize_log_record(fallback)

    def serialize_access(self, data: dict[str, Any]) -> str:
        """The access line's fields as one line: python-json-logger's encoding, with
        :func:`_flat_encoder`'s shortcut (the fields are scalars, and a preset's objects
        hold nothing else)."""
        if self._preset is not None:
            data = self._preset.shape(data, self._options, access=True)
        return self.prefix + _encode_flat(data)

    def access_line(
        self,
        level: int,
        logger: str,
        observation: Observation,
        fields: Mapping[str, Any],
        created: Optional[float] = None,
    ) -> str:
        """The access line of *observation*, written at *level* by *logger*, with the access
        *fields* (those of :data:`_ACCESS_FIELDS`, in that order) and the time *created*
        (now by default): the same line as an access record gives, without the record.

        Written by hand rather than through a dict and the encoder, which cost twice as
        much: the part naming the level, logger and service is made once for them, strings
        go through the encoder's own function for strings, and the numbers are checked to
        be ints and a finite float, which the encoder writes as their ``repr``. The tests
        prove the line equal to the encoder's, character for character. A value of another
        type raises :exc:`TypeError`; the caller then makes the record. A subclass that
        overrides :meth:`serialize_access` gets the line from it.
        """
        if not self._hand_written:
            return self.serialize_access(
                self._access_data(level, logger, observation, fields, created)
            )
        if not observation.endpoint:
            observation.ensure_routed()
        key = (logging.getLevelName(level), logger, observation.service)
        head = self._access_heads.get(key)
        if head is None:
            head = self._access_head(*key)
        status = fields["status"]
        duration_ms = fields["duration_ms"]
        size = fields["response_bytes"]
        if (
            type(status) is not int
            or type(size) is not int
            or type(duration_ms) is not float
            or not -_INF < duration_ms < _INF  # NaN too: json would write NaN, not JSON
        ):
            raise TypeError(f"access fields of unexpected types: {fields!r}")
        # Strings that are never None here go to the encoder's function straight: should one
        # be, it raises TypeError, and the record writes it.
        trace_id = observation.trace_id
        traced = (
            ""
            if trace_id is None
            else f', "trace_id": {_encode_str(trace_id)}, "span_id": '
            f"{_encode_str(observation.span_id)}"
        )
        route = observation.route
        client_addr = fields["client_addr"]
        user_agent = fields["user_agent"]
        stamp = _rfc3339(time.time() if created is None else created)
        line = (
            f'{self.prefix}{{"timestamp": "{stamp}{head}{_encode_str(observation.request_id)}'
            f"{traced}"
            f', "method": {_encode_str(_clip(observation.environ.get("REQUEST_METHOD"), 32))}'
            f', "route": {"null" if route is None else _encode_str(route)}'
            f', "path": {_encode_str(_clip(observation.path))}, "status": {status}'
            f', "duration_ms": {duration_ms!r}'
            f', "client_addr": {"null" if client_addr is None else _encode_str(client_addr)}'
            f', "user_agent": {"null" if user_agent is None else _encode_str(user_agent)}'
            f', "response_bytes": {size}'
        )
        for name in _ACCESS_LATE:
            if name in fields:
                line += f', "{name}": {_encode_str(fields[name])}'
        return line + "}"

    def _access_head(self, level: str, logger: str, service: str) -> str:
        """What follows the timestamp in an access line, up to the request ID's value."""
        head = (
            f'", "level": {_encode_str(level.lower())}, "logger": {_encode_str(logger)}'
            f', "event": "request", "service": {_encode_str(service)}, "request_id": '
        )
        if len(self._access_heads) < 64:  # levels x loggers x services: a few
            self._access_heads[level, logger, service] = head
        return head

    def _access_data(
        self,
        level: int,
        logger: str,
        observation: Observation,
        fields: Mapping[str, Any],
        created: Optional[float],
    ) -> dict[str, Any]:
        """The fields of :meth:`access_line`'s line, in a dict."""
        data = self._common(
            time.time() if created is None else created,
            logging.getLevelName(level),
            logger,
            "request",
            observation,
            None,
            None,
        )
        data.update(fields)
        return data

    def _access_fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """The access line: the common fields, then the access fields the record has. No
        redaction: they are ours, and the query string was redacted when it was read."""
        data = self._core(record, record.msg)
        fields = record.__dict__
        for key in _ACCESS_FIELDS:
            value = fields.get(key, _MISSING)
            if value is not _MISSING:
                data[key] = value
        return data

    def _core(self, record: logging.LogRecord, event: str) -> dict[str, Any]:
        """The fields every line has, and those of the request it was logged in."""
        observation: Optional[Observation] = getattr(record, _REQUEST_ATTR, None)
        fields = record.__dict__
        return self._common(
            record.created,
            record.levelname,
            record.name,
            event,
            _current.get() if observation is None else observation,
            # The span current where the record was made (TraceContextFilter), else the
            # request's (the access line, which the filter leaves alone).
            fields.get("trace_id"),
            fields.get("span_id"),
        )

    def _common(
        self,
        created: float,
        level: str,
        logger: str,
        event: str,
        observation: Optional[Observation],
        trace_id: Optional[str],
        span_id: Optional[str],
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "timestamp": _rfc3339(created),
            "level": level.lower(),
            "logger": logger,
            "event": event,
            "service": observation.service if observation is not None else self.service,
        }
        if observation is not None:
            data["request_id"] = observation.request_id
        if trace_id:
            data["trace_id"] = trace_id
            data["span_id"] = span_id
        elif observation is not None and observation.trace_id is not None:
            data["trace_id"] = observation.trace_id
            data["span_id"] = observation.span_id
        if observation is not None:
            observation.ensure_routed()
            data["method"] = _clip(observation.environ.get("REQUEST_METHOD"), 32)
            data["route"] = observation.route
            data["path"] = _clip(observation.path)
            if self._preset is not None and observation.span_id is not None:
                data["transaction_id"] = observation.span_id  # the request's own span
        return data

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        core = self._core(record, record.message)
        own: dict[str, Any] = {}
        # python-json-logger put the formatted traceback and stack here; they become fields.
        traceback = message_dict.pop("exc_info", None) or record.exc_text
        stack_info = message_dict.pop("stack_info", None)
        super().add_fields(own, record, message_dict)
        given = getattr(record, _FIELDS_ATTR, None)
        if given:
            own.update(given)
        late: dict[str, Any] = {}
        if record.exc_info and record.exc_info[0] is not None:
            kind, error = record.exc_info[0], record.exc_info[1]
            module = kind.__module__
            late["exc_type"] = (
                kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
            )
            late["exc_message"] = str(error)
        if traceback or stack_info:
            late["stack"] = traceback or stack_info
        reserved = _LATE_FIELDS
        if self._preset is None:
            log_data.update(core)
        else:
            core.update(late)
            log_data.update(self._preset.shape(core, self._options))
            late, reserved = {}, self._preset.reserved
        for key, value in self.redactor.fields(own).items():
            taken = key in log_data or key in reserved
            log_data[f"extra_{key}" if taken else key] = value
        log_data.update(late)
