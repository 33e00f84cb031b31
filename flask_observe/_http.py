"""HTTP facts more than one module needs: the methods kept as labels, and where a request
header lives in a WSGI environ. One home for them, so that the server side and the
outgoing calls agree."""

from __future__ import annotations

__all__ = ["KNOWN_METHODS", "OTHER_METHOD", "environ_key"]

#: Methods named as they are in labels and span names; any other is :data:`OTHER_METHOD`
#: (the OpenTelemetry convention), so that made-up methods cannot add series.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}
)
OTHER_METHOD = "_OTHER"


def environ_key(header: str) -> str:
    """The WSGI environ key of the request header *header*: ``X-Request-ID`` is
    ``HTTP_X_REQUEST_ID``."""
    return "HTTP_" + header.upper().replace("-", "_")
