"""The console format: the JSON formatter's fields as one readable line for a terminal."""

from __future__ import annotations

import json
import re
from typing import Any

from .formatter import JsonLogFormatter

__all__ = ["ConsoleLogFormatter"]

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
