"""Structured logs: one JSON object per line, each line of a request carrying its context.

The formatting is python-json-logger's: :class:`JsonLogFormatter` subclasses its
``JsonFormatter`` and only decides which fields go in, in which order, under which names
(``timestamp``, ``level``, ``logger``, ``event``, ``service``, then the request's
``request_id``, the span's ``trace_id`` and ``span_id``, the request's ``method``,
``route`` and ``path``, then the caller's own fields). The request's context travels in a
:class:`contextvars.ContextVar`, so a record logged anywhere while the request is served,
or in a thread or task started with a copy of the context, carries it.

The log sink gives each request its ID and writes the access line when it finishes.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import re
import sys
import time
from collections.abc import Mapping, Sequence
from json import encoder as json_encoder
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl, urlencode

from flask.logging import default_handler
from opentelemetry import trace
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonEncoder, JsonFormatter

from .config import Settings
from .observation import Observation, span_ids

__all__ = [
    "ACCESS_LOGGER",
    "ConsoleLogFormatter",
    "FieldLogger",
    "JsonLogFormatter",
    "ObserveHandler",
    "TraceContextFilter",
    "get_logger",
]

#: The logger of the access lines.
ACCESS_LOGGER = "flask_observe.access"

#: The request being served in this context, if any.
_current: contextvars.ContextVar[Optional[Observation]] = contextvars.ContextVar(
    "flask_observe.request", default=None
)

#: What replaces a redacted value.
REDACTED = "[REDACTED]"

#: Where the fields given to :func:`get_logger`'s methods travel on a record: one attribute,
#: so a field may have any name, ``name`` or ``msg`` included.
_FIELDS_ATTR = "_observe_fields"
#: The observation an access record is about; other records use the context.
_REQUEST_ATTR = "_observe_request"
#: Marks an access record, whose fields are :data:`_ACCESS_FIELDS`.
_ACCESS_ATTR = "_observe_access"
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
_MISSING = object()
_INF = float("inf")
#: Fields the formatter may add after the caller's: a caller's field of the same name is
#: renamed all the same, so that it never passes for one of them.
_LATE_FIELDS = frozenset({"exc_type", "exc_message", "stack", "log_error"})

#: The keyword arguments a logging call takes for itself; the others are fields.
_LOGGING_KWARGS = frozenset({"exc_info", "stack_info", "stacklevel", "extra"})

#: Request IDs taken from the client: 1 to 128 characters of this set, nothing else.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

#: Types redaction never needs to look into; checked first, as the ABC checks cost more.
_SCALARS = frozenset({str, int, float, bool, type(None)})

#: The longest value taken from a request header or URL into a log line.
_MAX_HEADER_CHARS = 1024
#: How deep redaction looks into nested values; deeper ones are written as they are.
_MAX_DEPTH = 8


def _clip(value: Optional[str], limit: int = _MAX_HEADER_CHARS) -> Optional[str]:
    """*value*, cut to *limit* characters with a mark, so a 10 kB header stays a header."""
    if value is None or len(value) <= limit:
        return value
    return value[:limit] + "...[truncated]"


_last_second = (-1, "")
#: The ends of timestamps, by millisecond: a look-up costs half of formatting one.
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


def _rfc3339(created: float) -> str:
    """``2026-03-28T12:00:00.123Z``: RFC 3339, UTC, milliseconds."""
    global _last_second
    second = int(created)
    cached_second, text = _last_second
    if second != cached_second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = (second, text)
    return text + _MILLIS[int((created - second) * 1000)]


class Redactor:
    """Replaces the values of sensitive keys with :data:`REDACTED`, in nested values too.

    A key is sensitive when one of *patterns* appears in it, compared in lower case with
    ``-`` read as ``_``. The values given are copied, never changed in place.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self._patterns = tuple(p.lower().replace("-", "_") for p in patterns)
        self._verdicts: dict[str, bool] = {}

    def sensitive(self, key: object) -> bool:
        name = key if isinstance(key, str) else str(key)
        verdict = self._verdicts.get(name)
        if verdict is None:
            folded = name.lower().replace("-", "_")
            verdict = any(p in folded for p in self._patterns)
            if len(self._verdicts) < 4096:  # field names are few; hostile ones are not kept
                self._verdicts[name] = verdict
        return verdict

    def fields(self, fields: Mapping[Any, Any], depth: int = 0) -> dict[Any, Any]:
        """A copy of *fields* with sensitive values replaced."""
        return {
            key: REDACTED if self.sensitive(key) else self.value(value, depth + 1)
            for key, value in fields.items()
        }

    def value(self, value: Any, depth: int) -> Any:
        if type(value) in _SCALARS or depth > _MAX_DEPTH:
            return value
        if isinstance(value, Mapping):
            return self.fields(value, depth)
        if isinstance(value, (list, tuple)):
            return [self.value(item, depth + 1) for item in value]
        return value

    def query(self, query: str) -> str:
        """A query string with the values of sensitive parameters replaced."""
        pairs = parse_qsl(query, keep_blank_values=True)
        return urlencode([(k, REDACTED if self.sensitive(k) else v) for k, v in pairs])


_encoder = JsonEncoder()
#: The encoder's own function for strings (its ensure_ascii is the default, True). Given
#: anything but a str, None included, it raises TypeError.
_encode_str: Callable[[Any], str] = (
    json_encoder.encode_basestring_ascii
    if _encoder.ensure_ascii
    else json_encoder.encode_basestring
)


def _serialize(data: Any, **options: Any) -> str:
    """python-json-logger's encoder, made once: its options here are the defaults, and the
    default ``json.dumps(cls=...)`` would make an encoder per line."""
    return _encoder.encode(data)


def _flat_encoder() -> Callable[[dict[str, Any]], str]:
    """An encoder for the access line, whose values are strings, numbers and ``None``.

    The same encoding as :data:`_encoder` (python-json-logger's, with its ``default``), but
    with the C encoder made once rather than once per line, and no check for cycles, which a
    flat mapping of scalars cannot have. Where the C encoder is missing, it is
    :data:`_encoder` itself.
    """
    make = getattr(json_encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython has it
        return _encoder.encode
    encode = make(
        None,
        _encoder.default,
        _encode_str,
        None,
        _encoder.key_separator,
        _encoder.item_separator,
        False,
        False,
        _encoder.allow_nan,
    )
    join = "".join
    return lambda data: join(encode(data, 0))


_encode_flat = _flat_encoder()


class JsonLogFormatter(JsonFormatter):
    """python-json-logger's formatter, writing flask-observe's fields in their order.

    A field of the caller that has the name of one of the formatter's own (``level``,
    ``request_id``...) is kept, as ``extra_<name>``, rather than overwriting it. An exception
    becomes ``exc_type``, ``exc_message`` and ``stack`` in the same object. A record that
    cannot be serialized (a cyclic value, say) still gives one line, with ``log_error``.

    :param service: the ``service`` field of records logged outside any request.
    :param redact: key patterns whose values are replaced (see ``OBSERVE_LOG_REDACT``).

    .. versionadded:: 0.1
    """

    def __init__(self, *, service: str, redact: Sequence[str] = ()) -> None:
        # No format fields: the formatter's own come from _core, in the design's order.
        super().__init__(
            fmt=[],
            reserved_attrs=[*RESERVED_ATTRS, "taskName", "trace_id", "span_id"],
            json_serializer=_serialize,
        )
        self.service = service
        self.redactor = Redactor(redact)
        self._access_heads: dict[tuple[str, str, str], str] = {}
        # A subclass that writes the access line its own way (the console's) gets the
        # line's fields as a dict, as from a record; only this class's line is hand-written.
        self._hand_written = type(self).serialize_access is JsonLogFormatter.serialize_access

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
            return self.serialize_log_record(
                {
                    key: value if isinstance(value, (int, float)) else str(value)
                    for key, value in fallback.items()
                }
            )

    def serialize_access(self, data: dict[str, Any]) -> str:
        """The access line's fields as one line: python-json-logger's encoding, with
        :func:`_flat_encoder`'s shortcut (the fields are all scalars)."""
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
        return data

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        log_data.update(self._core(record, record.message))
        own: dict[str, Any] = {}
        # python-json-logger put the formatted traceback and stack here; they become fields.
        traceback = message_dict.pop("exc_info", None) or record.exc_text
        stack_info = message_dict.pop("stack_info", None)
        super().add_fields(own, record, message_dict)
        given = getattr(record, _FIELDS_ATTR, None)
        if given:
            own.update(given)
        for key, value in self.redactor.fields(own).items():
            taken = key in log_data or key in _LATE_FIELDS
            log_data[f"extra_{key}" if taken else key] = value
        if record.exc_info and record.exc_info[0] is not None:
            kind, error = record.exc_info[0], record.exc_info[1]
            module = kind.__module__
            log_data["exc_type"] = (
                kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
            )
            log_data["exc_message"] = str(error)
        if traceback or stack_info:
            log_data["stack"] = traceback or stack_info


_PLAIN = re.compile(r"[A-Za-z0-9_.:/<>@+=-]+")


def _console_value(value: Any) -> str:
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value
    return json.dumps(value, default=str, ensure_ascii=True)


class ConsoleLogFormatter(JsonLogFormatter):
    """The same fields as :class:`JsonLogFormatter`, as one readable line for a terminal:
    ``12:00:00.123 INFO     shop order_created request_id=... order_id=12345``.

    Values with spaces, quotes or control characters are quoted and escaped as JSON strings,
    so a line stays one line.

    .. versionadded:: 0.1
    """

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        data = dict(log_data)
        stamp = str(data.pop("timestamp", ""))[11:23]
        level = str(data.pop("level", "")).upper()
        logger = _console_value(data.pop("logger", ""))
        event = _console_value(data.pop("event", ""))
        data.pop("service", None)
        rest = " ".join(
            f"{_console_value(str(key))}={_console_value(value)}"
            for key, value in data.items()
            if value is not None
        )
        return f"{stamp} {level:<8} {logger} {event} {rest}".rstrip()

    def serialize_access(self, data: dict[str, Any]) -> str:
        return self.serialize_log_record(data)


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


class ObserveHandler(logging.Handler):
    """Writes each formatted record as one line to ``sys.stderr``, as it is at the time.

    Looking ``sys.stderr`` up at each record, rather than keeping the stream it was made
    with, follows a test runner or a server that replaces it.

    .. versionadded:: 0.1
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record))
        except Exception:
            self.handleError(record)

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


class FieldLogger:
    """A stdlib logger that takes fields as keyword arguments: ``log.info("paid", order_id=7)``.

    Fields given to :func:`get_logger` or :meth:`bind` are on every line; those of a call
    are added to them for that line. Any name is a field name, ``level`` and ``msg``
    included, except the four a logging call takes for itself: ``exc_info``,
    ``stack_info``, ``stacklevel`` and ``extra``. The message is positional only.

    :param logger: the stdlib logger that does the logging; :attr:`logger`.
    :param fields: the fields of every line; :attr:`fields`.

    .. versionadded:: 0.1
    """

    __slots__ = ("fields", "logger")

    def __init__(self, logger: logging.Logger, fields: Mapping[str, Any]) -> None:
        self.logger = logger
        self.fields = dict(fields)

    @property
    def name(self) -> str:
        """The logger's name."""
        return self.logger.name

    def isEnabledFor(self, level: int) -> bool:
        """Whether a record of *level* would be handled."""
        return self.logger.isEnabledFor(level)

    def bind(self, **fields: Any) -> FieldLogger:
        """A logger like this one whose lines carry *fields* too."""
        return FieldLogger(self.logger, {**self.fields, **fields})

    def log(self, level: int, msg: object, /, *args: object, **kwargs: Any) -> None:
        """Log *msg* % *args* at *level*, with the keyword arguments as fields."""
        self._log(level, msg, args, kwargs)

    def _log(self, level: int, msg: object, args: tuple[object, ...], kwargs: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return
        fields = dict(self.fields)
        for key in [k for k in kwargs if k not in _LOGGING_KWARGS]:
            fields[key] = kwargs.pop(key)
        if fields:
            extra = dict(kwargs.get("extra") or {})
            extra[_FIELDS_ATTR] = fields
            kwargs["extra"] = extra
        # The caller is two frames further out than the stdlib logger would think: the
        # public method, then this one.
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 2
        self.logger.log(level, msg, *args, **kwargs)

    def debug(self, msg: object, /, *args: object, **kwargs: Any) -> None:
        """:meth:`log` at ``DEBUG``."""
        self._log(logging.DEBUG, msg, args, kwargs)

    def info(self, msg: object, /, *args: object, **kwargs: Any) -> None:
        """:meth:`log` at ``INFO``."""
        self._log(logging.INFO, msg, args, kwargs)

    def warning(self, msg: object, /, *args: object, **kwargs: Any) -> None:
        """:meth:`log` at ``WARNING``."""
        self._log(logging.WARNING, msg, args, kwargs)

    def error(self, msg: object, /, *args: object, **kwargs: Any) -> None:
        """:meth:`log` at ``ERROR``."""
        self._log(logging.ERROR, msg, args, kwargs)

    def exception(self, msg: object, /, *args: object, **kwargs: Any) -> None:
        """:meth:`log` at ``ERROR`` with the exception being handled."""
        kwargs.setdefault("exc_info", True)
        self._log(logging.ERROR, msg, args, kwargs)

    def critical(self, msg: object, /, *args: object, **kwargs: Any) -> None:
        """:meth:`log` at ``CRITICAL``."""
        self._log(logging.CRITICAL, msg, args, kwargs)


def get_logger(name: Optional[str] = None, **fields: Any) -> FieldLogger:
    """The stdlib logger *name*, taking fields as keyword arguments.

    :param name: the logger's name, usually ``__name__``.
    :param fields: fields written on every line of this logger.

    .. versionadded:: 0.1
    """
    return FieldLogger(logging.getLogger(name), fields)
