"""structlog, handed to flask-observe's output: its events become stdlib log records, which
flask-observe's handler writes as any other, with the request's fields, the span's IDs,
redaction and the chosen format.

The bridge is the last processor of structlog's chain, :func:`render_to_observe`, in the
way of structlog's own ``render_to_log_kwargs``: it turns the event dict into the
arguments of a stdlib logging call, which structlog's stdlib-backed loggers then make. The
event's fields travel in the same record attribute as :func:`~flask_observe.get_logger`'s,
so any name is a field name. :class:`ObserveLoggerFactory` makes the stdlib loggers, and
adopts them as ``get_logger`` does, before any processor checks their level. structlog is
imported only when one is set up: the processor needs nothing of it.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping, Sequence
from typing import Any, Callable, Optional

from .context import _FIELDS_ATTR
from .install import adopt

__all__ = ["ObserveLoggerFactory", "configure_structlog", "render_to_observe"]

#: The keys of an event dict that are arguments of the logging call, not fields.
_CALL_KEYS = ("exc_info", "stack_info")


def render_to_observe(
    logger: logging.Logger, method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A structlog processor that hands the event to flask-observe's output. It goes last
    in the chain, in place of a renderer, with structlog's stdlib logger factory.

    The event becomes the record's message (``%`` arguments given to the logging call are
    filled in, as the stdlib does), ``exc_info`` and ``stack_info`` become those of the
    record, and every other key of the event dict is a field of the line. The logger's
    lines are written whatever its name, as those of :func:`~flask_observe.get_logger`
    are.

    .. code-block:: python

        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.filter_by_level,
                flask_observe.logs.render_to_observe,
            ],
            logger_factory=flask_observe.logs.ObserveLoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )

    With structlog's own ``LoggerFactory``, a logger is adopted when its first event gets
    here, which is too late for a ``filter_by_level`` before: use
    :class:`ObserveLoggerFactory`, or leave that filter out (the stdlib logger checks the
    level again).

    :raises TypeError: if the logger structlog wraps is not a :class:`logging.Logger`,
        as from structlog's ``PrintLoggerFactory``.

    .. versionadded:: 0.1
    """
    if not isinstance(logger, logging.Logger):
        raise TypeError(
            "flask_observe.logs.render_to_observe hands events to stdlib logging: configure "
            "structlog with logger_factory=structlog.stdlib.LoggerFactory(), not "
            f"{type(logger).__name__}"
        )
    adopt(logger)
    fields = dict(event_dict)
    event = fields.pop("event", None)
    args = fields.pop("positional_args", ())
    call: dict[str, Any] = {key: fields.pop(key) for key in _CALL_KEYS if key in fields}
    if fields:
        call["extra"] = {_FIELDS_ATTR: fields}
    return (event, *args), call


class ObserveLoggerFactory:
    """structlog's stdlib ``LoggerFactory``, whose loggers flask-observe writes whatever their
    name, as those of :func:`~flask_observe.get_logger`: ``structlog.get_logger()`` in a
    module outside the app's package logs on a logger named after that module.

    The logger gets flask-observe's handler and level when it is made, so that
    ``structlog.stdlib.filter_by_level``, early in the chain, already sees that level.

    :param ignore_frame_names: as for structlog's: modules whose frames are skipped when
        the logger is named after its caller's module.

    .. versionadded:: 0.1
    """

    def __init__(self, ignore_frame_names: Optional[Sequence[str]] = None) -> None:
        from structlog.stdlib import LoggerFactory

        # This module's frame is the one that calls structlog's factory: not the caller's.
        self._factory = LoggerFactory(["flask_observe", *(ignore_frame_names or ())])

    def __call__(self, *args: Any) -> logging.Logger:
        logger = self._factory(*args)
        adopt(logger)
        return logger


def configure_structlog(*, processors: Sequence[Callable[..., Any]] = ()) -> None:
    """Set structlog up to hand its events to flask-observe's output.

    After it, ``structlog.get_logger().info("order_created", order_id=12345)`` inside a
    request writes one line in the format of :data:`OBSERVE_LOG_FORMAT`, with the event,
    its fields, the request's fields and the span's IDs, redacted as any other. Events go
    to the stdlib logger named after the module that asked for the logger (or the name
    given to ``get_logger``); fields bound with ``structlog.contextvars`` are on every line.

    This replaces structlog's configuration. To keep yours, put
    :func:`~flask_observe.logs.render_to_observe` last in its chain instead.

    :param processors: processors of your own, run after the context is merged and the
        level checked, before the event is handed over.
    :raises ImportError: if structlog is not installed (the extra ``structlog``).

    .. versionadded:: 0.1
    """
    try:
        import structlog
    except ImportError:
        raise ImportError(
            "configure_structlog needs structlog: pip install 'flask-observe[structlog]'"
        ) from None
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            # First, so that an event below the logger's level costs no more processing.
            structlog.stdlib.filter_by_level,
            *processors,
            render_to_observe,
        ],
        logger_factory=ObserveLoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
