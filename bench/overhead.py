"""How much flask-observe adds to a request and to a scrape, next to the usual alternatives.

Run with ``make bench`` (or ``python bench/overhead.py --help``). Copies of the same one-route
app are built: bare Flask; Flask with ``Observe`` recording metrics only; Flask with
``Observe`` as it comes (metrics, request IDs and the JSON access log); Flask with
prometheus-flask-exporter's ``PrometheusMetrics`` labelling by route template; and bare Flask
with an access log written by hand in ``after_request`` through python-json-logger. Each has
its own registry, and every log line goes to ``os.devnull``, written and flushed line by line
as on a real stderr. Each is called through its WSGI callable, with no server or socket in the
interleaved rounds (the order shuffled every round) with the garbage collector paused inside a
timed batch. Overheads are paired: each round's cost minus the same round's bare cost, so a
slow moment of a shared machine shifts both sides. Medians over the rounds are printed.

The scrape is timed on two apps that have served the same traffic over 50 routes x 4 methods
x 5 statuses: one ``GET /metrics`` through the WSGI callable, Prometheus text format.

The numbers are for reading, not for CI: the exit status is 0 whatever they are.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Iterable
from importlib.metadata import version
from typing import Any, Callable

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_flask_exporter import PrometheusMetrics
from pythonjsonlogger.json import JsonFormatter

from flask_observe import Observe

Kind = str
KINDS: tuple[Kind, ...] = ("bare", "flask-observe", "flask-observe+logs", "exporter", "by-hand")
LABELS = {
    "bare": "bare Flask",
    "flask-observe": "flask-observe, metrics",
    "flask-observe+logs": "flask-observe, default",
    "exporter": "prometheus-flask-exporter",
    "by-hand": "python-json-logger by hand",
}
#: Where log lines go while the benchmark runs.
DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - open for the life of the process
METHODS = ("GET", "POST", "PUT", "DELETE")
STATUSES = (200, 201, 400, 404, 500)

#: Targets from the issue that introduced this benchmark.
MAX_OVERHEAD_SHARE = 1 / 3
MAX_REQUEST_RATIO = 1.15
MAX_SCRAPE_RATIO = 0.5
#: The access log must cost less than one written by hand with python-json-logger.
MAX_ACCESS_LOG_SHARE = 1.0


def instrument(app: Flask, kind: Kind) -> Flask:
    """Add *kind*'s instrumentation to *app*, metrics each on a registry of its own."""
    if kind == "flask-observe":
        app.config.update(OBSERVE_LOG_JSON=False, OBSERVE_ACCESS_LOG=False)
        Observe(app, registry=CollectorRegistry())
    elif kind == "flask-observe+logs":
        Observe(app, registry=CollectorRegistry())
    elif kind == "exporter":
        PrometheusMetrics(app, registry=CollectorRegistry(), group_by="url_rule")
    elif kind == "by-hand":
        access_log_by_hand(app)
    return app


def access_log_by_hand(app: Flask) -> None:
    """The access log a user would write: a timer in ``before_request``, one
    python-json-logger line in ``after_request``."""
    handler = logging.StreamHandler(DEVNULL)
    handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s", timestamp=True))
    logger = logging.getLogger("bench.access")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False

    @app.before_request
    def start_timer() -> None:
        g.start = time.perf_counter()

    @app.after_request
    def access_line(response: Response) -> Response:
        logger.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.start) * 1000, 3),
                "client_addr": request.remote_addr,
                "user_agent": request.user_agent.string,
                "response_bytes": response.content_length,
            },
        )
        return response


def one_route_app(kind: Kind) -> Flask:
    app = Flask(f"bench_{kind.replace('-', '_')}")

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> dict[str, Any]:
        return {"id": order_id, "status": "paid"}

    return instrument(app, kind)


def many_routes_app(kind: Kind, routes: int) -> Flask:
    """*routes* routes, each answering every method of ``METHODS`` with the status asked for."""
    app = Flask(f"bench_scrape_{kind.replace('-', '_')}")

    def view(item: int) -> tuple[str, int]:
        return "", int(request.args["status"])

    for i in range(routes):
        app.add_url_rule(f"/r{i}/<int:item>", f"r{i}", view, methods=list(METHODS))
    return instrument(app, kind)


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return lambda data: None


def caller(app: Flask, method: str, path: str, query: str = "") -> Callable[[], bytes]:
    """A function that sends one request to *app*'s WSGI callable and returns the body."""
    template = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "5000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:5000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }

    def call() -> bytes:
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO()
        body: Iterable[bytes] = app(environ, _start_response)
        try:
            return b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    return call


def check_once(kind: Kind, call: Callable[[], bytes]) -> None:
    """Refuse to time an app that does not answer, or log, as it should."""
    stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        body = call()
        lines = sys.stderr.getvalue().splitlines()
    finally:
        sys.stderr = stderr
    if b'"id":42' not in body.replace(b" ", b""):
        raise SystemExit(f"{kind}: the benchmark app did not answer as expected")
    logged = [json.loads(line) for line in lines]
    expected = 1 if kind == "flask-observe+logs" else 0
    if len(logged) != expected or (logged and logged[0]["status"] != 200):
        raise SystemExit(f"{kind}: expected {expected} access line(s), got {lines!r}")


def timed_batch(call: Callable[[], Any], count: int) -> float:
    """Microseconds per call over *count* calls, with the garbage collector paused."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(count):
            call()
        return (time.perf_counter() - start) / count * 1e6
    finally:
        gc.enable()


def request_overhead(rounds: int, batch: int, seed: int) -> dict[Kind, tuple[float, float]]:
    """Per kind: the median microseconds per request, and the median paired overhead."""
    calls = {kind: caller(one_route_app(kind), "GET", "/orders/42") for kind in KINDS}
    for kind, call in calls.items():
        check_once(kind, call)
        timed_batch(call, max(batch // 4, 50))  # warm up
    order = list(KINDS)
    shuffle = random.Random(seed).shuffle
    per_round: dict[Kind, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(rounds):
        shuffle(order)
        for kind in order:
            per_round[kind].append(timed_batch(calls[kind], batch))
    bare = per_round["bare"]
    return {
        kind: (
            statistics.median(times),
            statistics.median(t - b for t, b in zip(times, bare)),
        )
        for kind, times in per_round.items()
    }


def scrape_cost(routes: int, repeats: int, scrapes: int, seed: int) -> dict[Kind, Any]:
    """Per metrics kind: median milliseconds per scrape, body bytes, samples exposed."""
    kinds = ["flask-observe", "exporter"]
    scrape = {}
    for kind in kinds:
        app = many_routes_app(kind, routes)
        for i in range(routes):
            for method in METHODS:
                for status in STATUSES:
                    call = caller(app, method, f"/r{i}/7", f"status={status}")
                    for _ in range(repeats):
                        call()
        scrape[kind] = caller(app, "GET", "/metrics")
    result = {}
    times: dict[Kind, list[float]] = {kind: [] for kind in kinds}
    shuffle = random.Random(seed).shuffle
    for _ in range(scrapes):
        shuffle(kinds)
        for kind in kinds:
            times[kind].append(timed_batch(scrape[kind], 1) / 1000)
    for kind in times:
        body = scrape[kind]().decode()
        samples = sum(len(f.samples) for f in text_string_to_metric_families(body))
        result[kind] = (statistics.median(times[kind]), len(body), samples)
    return result


def verdict(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds (40)")
    parser.add_argument("--batch", type=int, default=2000, help="requests per batch (2000)")
    parser.add_argument("--routes", type=int, default=50, help="routes for the scrape (50)")
    parser.add_argument("--scrapes", type=int, default=30, help="timed scrapes per app (30)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the round order (1)")
    parser.add_argument("--quick", action="store_true", help="8 rounds of 500, 10 scrapes")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.batch, args.scrapes = 8, 500, 10

    print(
        f"Python {platform.python_version()}, Flask {version('flask')}, "
        f"prometheus_client {version('prometheus_client')}, flask-observe "
        f"{version('flask-observe')}, prometheus-flask-exporter "
        f"{version('prometheus-flask-exporter')}"
    )
    print(
        f"GET /orders/<int:order_id> through the WSGI callable: {args.rounds} interleaved "
        f"rounds of {args.batch} requests, medians"
    )
    stderr, sys.stderr = sys.stderr, DEVNULL  # where flask-observe writes its lines
    try:
        costs = request_overhead(args.rounds, args.batch, args.seed)
    finally:
        sys.stderr = stderr
    bare = costs["bare"][0]
    print(f"  {'':30}{'us/request':>12}{'overhead us':>13}{'x bare':>9}")
    for kind, (per_request, overhead) in costs.items():
        extra = "-" if kind == "bare" else f"{overhead:.1f}"
        print(f"  {LABELS[kind]:30}{per_request:>12.1f}{extra:>13}{per_request / bare:>9.3f}")

    scrape = scrape_cost(routes=args.routes, repeats=2, scrapes=args.scrapes, seed=args.seed)
    print(
        f"\nGET /metrics after {args.routes} routes x {len(METHODS)} methods x "
        f"{len(STATUSES)} statuses, text format: {args.scrapes} scrapes each, medians"
    )
    print(f"  {'':30}{'ms/scrape':>12}{'bytes':>13}{'samples':>9}")
    for kind, (ms, size, samples) in scrape.items():
        print(f"  {LABELS[kind]:30}{ms:>12.2f}{size:>13}{samples:>9}")

    share = costs["flask-observe"][1] / costs["exporter"][1]
    ratio = costs["flask-observe"][0] / bare
    scrape_ratio = scrape["flask-observe"][0] / scrape["exporter"][0]
    # The access log's own cost: the default setup over metrics only, paired per round as
    # the overheads are, against the hand-written line over bare Flask.
    logs_share = (costs["flask-observe+logs"][1] - costs["flask-observe"][1]) / costs["by-hand"][1]
    print("\n  target                                      measured   limit")
    for name, value, limit in (
        ("overhead, flask-observe / exporter", share, MAX_OVERHEAD_SHARE),
        ("request, flask-observe / bare Flask", ratio, MAX_REQUEST_RATIO),
        ("scrape, flask-observe / exporter", scrape_ratio, MAX_SCRAPE_RATIO),
        ("access log, flask-observe / by hand", logs_share, MAX_ACCESS_LOG_SHARE),
    ):
        print(f"  {name:42}{value:>10.3f}{limit:>8.3f}  {verdict(value, limit)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
