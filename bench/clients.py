"""What observing an outgoing ``requests`` call costs.

Run with ``python bench/clients.py``, pinned to one CPU as ``bench/overhead.py`` is. Two
measures, each in interleaved rounds (order shuffled every round, the garbage collector
paused inside a timed batch), medians printed:

- **the recording alone**: ``Session.send``'s wrapper around a send that answers at once,
  so that only flask-observe's work is timed: a call of an app that does not list
  ``requests`` (the hook passes it through), with the metrics only (tracing off), and with
  the metrics and a CLIENT span of the lean path (the provider flask-observe makes, no
  exporter); and, for comparison, opentelemetry-instrumentation-requests around the same
  send, with an SDK provider and no exporter (if installed);
- **a whole call** to a server of this process on 127.0.0.1 (keep-alive, ``TCP_NODELAY``),
  made from the context of an app without flask-observe (the hook passes it through) and
  of an observed one.

The numbers are for reading, not for CI.
"""

from __future__ import annotations

import argparse
import platform
import random
import socket
import statistics
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from typing import Any, Callable

import requests
from flask import Flask
from overhead import pin_to_one_cpu, timed_batch
from prometheus_client import CollectorRegistry

from flask_observe import Observe
from flask_observe.clients._requests import _describe
from flask_observe.clients.calls import observed

URL = "http://inventory.internal:8080/stock?sku=MUG-42"


class _Answer:
    status_code = 200


def _answer(self: Any, request: Any, **kwargs: Any) -> Any:
    return _Answer()


def _app(**config: Any) -> Flask:
    app = Flask("bench")
    app.config.update(
        OBSERVE_TRACING_SETUP="always",
        OBSERVE_TRACING_EXPORTER="none",
        OBSERVE_LOG_JSON=False,
        OBSERVE_ACCESS_LOG=False,
        **config,
    )
    Observe(app, registry=CollectorRegistry())
    return app


#: A case: the app whose request context the calls are made in, and one call.
Case = tuple[Flask, Callable[[], None]]


def _batch(case: Case, calls: int) -> float:
    """Microseconds per call of the case, over *calls* calls made in one request context of
    its app, the collector paused."""
    app, fn = case
    with app.test_request_context():
        return timed_batch(fn, calls)


def _rounds(cases: dict[str, Case], calls: int, rounds: int) -> dict[str, float]:
    """Each case's median microseconds per call over *rounds* interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            times[name].append(_batch(cases[name], calls))
    return {name: statistics.median(values) for name, values in times.items()}


def recording(calls: int, rounds: int) -> dict[str, float]:
    """The recording alone, around a send that answers at once."""
    prepared = requests.Request("GET", URL).prepare()
    wrap = observed("requests", _describe)
    observed_send = wrap(_answer)

    def case(app: Flask, send: Callable[..., Any]) -> Case:
        def one() -> None:
            send(None, prepared.copy())

        return app, one

    cases = {
        "bare send": case(Flask("plain"), _answer),
        "app not listing requests": case(_app(OBSERVE_HTTP_CLIENTS=[]), observed_send),
        "metrics only": case(_app(OBSERVE_TRACING_INSTRUMENTATION="off"), observed_send),
        "metrics and span": case(_app(), observed_send),
    }
    try:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        pass
    else:
        saved = requests.Session.send
        requests.Session.send = _answer  # type: ignore[method-assign]
        instrumentor = RequestsInstrumentor()
        instrumentor.instrument(
            tracer_provider=TracerProvider(), meter_provider=NoOpMeterProvider()
        )
        contrib_send = requests.Session.send
        requests.Session.send = saved  # type: ignore[method-assign]
        instrumentor.uninstrument()
        cases["opentelemetry-instrumentation-requests"] = case(
            _app(OBSERVE_HTTP_CLIENTS=[]), contrib_send
        )
    return _rounds(cases, calls, rounds)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def whole_calls(calls: int, rounds: int) -> dict[str, float]:
    """Whole calls to a server of this process."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/stock?sku=MUG-42"
    session = requests.Session()

    def case(app: Flask) -> Case:
        def one() -> None:
            session.get(url)

        return app, one

    try:
        cases = {"passed through": case(Flask("plain")), "observed": case(_app())}
        for warm in cases.values():
            _batch(warm, calls)  # the connection and the series made
        return _rounds(cases, calls, rounds)
    finally:
        session.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per batch (2000)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (7)")
    parser.add_argument("--all-cpus", action="store_true", help="do not pin the process to one CPU")
    args = parser.parse_args(argv)
    if not (1 <= args.calls <= 100_000 and 1 <= args.rounds <= 50):
        parser.error("--calls from 1 to 100000, --rounds from 1 to 50")
    print(
        f"Python {platform.python_version()}, requests {version('requests')}, "
        f"opentelemetry-sdk {version('opentelemetry-sdk')}"
    )
    pin_to_one_cpu(enabled=not args.all_cpus)
    print("The recording alone (a send that answers at once), us per call:")
    alone = recording(args.calls, args.rounds)
    for name, value in alone.items():
        print(f"  {name:40s} {value:8.1f}  (+{value - alone['bare send']:.1f})")
    print("A whole call to a server of this process, us per call:")
    whole = whole_calls(max(args.calls // 10, 1), args.rounds)
    for name, value in whole.items():
        print(f"  {name:40s} {value:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
