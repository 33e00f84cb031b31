"""Structured logs: one JSON object per line, each line of a request carrying its context.

The formatting is python-json-logger's: :class:`JsonLogFormatter` subclasses its
``JsonFormatter`` and only decides which fields go in, in which order, under which names
(``timestamp``, ``level``, ``logger``, ``event``, ``service``, then the request's
``request_id``, the span's ``trace_id`` and ``span_id``, the request's ``method``,
``route`` and ``path``, then the caller's own fields). The request's context travels in a
:class:`contextvars.ContextVar`, so a record logged anywhere while the request is served,
or in a thread or task started with a copy of the context, carries it.

The log sink gives each request its ID and writes the access line when it finishes.

One concern per module, each importing only those before it:

- ``context``: the request of this context, the attributes flask-observe puts on records;
- ``redaction``: sensitive values replaced;
- ``encoding``: timestamps, and python-json-logger's encoder made once;
- ``presets``: the names of each log backend, as data the formatter applies;
- ``formatter``, ``console``: the JSON line, and the same fields for a terminal;
- ``filters``: the span IDs stamped on each record;
- ``handler``: the handler that writes the lines, and whether it alone sees a record;
- ``install``: the loggers the handler goes on;
- ``sink``: request IDs and the access line;
- ``fields``: :func:`get_logger`'s loggers, which take fields as keyword arguments;
- ``structlog``: structlog's events handed to the same output.

Every name ``flask_observe.logs`` had before it was a package is importable from here still.
"""

from .console import ConsoleLogFormatter
from .context import _ACCESS_ATTR as _ACCESS_ATTR
from .context import _REQUEST_ATTR as _REQUEST_ATTR
from .context import ACCESS_LOGGER
from .encoding import _rfc3339 as _rfc3339
from .fields import FieldLogger, get_logger
from .filters import TraceContextFilter
from .formatter import JsonLogFormatter
from .handler import ObserveHandler
from .handler import _sole_handler as _sole_handler
from .install import install_logging as install_logging
from .redaction import REDACTED as REDACTED
from .redaction import Redactor as Redactor
from .sink import LogSink as LogSink
from .structlog import ObserveLoggerFactory, configure_structlog, render_to_observe

__all__ = [
    "ACCESS_LOGGER",
    "ConsoleLogFormatter",
    "FieldLogger",
    "JsonLogFormatter",
    "ObserveHandler",
    "ObserveLoggerFactory",
    "TraceContextFilter",
    "configure_structlog",
    "get_logger",
    "render_to_observe",
]
