"""A small YAML emitter for the files flask-observe generates: block style, strings quoted
whenever a plain scalar could be read as something else.

The rule files and the Alertmanager example are plain data of a known shape (dicts with
string keys, lists, strings, numbers, booleans and ``None``), and people read them, so they
are written as block YAML with each multi-line PromQL expression as a literal block. That
needs a few dozen lines rather than a runtime dependency on PyYAML. Anything outside that
shape is refused with a :exc:`TypeError`. The output is checked by PyYAML's own parser and
by ``promtool`` and ``amtool`` in the tests.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["dump"]

#: Words separated by single spaces, no character YAML gives a meaning to (``#``, ``&``,
#: ``*``, quotes, brackets...), starting with a letter: never a number, a date or null.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/=-]*(?: [A-Za-z0-9_.:/=-]+)*")
#: Plain words that YAML 1.1 (Go's yaml.v2, PyYAML) reads as booleans or null.
_RESERVED = frozenset(["y", "n", "yes", "no", "on", "off", "true", "false", "null"])


def dump(data: Mapping[str, Any], *, header: Iterable[str] = ()) -> str:
    """*data* as a YAML document, after *header* lines written as ``#`` comments."""
    lines = [f"# {line}".rstrip() for line in header]
    lines.extend(_mapping(data, 0))
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:  # YAML 1.1 wants the dot: 1.0e-05, not 1e-05
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, str):
        return _string(value)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as YAML")


def _string(text: str) -> str:
    plain = _PLAIN.fullmatch(text) and ": " not in text and not text.endswith(":")
    if plain and text.lower() not in _RESERVED:
        return text
    if text.isprintable():  # single quotes escape nothing but themselves: easy to read
        return "'" + text.replace("'", "''") + "'"
    # A JSON string is a YAML double-quoted scalar; what YAML would take as a line break or
    # refuses outright (U+0085, U+2028, NBSP, other unprintables) is escaped as well.
    return "".join(
        ch if ch.isprintable() else _escape(ch) for ch in json.dumps(text, ensure_ascii=False)
    )


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _literal_block(text: str) -> bool:
    """Whether *text* reads back unchanged from a ``|`` block."""
    return (
        "\n" in text.rstrip("\n")
        and all(ch.isprintable() for ch in text.replace("\n", ""))
        and not text.startswith((" ", "\n"))
        and not text.endswith("\n\n")
    )


def _value(value: Any, indent: int) -> tuple[str, list[str]]:
    """What follows a ``key:`` or ``-``: the rest of that line, and the lines below it."""
    pad = " " * indent
    if isinstance(value, Mapping):
        return ("", _mapping(value, indent)) if value else (" {}", [])
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return ("", _sequence(value, indent)) if value else (" []", [])
    if isinstance(value, str) and _literal_block(value):
        chomp = "" if value.endswith("\n") else "-"
        body = [pad + line if line else "" for line in value.rstrip("\n").split("\n")]
        return f" |{chomp}", body
    return f" {_scalar(value)}", []


def _mapping(data: Mapping[str, Any], indent: int) -> list[str]:
    lines = []
    for key, value in data.items():
        if not isinstance(key, str):
            raise TypeError(f"cannot write the key {key!r} as YAML: keys are strings")
        rest, below = _value(value, indent + 2)
        lines.append(f"{' ' * indent}{_string(key)}:{rest}")
        lines.extend(below)
    return lines


def _sequence(items: Sequence[Any], indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    for item in items:
        if isinstance(item, Mapping) and item:
            # The first key shares the dash's line; the rest line up under it.
            nested = _mapping(item, indent + 2)
            lines.append(f"{pad}- {nested[0][indent + 2 :]}")
            lines.extend(nested[1:])
        else:
            rest, below = _value(item, indent + 2)
            lines.append(f"{pad}-{rest}")
            lines.extend(below)
    return lines
