"""The hook in ``requests``: ``Session.send``, which every call goes through
(``requests.get`` makes a session for the call), once per prepared request, and once more
for each redirect it follows, inside the first (those are passed through)."""

from __future__ import annotations

import importlib
from collections.abc import MutableMapping
from typing import Any, Optional
from urllib.parse import urlsplit

from .calls import observed
from .install import wrap_once

__all__ = ["install"]


def _describe(
    request: Any,
) -> tuple[str, str, str, str, Optional[int], MutableMapping[str, str]]:
    url: str = request.url or ""
    parts = urlsplit(url)
    headers = request.headers
    if headers is None:  # a PreparedRequest made by hand and never prepared
        structures: Any = importlib.import_module("requests.structures")
        headers = request.headers = structures.CaseInsensitiveDict()
    try:
        port = parts.port
    except ValueError:  # not a number: requests refuses the URL itself
        port = None
    return request.method or "", url, parts.scheme, parts.hostname or "", port, headers


def install() -> None:
    """Wrap ``requests.Session.send``, once per process."""
    sessions: Any = importlib.import_module("requests.sessions")
    wrap_once(sessions.Session, "send", observed("requests", _describe))
