"""Log presets: the names under which Elastic, Google Cloud Logging and Datadog link a line
to its trace and request, as data.

A line is first made with flask-observe's own field names (``timestamp``, ``level``,
``trace_id``, ``status``...; see :mod:`flask_observe.logs.formatter`). A :class:`Preset`
then says, for each place of the backend's line, in the order written, which of those
fields goes there and how its value changes: a path of several keys makes nested objects
(``("http", "request", "method")``), a key with dots in it stays one key (``"log.level"``,
``"logging.googleapis.com/trace"``). Fields a preset does not name are left out; the
caller's own fields are added after, under their own names, by the formatter.

Besides the line's fields, a preset may read the formatter's options, given once when it is
made: ``service_environment``, ``service_version`` and ``gcp_project``; and
``transaction_id``, the ID of the request's own span, which the formatter adds to the
lines of a traced request for the presets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

__all__ = ["PRESETS", "Preset"]

#: The fields of an exception or of a line that failed: a caller's field named like the
#: top-level key they go to is renamed, so that it never passes for one of them.
_LATE = frozenset({"exc_type", "exc_message", "stack", "log_error"})

Path = tuple[str, ...]
Convert = Callable[[Any, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class From:
    """The first of *names* the line has with a value, changed by *convert*, which is also
    given the formatter's options."""

    names: tuple[str, ...]
    convert: Optional[Convert] = None


@dataclass(frozen=True)
class Fixed:
    """The same value on every line."""

    value: Any


Source = Union[str, tuple[str, ...], From, Fixed]
Place = Union[str, Path]

#: A place compiled for :meth:`Preset.shape`: the names to read (none for a fixed value),
#: the conversion, the fixed value, the keys of the objects above, and the last key.
_Step = tuple[tuple[str, ...], Optional[Convert], Any, Path, str]


def _compile(fields: Mapping[Place, Source]) -> tuple[_Step, ...]:
    steps = []
    for place, source in fields.items():
        path = (place,) if isinstance(place, str) else place
        if isinstance(source, Fixed):
            names: tuple[str, ...] = ()
            convert, value = None, source.value
        else:
            if isinstance(source, str):
                source = From((source,))
            elif isinstance(source, tuple):
                source = From(source)
            names, convert, value = source.names, source.convert, None
        steps.append((names, convert, value, path[:-1], path[-1]))
    return tuple(steps)


@dataclass(frozen=True)
class Preset:
    """Where a backend wants each of flask-observe's fields.

    :param name: the value of ``OBSERVE_LOG_FORMAT`` that chooses it.
    :param fields: for each place of a line, in the order written, what goes there: a field
        name, a tuple of names (the first the line has), :class:`From` to change the value,
        or :class:`Fixed`. A place is a key, or a tuple of keys for nested objects.
    :param access: the same for the access line, when it differs.
    """

    name: str
    fields: Mapping[Place, Source]
    access: Optional[Mapping[Place, Source]] = None
    _steps: tuple[_Step, ...] = field(init=False, repr=False, compare=False)
    _access_steps: tuple[_Step, ...] = field(init=False, repr=False, compare=False)
    #: Top-level keys a caller's field is never written under (see :data:`_LATE`).
    reserved: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        steps = _compile(self.fields)
        access = steps if self.access is None else _compile(self.access)
        object.__setattr__(self, "_steps", steps)
        object.__setattr__(self, "_access_steps", access)
        late = {
            (above or (key,))[0]
            for names, _, _, above, key in (*steps, *access)
            if _LATE.intersection(names)
        }
        object.__setattr__(self, "reserved", frozenset(late))

    def shape(
        self, line: Mapping[str, Any], options: Mapping[str, Any], *, access: bool = False
    ) -> dict[str, Any]:
        """*line*, made with flask-observe's names, as this backend's line: a new dict.

        A name the line does not have is looked up in *options*. A field neither has, or
        whose value is ``None``, is left out.
        """
        # The hot path of every line in a preset: a flat loop, no call per place but a
        # conversion's.
        shaped: dict[str, Any] = {}
        for names, convert, value, above, key in self._access_steps if access else self._steps:
            if names:
                for name in names:
                    value = line.get(name)
                    if value is None:
                        value = options.get(name)
                    if value is not None:
                        break
                else:
                    continue
                if convert is not None:
                    value = convert(value, options)
            where = shaped
            for outer in above:
                inner = where.get(outer)
                if inner is None:
                    inner = where[outer] = {}
                where = inner
            where[key] = value
        return shaped


# -- the conversions --


def _nanoseconds(duration_ms: float, options: Mapping[str, Any]) -> int:
    # The duration is whole microseconds in milliseconds: rounding drops the float's error.
    return round(duration_ms * 1000) * 1000


def _seconds_text(duration_ms: float, options: Mapping[str, Any]) -> str:
    """A protobuf Duration as JSON writes it: ``"0.004s"``, ``"1.5s"``, ``"0s"``."""
    micros = round(duration_ms * 1000)
    seconds, fraction = divmod(micros, 1_000_000)
    text = f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".")
    return text + "s"


#: Cloud Logging's LogSeverity names for the stdlib's levels.
_SEVERITIES = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


def _severity(level: Any, options: Mapping[str, Any]) -> str:
    name = str(level).upper()
    return name if name in _SEVERITIES else "DEFAULT"


def _cloud_trace(trace_id: Any, options: Mapping[str, Any]) -> str:
    return f"projects/{options['gcp_project']}/traces/{trace_id}"


def _sampled(trace_id: Any, options: Mapping[str, Any]) -> bool:
    return True  # a line has a trace ID only inside a sampled span


def _text(value: Any, options: Mapping[str, Any]) -> str:
    return str(value)


def _low_64_bits(hex_id: Any, options: Mapping[str, Any]) -> str:
    """A 128-bit trace ID's lower 64 bits (or a 64-bit span ID), as an unsigned decimal:
    how Datadog matches an OpenTelemetry ID to its own."""
    return str(int(hex_id, 16) & 0xFFFF_FFFF_FFFF_FFFF)


# -- the presets --

#: The Elastic Common Schema, as ecs-logging's libraries write it: ``@timestamp``,
#: ``log.level`` and ``message`` first, as dotted keys; the others nested.
ECS = Preset(
    "ecs",
    {
        "@timestamp": "timestamp",
        "log.level": "level",
        "message": "event",
        ("ecs", "version"): Fixed("8.11.0"),
        ("log", "logger"): "logger",
        ("service", "name"): "service",
        ("service", "version"): "service_version",
        ("service", "environment"): "service_environment",
        ("trace", "id"): "trace_id",
        ("span", "id"): "span_id",
        ("transaction", "id"): "transaction_id",
        ("http", "request", "id"): "request_id",
        ("http", "request", "method"): "method",
        "route": "route",
        ("url", "path"): "path",
        ("url", "query"): "query",
        ("http", "response", "status_code"): "status",
        ("http", "response", "body", "bytes"): "response_bytes",
        ("event", "duration"): From(("duration_ms",), _nanoseconds),
        ("client", "ip"): "client_addr",
        ("user_agent", "original"): "user_agent",
        ("error", "type"): ("exc_type", "exception"),
        ("error", "message"): "exc_message",
        ("error", "stack_trace"): "stack",
        "log_error": "log_error",
    },
)

_GCP_HEAD: dict[Union[str, Path], Source] = {
    "severity": From(("level",), _severity),
    "message": "event",
    "time": "timestamp",
    "logging.googleapis.com/trace": From(("trace_id",), _cloud_trace),
    "logging.googleapis.com/spanId": "span_id",
    "logging.googleapis.com/trace_sampled": From(("trace_id",), _sampled),
    "logger": "logger",
    "service": "service",
    "request_id": "request_id",
}

#: Cloud Logging's structured logs: the special fields its agents lift out of the JSON
#: into the log entry. Only the access line has ``httpRequest``, which makes an entry a
#: request's in the Logs Explorer; the other lines of a request keep ``method`` and ``path``.
GCP = Preset(
    "gcp",
    {
        **_GCP_HEAD,
        "method": "method",
        "route": "route",
        "path": "path",
        "exc_type": "exc_type",
        "exc_message": "exc_message",
        # Error Reporting looks for a stack trace here.
        "stack_trace": "stack",
        "log_error": "log_error",
    },
    access={
        **_GCP_HEAD,
        "route": "route",
        ("httpRequest", "requestMethod"): "method",
        ("httpRequest", "requestUrl"): "path",
        ("httpRequest", "status"): "status",
        # int64, which protobuf's JSON writes as a string.
        ("httpRequest", "responseSize"): From(("response_bytes",), _text),
        ("httpRequest", "userAgent"): "user_agent",
        ("httpRequest", "remoteIp"): "client_addr",
        ("httpRequest", "latency"): From(("duration_ms",), _seconds_text),
        "exception": "exception",
        "query": "query",
    },
)

#: Datadog's reserved and standard attributes, and the ``dd.*`` keys its log pipeline
#: joins to traces by, written as flat keys as its tracers write them.
DATADOG = Preset(
    "datadog",
    {
        "timestamp": "timestamp",
        "status": "level",
        "message": "event",
        ("logger", "name"): "logger",
        "service": "service",
        "dd.service": "service",
        "dd.env": "service_environment",
        "dd.version": "service_version",
        "dd.trace_id": From(("trace_id",), _low_64_bits),
        "dd.span_id": From(("span_id",), _low_64_bits),
        ("http", "request_id"): "request_id",
        ("http", "method"): "method",
        ("http", "route"): "route",
        ("http", "url_details", "path"): "path",
        "query": "query",
        ("http", "status_code"): "status",
        "duration": From(("duration_ms",), _nanoseconds),
        ("network", "client", "ip"): "client_addr",
        ("http", "useragent"): "user_agent",
        ("network", "bytes_written"): "response_bytes",
        ("error", "kind"): ("exc_type", "exception"),
        ("error", "message"): "exc_message",
        ("error", "stack"): "stack",
        "log_error": "log_error",
    },
)

#: The presets by their ``OBSERVE_LOG_FORMAT`` value.
PRESETS: Mapping[str, Preset] = {preset.name: preset for preset in (ECS, GCP, DATADOG)}
