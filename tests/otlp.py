"""A real OTLP/HTTP trace receiver for the tests, on 127.0.0.1, and the settings that point
the OTLP exporter at it. What it receives is decoded with OpenTelemetry's own protobuf
classes.

It speaks HTTP/1.1 and keeps connections open, as a collector does, and answers with the
status (and headers) a test scripts; over TLS if given a server context.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import ssl
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan


@dataclass(frozen=True)
class Received:
    """One HTTP request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    client: tuple[str, int] = ("", 0)  # the address it came from: one port, one connection
    at: float = 0.0  # time.monotonic() when it arrived

    def uncompressed(self) -> bytes:
        """The body, gunzipped or inflated as its ``Content-Encoding`` says."""
        encoding = self.headers.get("content-encoding")
        if encoding == "gzip":
            return gzip.decompress(self.body)
        if encoding == "deflate":
            return zlib.decompress(self.body)
        assert encoding is None, encoding
        return self.body

    def decoded(self) -> ExportTraceServiceRequest:
        """The body as the OTLP request it is, uncompressed if it was sent compressed."""
        body = self.uncompressed()
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        return message


#: A scripted answer: a status and the headers to send with it.
Reply = tuple[int, Mapping[str, str]]


class _Server(ThreadingHTTPServer):
    # Handler threads are joined on close (the connections are shut down first).
    daemon_threads = False
    block_on_close = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up early (a test of timeouts) is no failure here


class Receiver:
    """An OTLP/HTTP trace receiver: records every ``POST`` and answers it with the next of
    *replies*, then with *status*, and an empty protobuf body, after *delay* seconds.
    With *tls*, a server context, it speaks HTTPS."""

    def __init__(
        self,
        status: int = 200,
        delay: float = 0.0,
        *,
        replies: Sequence[Reply] = (),
        tls: Optional[ssl.SSLContext] = None,
    ) -> None:
        self.received: list[Received] = []
        self.tls = tls
        self._lock = lock = threading.Lock()
        received = self.received
        scripted = deque(replies)
        self._connections: set[socket.socket] = set()
        connections = self._connections

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps the connection open between requests

            def setup(self) -> None:
                with lock:
                    connections.add(self.request)
                if tls is not None:  # here, in the connection's thread, not in accept()
                    self.request.do_handshake()
                super().setup()

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with lock:
                        connections.discard(self.request)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with lock:
                    received.append(
                        Received(
                            self.command,
                            self.path,
                            {name.lower(): value for name, value in self.headers.items()},
                            body,
                            self.client_address,
                            time.monotonic(),
                        )
                    )
                    code, headers = scripted.popleft() if scripted else (status, {})
                if delay:
                    time.sleep(delay)
                self.send_response(code)
                self.send_header("Content-Type", "application/x-protobuf")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # stderr is where the app's JSON log lines go

        self._server = _Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
        if tls is not None:
            self._server.socket = tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server.server_bind()
        self._server.server_activate()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long shutdown() may wait
            name="otlp-receiver",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}/v1/traces"

    def drop_connections(self) -> None:
        """Close every connection open to the receiver, as a collector closes idle ones."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def requests(self) -> list[ExportTraceServiceRequest]:
        return [r.decoded() for r in self.received]

    def spans(self) -> list[tuple[dict[str, Any], ProtoSpan]]:
        """Every span received, with the attributes of its resource."""
        found = []
        for message in self.requests():
            for resource_spans in message.resource_spans:
                resource = {
                    kv.key: kv.value.string_value for kv in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope_spans.spans)
        return found

    def span_count(self) -> int:
        return sum(
            len(scope_spans.spans)
            for message in self.requests()
            for resource_spans in message.resource_spans
            for scope_spans in resource_spans.scope_spans
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()
        self.drop_connections()  # so that their threads end, and server_close joins them
        self._server.server_close()


@contextlib.contextmanager
def receiving(
    status: int = 200,
    delay: float = 0.0,
    *,
    replies: Sequence[Reply] = (),
    tls: Optional[ssl.SSLContext] = None,
) -> Iterator[Receiver]:
    """A running :class:`Receiver`, stopped and its threads joined on the way out."""
    receiver = Receiver(status, delay, replies=replies, tls=tls)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def export_to(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    """Point the OTLP exporter made next at *receiver*, with a short timeout, and clear the
    variables that would change the batch processor's defaults."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
    for name in (
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "OTEL_BSP_SCHEDULE_DELAY",
    ):
        monkeypatch.delenv(name, raising=False)
