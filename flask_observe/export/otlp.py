"""The OTLP/HTTP span exporter of the provider flask-observe builds.

It sends what :func:`~flask_observe.export.encoder.encode_spans` writes, over one
persistent ``http.client`` connection, and otherwise behaves as the SDK's OTLP/HTTP
exporter (opentelemetry-exporter-otlp-proto-http) does: the same ``OTEL_EXPORTER_OTLP_*``
variables, read once when it is made; retries with exponential backoff and jitter on 429,
502, 503, 504 and on connection errors, for at most the timeout, waiting as long as a
``Retry-After`` header asks; any other answer below 200 or from 400 up is final. A batch
it gives up on is a ``FAILURE``, logged in one line.

What it leaves out: protobuf, ``requests`` and its connection pool; the SDK exporter's
own metrics and its credential-provider entry points.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import logging
import math
import os
import random
import re
import ssl
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Optional, Union
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies, proxy_bypass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .._version import __version__
from ..config import ConfigError
from .encoder import encode_spans

__all__ = ["OtlpHttpExporter"]

_log = logging.getLogger("flask_observe")

_DEFAULT_BASE = "http://localhost:4318"
_TRACES_PATH = "v1/traces"
_DEFAULT_TIMEOUT = 10.0
_COMPRESSIONS = ("none", "gzip", "deflate")

#: Answers worth another try: the collector is busy or restarting (the OTLP spec's list).
_RETRYABLE = frozenset((429, 502, 503, 504))
#: Tries per batch, the first included, as the SDK's exporter makes at most.
_MAX_TRIES = 6
#: The first wait; each next one doubles, give or take the jitter.
_BACKOFF = 1.0
_JITTER = 0.2
#: The SDK's exporter drops a batch whose request is larger (before compression).
_MAX_REQUEST_BYTES = 64 * 1024 * 1024

# An HTTP header name (RFC 9110's token); what http.client refuses in a value.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]|[^\x00-\xff]")


def _is_header(name: str, value: str) -> bool:
    """Whether http.client can send this header: a token for a name, and a value of
    Latin-1 without line breaks."""
    return bool(_TOKEN.fullmatch(name)) and not _BAD_VALUE.search(value)


def _env(signal_name: str, general_name: str) -> tuple[str, Optional[str]]:
    """The traces variable if it is set and not empty, else the general one: their
    name and value."""
    value = os.environ.get(signal_name)
    if value:
        return signal_name, value
    return general_name, os.environ.get(general_name) or None


def _resolve_endpoint(endpoint: Optional[str]) -> tuple[str, str]:
    """The endpoint and the name of what gave it: the argument; the traces variable, as
    it is; the general one with ``/v1/traces`` after it; or the default."""
    if endpoint:
        return endpoint, "endpoint"
    value = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if value:
        return value, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or _DEFAULT_BASE
    if base.endswith("/"):  # one slash between the two, as the SDK's exporter joins them
        base = base[:-1]
    return f"{base}/{_TRACES_PATH}", "OTEL_EXPORTER_OTLP_ENDPOINT"


def _parse_headers(text: str, source: str) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS``: ``name=value`` pairs separated by commas, each side
    percent-decoded (W3C baggage's format without its properties), names lower-cased.
    Values that are not percent-encoded (a space) are taken as they are, as the SDK's
    exporter takes them. A pair that is not a valid header is left out, with a warning."""
    headers: dict[str, str] = {}
    for member in text.split(","):
        if not member.strip():
            continue
        name, equals, value = member.partition("=")
        name = unquote(name).strip().lower()
        value = unquote(value).strip()
        if not equals or not _is_header(name, value):
            _log.warning("%s: %r is no header (name=value); it is left out.", source, member)
            continue
        headers[name] = value
    return headers


def _resolve_timeout(timeout: Optional[float]) -> float:
    if timeout is not None:
        if not timeout > 0:
            raise ConfigError("timeout", timeout, "a number of seconds above 0")
        return float(timeout)
    name, value = _env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
    if value is None:
        return _DEFAULT_TIMEOUT
    try:
        # Seconds, as the Python SDK reads it (the spec says milliseconds; the SDK's
        # exporters and flask-observe agree with each other rather than with it).
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        _log.warning(
            "%s = %r is not a number of seconds above 0; the OTLP exporter waits %s s.",
            name,
            value,
            _DEFAULT_TIMEOUT,
        )
        return _DEFAULT_TIMEOUT
    return seconds


def _resolve_compression(compression: Optional[str]) -> str:
    if compression is not None:
        chosen = compression.strip().lower()
        if chosen not in _COMPRESSIONS:
            raise ConfigError("compression", compression, "'gzip', 'deflate' or 'none'")
        return chosen
    name, value = _env("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION")
    chosen = (value or "none").strip().lower()
    if chosen not in _COMPRESSIONS:
        _log.warning(
            "%s = %r is no compression the OTLP exporter knows ('gzip', 'deflate', "
            "'none'): it sends uncompressed.",
            name,
            value,
        )
        return "none"
    return chosen


def _tls_context(
    certificate_file: Optional[str],
    client_certificate_file: Optional[str],
    client_key_file: Optional[str],
) -> ssl.SSLContext:
    """The TLS settings of an ``https`` endpoint: the CA bundle that verifies the
    collector (the system's by default), and a client certificate for mutual TLS."""
    ca_name, ca_file = (
        ("certificate_file", certificate_file)
        if certificate_file
        else _env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")
    )
    cert_name, cert_file = (
        ("client_certificate_file", client_certificate_file)
        if client_certificate_file
        else _env(
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        )
    )
    key_name, key_file = (
        ("client_key_file", client_key_file)
        if client_key_file
        else _env("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY")
    )
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(
            ca_name, ca_file, f"a readable PEM file of CA certificates ({error})"
        ) from None
    if cert_file:
        try:
            # Without a key file, the key is in the certificate's file, as requests has it.
            context.load_cert_chain(cert_file, key_file or None)
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(
                f"{cert_name} and {key_name}",
                (cert_file, key_file),
                f"a readable PEM certificate and its private key ({error})",
            ) from None
    return context


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds, or an HTTP
    date; ``None`` if there is none, or it is neither."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, but no zone said so
        when = when.replace(tzinfo=timezone.utc)
    return max(when.timestamp() - time.time(), 0.0)


class _Proxy:
    """An HTTP proxy from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``), as
    the SDK's exporter follows them through requests: only ``http://`` proxies."""

    def __init__(self, host: str, port: int, authorization: Optional[str]) -> None:
        self.host = host
        self.port = port
        self.headers = {} if authorization is None else {"Proxy-Authorization": authorization}

    @classmethod
    def for_endpoint(cls, scheme: str, host: str) -> Optional[_Proxy]:
        url = getproxies().get(scheme)
        if not url or proxy_bypass(host):
            return None
        if "://" not in url:
            url = f"http://{url}"
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            _log.warning(
                "The OTLP exporter does not go through the proxy %s (only http:// proxies); "
                "it connects to %s directly.",
                url,
                host,
            )
            return None
        authorization = None
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
        return cls(parts.hostname, parts.port or 80, authorization)


_Connection = Union[http.client.HTTPConnection, http.client.HTTPSConnection]


class OtlpHttpExporter(SpanExporter):
    """Exports spans over OTLP/HTTP in protobuf (``http/protobuf``), encoded by
    flask-observe's own encoder, proven equal to the SDK's.

    Each argument left out is read from the environment when the exporter is made, as
    the SDK's OTLP/HTTP exporter reads it; each ``OTEL_EXPORTER_OTLP_X`` below is
    overridden by ``OTEL_EXPORTER_OTLP_TRACES_X`` when that is set.

    :param endpoint: the URL spans are posted to, as it is. Else
        ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, as it is; else ``OTEL_EXPORTER_OTLP_ENDPOINT``
        followed by ``/v1/traces``; else ``http://localhost:4318/v1/traces``.
    :param headers: headers sent with every request, on top of those of
        ``OTEL_EXPORTER_OTLP_HEADERS`` (``api-key=secret,x-tenant=acme``, percent-encoded).
    :param timeout: seconds one batch may take, retries included. Else
        ``OTEL_EXPORTER_OTLP_TIMEOUT``, in seconds as the Python SDK reads it; else 10.
    :param compression: ``"gzip"``, ``"deflate"`` or ``"none"``. Else
        ``OTEL_EXPORTER_OTLP_COMPRESSION``; else ``"none"``.
    :param certificate_file: for an ``https`` endpoint, the CA certificates that verify
        the collector. Else ``OTEL_EXPORTER_OTLP_CERTIFICATE``; else the system's.
    :param client_certificate_file: a client certificate for mutual TLS. Else
        ``OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE``.
    :param client_key_file: its private key. Else ``OTEL_EXPORTER_OTLP_CLIENT_KEY``; else
        the key is in the certificate's file.
    :raises ConfigError: for an endpoint that is no ``http`` or ``https`` URL, a timeout
        argument not above 0, an unknown compression argument, or certificate files that
        cannot be loaded.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        *,
        endpoint: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        compression: Optional[str] = None,
        certificate_file: Optional[str] = None,
        client_certificate_file: Optional[str] = None,
        client_key_file: Optional[str] = None,
        _backoff: float = _BACKOFF,
    ) -> None:
        self._endpoint, source = _resolve_endpoint(endpoint)
        parts = urlsplit(self._endpoint)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ConfigError(source, self._endpoint, "an http:// or https:// URL")
        self._host = parts.hostname
        self._port = port or (443 if parts.scheme == "https" else 80)
        self._path = parts.path or "/"
        if parts.query:
            self._path += "?" + parts.query
        self._tls = (
            _tls_context(certificate_file, client_certificate_file, client_key_file)
            if parts.scheme == "https"
            else None
        )
        self._proxy = _Proxy.for_endpoint(parts.scheme, self._host)
        if self._proxy is not None and self._tls is None:
            self._path = self._endpoint  # a plain HTTP proxy takes the whole URL

        self._timeout = _resolve_timeout(timeout)
        self._compression = _resolve_compression(compression)
        name, value = _env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
        self._headers = {
            "content-type": "application/x-protobuf",
            "user-agent": f"flask-observe/{__version__}",
        }
        if self._compression != "none":
            self._headers["content-encoding"] = self._compression
        if value:
            self._headers.update(_parse_headers(value, name))
        for key, val in (headers or {}).items():
            if not _is_header(key, val):
                raise ConfigError("headers", {key: val}, "HTTP header names and values")
            self._headers[key.lower()] = val
        if self._proxy is not None and self._tls is None:
            self._headers.update({k.lower(): v for k, v in self._proxy.headers.items()})

        self._backoff = _backoff
        self._lock = threading.Lock()  # one request at a time on the one connection
        self._connection: Optional[_Connection] = None
        self._used = False  # the connection has carried a request: it may have gone stale
        self._shutdown = False
        self._stopping = threading.Event()

    @property
    def endpoint(self) -> str:
        """The URL the spans are sent to."""
        return self._endpoint

    @property
    def timeout(self) -> float:
        """Seconds one batch may take, its retries included."""
        return self._timeout

    @property
    def compression(self) -> str:
        """``"gzip"``, ``"deflate"`` or ``"none"``."""
        return self._compression

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send *spans* in one request, retrying while the timeout allows.

        :returns: ``SUCCESS`` once the collector took them; ``FAILURE`` if it refused
            them, could not be reached in time, or the exporter is shut down.
        """
        if self._shutdown:
            _log.warning("The OTLP exporter is shut down: %d spans are not sent.", len(spans))
            return SpanExportResult.FAILURE
        try:
            body = encode_spans(spans)
        except Exception as error:
            _log.error(
                "A batch of %d spans cannot be encoded for OTLP, and is not sent: %s: %s",
                len(spans),
                type(error).__name__,
                error,
            )
            return SpanExportResult.FAILURE
        if len(body) > _MAX_REQUEST_BYTES:
            _log.error(
                "A batch of %d spans makes a request of %d bytes, more than the %d an OTLP "
                "exporter sends: it is not sent. Make OBSERVE_TRACING_BATCH_SIZE smaller.",
                len(spans),
                len(body),
                _MAX_REQUEST_BYTES,
            )
            return SpanExportResult.FAILURE
        if self._compression == "gzip":
            # Level 6, zlib's default: level 9 (the SDK exporter's) costs the export thread
            # twice the CPU for a few percent fewer bytes.
            body = gzip.compress(body, compresslevel=6)
        elif self._compression == "deflate":
            body = zlib.compress(body)
        failure = self._send(body)
        if failure is None:
            return SpanExportResult.SUCCESS
        _log.error("Spans were not exported to %s: %s.", self._endpoint, failure)
        return SpanExportResult.FAILURE

    def _send(self, body: bytes) -> Optional[str]:
        """Post *body* until it is taken, refused or out of time; ``None`` when taken,
        else what went wrong, for the log."""
        started = time.monotonic()
        deadline = started + self._timeout
        for attempt in range(_MAX_TRIES):
            status, reason, wait, error = self._post(body, deadline)
            if status is not None and 200 <= status < 400:
                return None
            outcome = f"HTTP {status} {reason}" if status is not None else error
            if status is not None and status not in _RETRYABLE:
                return f"the collector refused them ({outcome})"
            if wait is None:
                wait = self._backoff * 2**attempt * random.uniform(1 - _JITTER, 1 + _JITTER)
            if self._stopping.is_set():
                return f"the exporter was shut down (last: {outcome})"
            if attempt + 1 == _MAX_TRIES or wait > deadline - time.monotonic():
                return (
                    f"gave up after {attempt + 1} tries in {time.monotonic() - started:.1f} s "
                    f"of the {self._timeout:g} s timeout (last: {outcome})"
                )
            _log.debug("OTLP export: %s; next try in %.2f s.", outcome, wait)
            if self._stopping.wait(wait):
                return f"the exporter was shut down while waiting to retry (last: {outcome})"
        raise AssertionError("unreachable: the last try returns")  # pragma: no cover

    def _post(
        self, body: bytes, deadline: float
    ) -> tuple[Optional[int], str, Optional[float], str]:
        """One POST: ``(status, reason, Retry-After seconds, "")``, or ``(None, "",
        None, error)`` when no answer came."""
        with self._lock:
            try:
                return self._post_locked(body, deadline)
            finally:
                if self._shutdown:  # shutdown() found the lock taken, and left this to us
                    self._close()

    def _post_locked(
        self, body: bytes, deadline: float
    ) -> tuple[Optional[int], str, Optional[float], str]:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, "", None, "out of time"
            if self._shutdown:
                return None, "", None, "the exporter is shut down"
            reused = self._used
            connection = self._connect(remaining)
            try:
                connection.request("POST", self._path, body, self._headers)
                response = connection.getresponse()
                response.read()  # all of it, or the connection cannot carry the next
            except (OSError, http.client.HTTPException) as error:
                self._close()
                if reused:
                    # A kept-alive connection the collector has closed since: a new
                    # one at once, as the SDK's exporter retries a pooled connection.
                    continue
                return None, "", None, f"{type(error).__name__}: {error}"
            self._used = True
            if response.will_close:
                self._close()
            wait = _retry_after(response.getheader("Retry-After"))
            return response.status, response.reason, wait, ""

    def _connect(self, timeout: float) -> _Connection:
        """The connection, made if there is none, with *timeout* for its next socket
        operations."""
        connection = self._connection
        if connection is None:
            host, port = (
                (self._proxy.host, self._proxy.port) if self._proxy else (self._host, self._port)
            )
            if self._tls is not None:
                connection = http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=self._tls
                )
                if self._proxy is not None:
                    connection.set_tunnel(self._host, self._port, self._proxy.headers)
            else:
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
            self._connection = connection
            self._used = False
        else:
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
        return connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._used = False

    def shutdown(self) -> None:
        """Stop: a retry being waited for is given up, the connection is closed, and
        later exports fail at once."""
        self._shutdown = True
        self._stopping.set()
        # A request in flight ends within its timeout; its thread closes nothing, so
        # take the lock only if no request holds it, and otherwise let _post's next
        # pass see the flag.
        if self._lock.acquire(blocking=False):
            try:
                self._close()
            finally:
                self._lock.release()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here: every export sends at once."""
        return True
