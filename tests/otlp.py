"""A real OTLP/HTTP trace receiver for the tests, on 127.0.0.1, and the settings that point
OpenTelemetry's exporter at it. What it receives is decoded with OpenTelemetry's own
protobuf classes."""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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

    def decoded(self) -> ExportTraceServiceRequest:
        """The body as the OTLP request it is, gunzipped if it was sent compressed."""
        body = self.body
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        return message


class Receiver:
    """An OTLP/HTTP trace receiver: records every ``POST /v1/traces`` and answers it with
    *status* and an empty protobuf body, after *delay* seconds."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.received: list[Received] = []
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
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
                        )
                    )
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # stderr is where the app's JSON log lines go

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long shutdown() may wait
            name="otlp-receiver",
            daemon=True,
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"

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
        self._server.server_close()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()


@contextlib.contextmanager
def receiving(status: int = 200, delay: float = 0.0) -> Iterator[Receiver]:
    """A running :class:`Receiver`, stopped and its thread joined on the way out."""
    receiver = Receiver(status, delay)
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
