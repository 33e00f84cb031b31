"""The ``/metrics`` blueprint: content negotiation, gzip, and optional access control.

The format follows the scraper's ``Accept`` header, q-values included: OpenMetrics 1.0.0 when
it is preferred (as Prometheus asks), else the Prometheus text format 0.0.4. Content types are
spelled out here rather than taken from ``prometheus_client.CONTENT_TYPE_LATEST``, whose
meaning has changed between releases of that library.
"""

from __future__ import annotations

import gzip
import hmac
import ipaddress
import logging
from collections.abc import Sequence
from typing import Any, Callable, Optional

from flask import Blueprint, Response, current_app, request
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import CollectorRegistry
from werkzeug.http import parse_options_header

from .config import Network
from .multiprocess import files_registry

__all__ = ["bearer_matches", "metrics_blueprint", "negotiate"]

_log = logging.getLogger("flask_observe")

Encoder = Callable[[CollectorRegistry], bytes]

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_TEXT: tuple[Encoder, str] = (generate_latest, TEXT_CONTENT_TYPE)
_OPENMETRICS: tuple[Encoder, str] = (generate_openmetrics, OPENMETRICS_CONTENT_TYPE)

#: Versions of each media type this endpoint can honour. OpenMetrics 0.0.1 and 1.0.0 are the
#: same text for the metric types prometheus_client produces.
_OPENMETRICS_VERSIONS = (None, "1.0.0", "0.0.1")
_TEXT_VERSIONS = (None, "0.0.4")


def _accepted(header: str) -> list[tuple[float, str, Optional[str]]]:
    """Parse an ``Accept`` header into ``(q, media type, version)``, best first.

    Sorting is by q alone, stable, so among equal q-values the scraper's own order decides.
    (werkzeug's ``MIMEAccept`` ranks by specificity before q, which would let a long
    ``application/openmetrics-text; version=1.0.0; escaping=...`` outrank a preferred
    ``text/plain``.)
    """
    ranked = []
    for item in header.split(","):
        mimetype, params = parse_options_header(item)
        if not mimetype:
            continue
        try:
            quality = float(params.get("q", 1))
        except ValueError:
            continue
        if quality > 0:
            ranked.append((quality, mimetype.lower(), params.get("version")))
    ranked.sort(key=lambda entry: -entry[0])
    return ranked


def negotiate(accept: Optional[str]) -> tuple[Encoder, str]:
    """Choose the encoder and content type for an ``Accept`` header.

    Without a usable preference (no header, ``*/*``, or only formats this endpoint does not
    produce, such as Prometheus' protobuf), the answer is the text format 0.0.4, which every
    Prometheus and every person with ``curl`` can read.
    """
    for _quality, mimetype, version in _accepted(accept or ""):
        if mimetype == "application/openmetrics-text" and version in _OPENMETRICS_VERSIONS:
            return _OPENMETRICS
        if mimetype in ("text/plain", "text/*", "*/*") and version in _TEXT_VERSIONS:
            return _TEXT
    return _TEXT


def client_ips(address: Optional[str]) -> list[Any]:
    """The IP addresses a client's *address* stands for: none when it is not one, the
    address, and for an IPv4 address mapped into IPv6 (a dual-stack socket's
    ``::ffff:127.0.0.1``) the IPv4 address too. A zone (``%eth0``) is left out."""
    if not address:
        return []
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return []
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return [ip, ip.ipv4_mapped]
    return [ip]


def _client_allowed(address: Optional[str], networks: Sequence[Network]) -> bool:
    return any(ip in network for ip in client_ips(address) for network in networks)


def bearer_matches(authorization: Optional[str], token: str) -> bool:
    """Whether an ``Authorization`` header holds ``Bearer <token>``, compared in constant
    time."""
    if not authorization:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Header values arrive as latin-1 text; encoding back gives the bytes that were sent.
    # The token is the rest of the header exactly: no space around it is forgiven.
    given = credentials.encode("latin-1", "replace")
    return hmac.compare_digest(given, token.encode("utf-8"))


def _plain(status: int, message: str, **headers: str) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain", headers=headers)


def scraped_registry(state: Any) -> CollectorRegistry:
    """What a scrape of the app reads: its registry, or under multiprocess mode every
    worker's files, once this worker has written its saturation figures to its own."""
    files = state.multiprocess_dir
    if files is None:
        return state.registry  # type: ignore[no-any-return]
    try:
        state.saturation_metrics.write_files()
    except Exception:  # the figures of one worker are never worth a failed scrape
        _log.exception("Could not write this worker's saturation figures to its files")
    return files_registry(files)


def metrics_view() -> Response:
    """Serve the app's registry in the format and encoding the scraper asks for."""
    state = current_app.extensions["observe"]
    settings = state.settings
    networks = settings.metrics_allow_networks
    if networks is not None and not _client_allowed(request.remote_addr, networks):
        return _plain(403, "Forbidden: this address may not read metrics.")
    token = settings.metrics_bearer_token
    if token is not None and not bearer_matches(request.headers.get("Authorization"), token):
        return _plain(
            401, "Unauthorized: a bearer token is required.", **{"WWW-Authenticate": "Bearer"}
        )
    encoder, content_type = negotiate(request.headers.get("Accept"))
    body = encoder(scraped_registry(state))
    headers = {"Vary": "Accept, Accept-Encoding", "Cache-Control": "no-store"}
    if request.accept_encodings["gzip"] > 0:
        body = gzip.compress(body, compresslevel=6)
        headers["Content-Encoding"] = "gzip"
    return Response(body, content_type=content_type, headers=headers)


def metrics_blueprint(path: str) -> Blueprint:
    """A blueprint serving :func:`metrics_view` at *path* (GET, and HEAD with it)."""
    blueprint = Blueprint("flask_observe_metrics", __name__)
    blueprint.add_url_rule(path, "metrics", metrics_view, methods=["GET"])
    return blueprint
