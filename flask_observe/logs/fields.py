"""Logging with fields: a stdlib logger that takes them as keyword arguments."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Optional

from .context import _FIELDS_ATTR
from .install import adopt

__all__ = ["FieldLogger", "get_logger"]

#: The keyword arguments a logging call takes for itself; the others are fields.
_LOGGING_KWARGS = frozenset({"exc_info", "stack_info", "stacklevel", "extra"})


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

    Its lines are written by flask-observe whatever the name, inside the app's package or
    not (a helper module of a one-file app, say), each once: see :ref:`log-fields`.

    :param name: the logger's name, usually ``__name__``. Without one, the root logger, whose
        lines flask-observe writes only with :data:`OBSERVE_LOG_ROOT`.
    :param fields: fields written on every line of this logger.

    .. versionadded:: 0.1
    """
    logger = logging.getLogger(name)
    adopt(logger)
    return FieldLogger(logger, fields)
