"""How a line is written: RFC 3339 timestamps and python-json-logger's JSON encoder, made
once rather than once per line."""

from __future__ import annotations

import time
from json import encoder as json_encoder
from typing import Any, Callable

from pythonjsonlogger.json import JsonEncoder

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
