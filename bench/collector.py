"""A stand-in for an OpenTelemetry Collector, for the benchmarks: an OTLP/HTTP trace receiver
in a process of its own, so that what exporting spans costs the app is measured, and what
receiving them costs is not.

It answers ``POST /v1/traces`` (HTTP/1.1, kept alive, gzip or not) with 200 and an empty
protobuf body, as a collector that accepted the batch does, after decoding the batch with
OpenTelemetry's own protobuf classes to count its spans by ``service.name``. ``GET /counts``
answers those counts as JSON.

Run on its own (``python bench/collector.py``) it prints its port and serves until stopped;
the benchmarks start it with :class:`Collector`, which stops it by its PID.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def serve(port: int) -> None:
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector's HTTP server

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            message = ExportTraceServiceRequest.FromString(body)
            for resource_spans in message.resource_spans:
                service = next(
                    (
                        kv.value.string_value
                        for kv in resource_spans.resource.attributes
                        if kv.key == "service.name"
                    ),
                    "",
                )
                spans = sum(len(scope.spans) for scope in resource_spans.scope_spans)
                with lock:
                    counts[service] += spans
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            with lock:
                body = json.dumps(dict(counts)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


class Collector:
    """The stand-in, started in a process of its own on *cpus* (the CPUs the benchmark does
    not run on, where it has a choice); stopped by its PID in :meth:`stop`."""

    def __init__(self, cpus: Optional[set[int]] = None) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise SystemExit(f"the collector stand-in did not start: {line!r}")
        self.port = int(line)

    @property
    def endpoint(self) -> str:
        """The base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes it."""
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> dict[str, int]:
        """Spans received so far, by ``service.name``."""
        with urllib.request.urlopen(f"{self.endpoint}/counts", timeout=10) as response:
            counts: dict[str, int] = json.loads(response.read())
        return counts

    def wait_for(self, service: str, spans: int, timeout: float = 30.0) -> int:
        """Wait until *service*'s *spans* have arrived, or *timeout*; how many did."""
        deadline = time.monotonic() + timeout
        while True:
            received = self.counts().get(service, 0)
            if received >= spans or time.monotonic() > deadline:
                return received
            time.sleep(0.05)

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def other_cpus() -> Optional[set[int]]:
    """The CPUs but the last, which the benchmark pins itself to; ``None`` on one CPU."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = os.sched_getaffinity(0)
    rest = cpus - {max(cpus)}
    return rest or None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (any free one)")
    serve(parser.parse_args().port)
