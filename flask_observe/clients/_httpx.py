"""The hook in ``httpx``: ``Client.send`` and ``AsyncClient.send``, which every call goes
through (``httpx.get`` makes a client for the call), once per request, redirects and
authentication retries included: those happen inside, at the transport."""

from __future__ import annotations

import importlib
from collections.abc import MutableMapping
from typing import Any, Optional

from .calls import observed, observed_async
from .install import wrap_once

__all__ = ["install"]


def _describe(
    request: Any,
) -> tuple[str, str, str, str, Optional[int], MutableMapping[str, str]]:
    url = request.url
    headers: MutableMapping[str, str] = request.headers
    return request.method, str(url), url.scheme, url.host, url.port, headers


def install() -> None:
    """Wrap ``httpx.Client.send`` and ``httpx.AsyncClient.send``, once per process."""
    httpx: Any = importlib.import_module("httpx")
    wrap_once(httpx.Client, "send", observed("httpx", _describe))
    wrap_once(httpx.AsyncClient, "send", observed_async("httpx", _describe))
