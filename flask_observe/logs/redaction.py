"""Redaction: the values of sensitive keys replaced, in nested values too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["REDACTED", "Redactor"]

#: What replaces a redacted value.
REDACTED = "[REDACTED]"

#: Types redaction never needs to look into; checked first, as the ABC checks cost more.
_SCALARS = frozenset({str, int, float, bool, type(None)})

#: How deep redaction looks into nested values; deeper ones are written as they are.
_MAX_DEPTH = 8


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
