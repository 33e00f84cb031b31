"""How much flask-observe adds to a request and to a scrape, next to the usual alternatives.

Run with ``make bench`` (or ``python bench/overhead.py --help``). Copies of the same one-route
app are built:

- bare Flask;
- ``Observe`` recording metrics only: the JSON logs, the access log and tracing off;
- ``Observe`` with metrics, request IDs and the JSON access log, tracing off;
- ``Observe`` in full: metrics, the access log and native request spans;
- the same with the console on (``OBSERVE_CONSOLE_ENABLED``): its span processor and log
  handler keep every span and line in their ring buffers, on the request path;
- the same, tracing one request in ten (``ParentBased(TraceIdRatioBased(0.1))``), as a
  busy production service often does; no target applies to it, it is there to read;
- ``Observe`` tracing only: native request spans, with metrics, logs and the access log off;
- prometheus-flask-exporter's ``PrometheusMetrics``, labelling by route template;
- bare Flask with an access log written by hand in ``after_request`` through
  python-json-logger;
- bare Flask with opentelemetry-instrumentation-flask's ``FlaskInstrumentor`` alone;
- bare Flask with one SDK span per request and nothing else, made by a few lines of WSGI
  middleware with the attributes native tracing sets: the least that any request span made
  by the SDK costs, a floor under every tracing kind; no target applies to it;
- the peer stack: prometheus-flask-exporter, ``FlaskInstrumentor`` and the hand-written
  access log together on one app;
- ``Observe`` recording metrics only, with the floor line under any JSON access line
  written for each request (``bench/floors.py``): what the access line is measured against;
- bare Flask with prometheus_client's own calls for one request's metrics made by a few
  lines of WSGI middleware (``bench/floors.py``): the floor under the metrics, in memory or,
  under ``bench/server.py``, in prometheus_client's multiprocess files.

Each has its own registry. Every app that traces exports its spans over OTLP/HTTP, as in
production, to a stand-in for an OpenTelemetry Collector in another process, on the other
CPU (``bench/collector.py``), which decodes them and counts them by service: flask-observe's
kinds through the provider, batch processor and exporter flask-observe makes itself
(``OBSERVE_TRACING_SETUP = "always"``, ``OBSERVE_TRACING_EXPORTER = "otlp"``), the others
through an SDK ``TracerProvider`` with the SDK's ``BatchSpanProcessor`` and
``OTLPSpanExporter``. Every request is sampled but in the 10% kind. The environment is left
as it is (``OTEL_SEMCONV_STABILITY_OPT_IN`` included): each package runs as its users get it.
Every log line goes to ``os.devnull``, written and flushed line by line as on a real stderr.
Each app is called through its WSGI callable, with no server or socket, in interleaved rounds
(the order shuffled every round) with the garbage collector paused inside a timed batch; a
tracing kind's batch ends when its provider has exported every span of it (``force_flush``),
so each kind pays for the export of its own spans, and no other kind for them.
Overheads are paired: each round's cost minus the same round's bare cost, so a slow moment
of a shared machine shifts both sides. Medians over the rounds are printed.

The floors are timed in the same run, each part alone in a tight loop
(``bench/floors.py``): a request span made by the SDK and by flask-observe's lean path, the
OTLP encoding of such spans by the SDK's encoder and by flask-observe's, an access line
written with ``json.dumps`` through ``logging``, and the prometheus_client calls a request's
metrics need.

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
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Callable, Optional

from flask import Flask, Response, g, request
from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_flask_exporter import PrometheusMetrics
from pythonjsonlogger.json import JsonFormatter

from flask_observe import Observe

# bench/ is no package: this script's directory is on sys.path when it runs.
import encoding  # isort: skip
import floors  # isort: skip
from collector import Collector, other_cpus  # isort: skip

Kind = str
LABELS: dict[Kind, str] = {
    "bare": "bare Flask",
    "observe-metrics": "flask-observe, metrics",
    "observe-logs": "flask-observe, metrics + logs",
    "observe-full": "flask-observe, full",
    "observe-console": "flask-observe, full + console",
    "observe-sampled": "flask-observe, full, 10% traced",
    "observe-tracing": "flask-observe, native tracing",
    "exporter": "prometheus-flask-exporter",
    "by-hand": "python-json-logger by hand",
    "otel-flask": "otel-instrumentation-flask",
    "sdk-span": "an SDK span alone",
    "peer": "peer stack",
    "floor-line": "metrics + a json.dumps line",
    "metrics-floor": "prometheus_client's calls alone",
}
KINDS: tuple[Kind, ...] = tuple(LABELS)
#: The kinds that write flask-observe's access line.
ACCESS_LINE_KINDS = frozenset(
    {"observe-logs", "observe-full", "observe-console", "observe-sampled"}
)
#: The share of requests the sampled kind traces, as a production service might.
SAMPLED_RATIO = 0.1
#: Where log lines go while the benchmark runs.
#: Line-buffered, as sys.stderr is since Python 3.9 even when it is not a terminal.
DEVNULL = open(os.devnull, "w", buffering=1)  # noqa: SIM115 - open for the life of the process
METHODS = ("GET", "POST", "PUT", "DELETE")
STATUSES = (200, 201, 400, 404, 500)

#: Targets, from the issues that set them (2: metrics; 4: traces; 13: tracing's cost).
MAX_OVERHEAD_SHARE = 1 / 3
MAX_REQUEST_RATIO = 1.15
MAX_SCRAPE_RATIO = 0.5
#: The access log must cost less than one written by hand with python-json-logger...
MAX_ACCESS_LOG_SHARE = 1.0
#: ...and at most 1.3 times the floor line: json.dumps through a plain logging.Handler.
MAX_ACCESS_LINE_FLOOR_RATIO = 1.3
#: Native request spans must cost at most half of opentelemetry-instrumentation-flask's.
MAX_NATIVE_TRACING_SHARE = 0.5
#: All three pillars together, every request traced and exported over OTLP: at most 2 times
#: a bare Flask request, and at most a quarter of the overhead of the peer stack.
MAX_FULL_REQUEST_RATIO = 2.0
MAX_FULL_OVERHEAD_SHARE = 1 / 4
#: The floors of the parts of tracing, in microseconds: a lean request span, and the
#: encoding of one such span for OTLP.
MAX_LEAN_SPAN_US = 10.0
MAX_ENCODING_US = 10.0


@dataclass
class Tracing:
    """The tracer provider of one app, and the service name its spans reach the collector
    stand-in under."""

    provider: TracerProvider
    service: str


#: Every provider made, to be shut down at the end of the run.
PROVIDERS: list[TracerProvider] = []


def service_of(kind: Kind) -> str:
    return f"bench-{kind}"


def sdk_tracing(kind: Kind) -> Tracing:
    """A provider of one app's own, as the peers' users make it: every request sampled, spans
    batched by the SDK's processor and exported by the SDK's OTLP/HTTP exporter, to
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the collector stand-in)."""
    service = service_of(kind)
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(TraceIdRatioBased(1.0)),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    PROVIDERS.append(provider)
    return Tracing(provider, service)


def observe_tracing(app: Flask, kind: Kind, **config: Any) -> Tracing:
    """``Observe`` on *app*, making its own tracer provider and OTLP exporter (to
    ``OTEL_EXPORTER_OTLP_ENDPOINT``) as it does for a user who sets that variable."""
    service = service_of(kind)
    app.config.update(
        OBSERVE_TRACING_SETUP="always",
        OBSERVE_TRACING_EXPORTER="otlp",
        OBSERVE_SERVICE_NAME=service,
        **config,
    )
    Observe(app, registry=CollectorRegistry())
    state = app.extensions["observe"]
    if trace.get_tracer_provider() is state.tracer_provider:  # no other one was set
        forget_global_provider()
    if type(state.tracer).__name__ != "LeanTracer" or not state.tracer._usable():
        raise SystemExit(f"{kind}: flask-observe's spans did not take the lean path")
    provider = state.tracer_provider
    PROVIDERS.append(provider)
    return Tracing(provider, service)


def forget_global_provider() -> None:
    """Leave the process without a global tracer provider, as a fresh one is.

    flask-observe sets the provider it makes as the global one when none is set, as its
    users want; but the benchmark builds apps of every kind in one process, and the
    metrics-only kind must run as it does where no provider exists anywhere. OpenTelemetry
    lets a provider be set once: its private state is reset here, and nowhere else.
    """
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]


#: flask-observe with no provider anywhere: ``never`` keeps it from making one.
TRACING_NEVER = {"OBSERVE_TRACING_SETUP": "never"}
#: flask-observe with its tracing off, whatever provider the process has.
TRACING_OFF = {"OBSERVE_TRACING_INSTRUMENTATION": "off", **TRACING_NEVER}
LOGS_OFF = {"OBSERVE_LOG_JSON": False, "OBSERVE_ACCESS_LOG": False}


def instrument(app: Flask, kind: Kind) -> Optional[Tracing]:
    """Add *kind*'s instrumentation to *app*, metrics each on a registry of its own; return
    the app's tracing, for the kinds that trace."""
    tracing = None
    if kind == "observe-metrics":
        app.config.update(**LOGS_OFF, **TRACING_NEVER)
        Observe(app, registry=CollectorRegistry())
    elif kind == "observe-logs":
        app.config.update(**TRACING_NEVER)
        Observe(app, registry=CollectorRegistry())
    elif kind == "observe-full":
        tracing = observe_tracing(app, kind)
    elif kind == "observe-console":
        tracing = observe_tracing(app, kind, OBSERVE_CONSOLE_ENABLED=True)
        console_handler_around(app, kind)
    elif kind == "observe-sampled":
        tracing = observe_tracing(app, kind, OBSERVE_TRACING_SAMPLE_RATIO=SAMPLED_RATIO)
    elif kind == "observe-tracing":
        tracing = observe_tracing(app, kind, OBSERVE_METRICS_ENABLED=False, **LOGS_OFF)
    elif kind == "exporter":
        PrometheusMetrics(app, registry=CollectorRegistry(), group_by="url_rule")
    elif kind == "by-hand":
        access_log_by_hand(app)
    elif kind == "otel-flask":
        tracing = sdk_tracing(kind)
        otel_flask(app, tracing.provider)
    elif kind == "sdk-span":
        tracing = sdk_tracing(kind)
        sdk_span_alone(app, tracing.provider)
    elif kind == "metrics-floor":
        record = floors.metrics_call()
        inner = app.wsgi_app

        def recorded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            try:
                return inner(environ, start_response)
            finally:
                record()

        app.wsgi_app = recorded  # type: ignore[method-assign]
    elif kind == "floor-line":
        app.config.update(**LOGS_OFF, **TRACING_NEVER)
        Observe(app, registry=CollectorRegistry())
        floors.add_floor_line(app)
    elif kind == "peer":
        tracing = sdk_tracing(kind)
        PrometheusMetrics(app, registry=CollectorRegistry(), group_by="url_rule")
        otel_flask(app, tracing.provider)
        access_log_by_hand(app)
    return tracing


#: Per kind, what to do before and after each of its batches, untimed.
AROUND: dict[Kind, tuple[Callable[[], None], Callable[[], None]]] = {}


def console_handler_around(app: Flask, kind: Kind) -> None:
    """Keep the console's log handler on its loggers only while *kind*'s requests run.

    It sits on the process-wide ``flask_observe`` logger, as for any app: there, every
    other kind's access line would reach it too, and be timed with the console's cost.
    """
    handler = app.extensions["observe"].console.log_handler
    loggers = [
        logger
        for logger in (logging.getLogger(name) for name in (app.name, "flask_observe"))
        if handler in logger.handlers
    ]

    def attach() -> None:
        for logger in loggers:
            logger.addHandler(handler)

    def detach() -> None:
        for logger in loggers:
            logger.removeHandler(handler)

    detach()
    AROUND[kind] = (attach, detach)


def otel_flask(app: Flask, provider: TracerProvider) -> None:
    """opentelemetry-instrumentation-flask on *app*, with the app's own tracer provider.

    No ``meter_provider``: as its users get it by default, the instrumentation then records
    its duration histograms on the global meter provider, a no-op proxy until the
    application sets one (this benchmark never does).
    """
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)


def sdk_span_alone(app: Flask, provider: TracerProvider) -> None:
    """One SERVER span per request around *app*'s WSGI callable, current while the app
    runs, with the attributes native tracing gives the same request:
    started, filled in and ended through the SDK's API, and nothing else."""
    tracer = provider.get_tracer("bench")
    inner = app.wsgi_app

    def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        attributes = {
            "http.request.method": environ["REQUEST_METHOD"],
            "url.scheme": environ["wsgi.url_scheme"],
            "server.address": environ["SERVER_NAME"],
            "server.port": int(environ["SERVER_PORT"]),
            "network.protocol.version": environ["SERVER_PROTOCOL"][5:],
            "url.path": environ["PATH_INFO"],
        }
        if "REMOTE_ADDR" in environ:
            attributes["client.address"] = environ["REMOTE_ADDR"]
        if "HTTP_USER_AGENT" in environ:
            attributes["user_agent.original"] = environ["HTTP_USER_AGENT"]
        span = tracer.start_span(
            environ["REQUEST_METHOD"], kind=trace.SpanKind.SERVER, attributes=attributes
        )
        token = context.attach(trace.set_span_in_context(span))

        def ending(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            ending_attributes: dict[str, Any] = {"http.response.status_code": int(status[:3])}
            if request.url_rule is not None:  # as native tracing: no route, no http.route
                ending_attributes["http.route"] = request.url_rule.rule
                span.update_name(f"{environ['REQUEST_METHOD']} {request.url_rule.rule}")
            span.set_attributes(ending_attributes)
            return start_response(status, headers, exc_info)

        try:
            return inner(environ, ending)
        finally:
            span.end()
            context.detach(token)

    app.wsgi_app = wsgi_app  # type: ignore[method-assign]


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


def one_route_app(kind: Kind) -> tuple[Flask, Optional[Tracing]]:
    app = Flask(f"bench_{kind.replace('-', '_')}")

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> dict[str, Any]:
        return {"id": order_id, "status": "paid"}

    return app, instrument(app, kind)


def many_routes_app(kind: Kind, routes: int) -> Flask:
    """*routes* routes, each answering every method of ``METHODS`` with the status asked for."""
    app = Flask(f"bench_scrape_{kind.replace('-', '_')}")

    def view(item: int) -> tuple[str, int]:
        return "", int(request.args["status"])

    for i in range(routes):
        app.add_url_rule(f"/r{i}/<int:item>", f"r{i}", view, methods=list(METHODS))
    instrument(app, kind)
    return app


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


#: The collector stand-in the tracing kinds export to, once :func:`start_collector` ran.
COLLECTOR: Optional[Collector] = None


def start_collector(cpus: Optional[set[int]] = None) -> Collector:
    """Start the collector stand-in and point ``OTEL_EXPORTER_OTLP_ENDPOINT`` at it, for
    every exporter made from now on; stop it with :func:`stop_collector`."""
    global COLLECTOR
    COLLECTOR = Collector(cpus)
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = COLLECTOR.endpoint
    return COLLECTOR


def stop_collector() -> None:
    global COLLECTOR
    if COLLECTOR is not None:
        COLLECTOR.stop()
        COLLECTOR = None


def received(tracing: Tracing, expected: int, timeout: float = 30.0) -> int:
    """Spans of *tracing*'s service the collector has, once *expected* arrived or after
    *timeout*; the provider is flushed first."""
    assert COLLECTOR is not None, "start_collector() first"
    tracing.provider.force_flush()
    return COLLECTOR.wait_for(tracing.service, expected, timeout)


def check_once(kind: Kind, call: Callable[[], bytes], tracing: Optional[Tracing]) -> None:
    """Refuse to time an app that does not answer, log or trace as it should."""
    exported = received(tracing, 0, 0) if tracing is not None else 0
    before, after = AROUND.get(kind, (lambda: None, lambda: None))
    stderr, sys.stderr = sys.stderr, io.StringIO()
    before()
    try:
        body = call()
        lines = sys.stderr.getvalue().splitlines()
    finally:
        after()
        sys.stderr = stderr
    if b'"id":42' not in body.replace(b" ", b""):
        raise SystemExit(f"{kind}: the benchmark app did not answer as expected")
    logged = [json.loads(line) for line in lines]
    expected = 1 if kind in ACCESS_LINE_KINDS else 0
    if len(logged) != expected or (logged and logged[0]["status"] != 200):
        raise SystemExit(f"{kind}: expected {expected} access line(s), got {lines!r}")
    if kind == "observe-full" and not logged[0].get("trace_id"):
        raise SystemExit(f"{kind}: the access line has no trace_id: {lines!r}")
    # The sampled kind may not trace this one request.
    if (
        tracing is not None
        and kind != "observe-sampled"
        and received(tracing, exported + 1, 10.0) < exported + 1
    ):
        raise SystemExit(f"{kind}: the request's span did not reach the collector")


def timed_batch(
    call: Callable[[], Any],
    count: int,
    finish: Optional[Callable[[], Any]] = None,
    kind: Optional[Kind] = None,
) -> float:
    """Microseconds per call over *count* calls, then *finish* (once), with the garbage
    collector paused, between *kind*'s :data:`AROUND` steps (untimed) if it has any."""
    if kind in AROUND:
        before, after = AROUND[kind]
        before()
        try:
            return timed_batch(call, count, finish)
        finally:
            after()
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(count):
            call()
        if finish is not None:
            finish()
        return (time.perf_counter() - start) / count * 1e6
    finally:
        gc.enable()


#: Requests sent to each kind's app, and its tracing, to check that no span was lost.
SENT: dict[Kind, int] = {}
TRACINGS: dict[Kind, Tracing] = {}


def request_overhead(rounds: int, batch: int, seed: int) -> dict[Kind, tuple[float, float]]:
    """Per kind: the median microseconds per request, and the median paired overhead."""
    calls = {}
    #: The spans a batch of requests made are exported before its time is taken, so that
    #: each kind pays for its own, never the next kind for the spans left in a queue.
    flushes: dict[Kind, Optional[Callable[[], Any]]] = {}
    for kind in KINDS:
        app, tracing = one_route_app(kind)
        calls[kind] = call = caller(app, "GET", "/orders/42")
        flushes[kind] = tracing.provider.force_flush if tracing is not None else None
        check_once(kind, call, tracing)
        warm_up = max(batch // 4, 50)
        timed_batch(call, warm_up, flushes[kind], kind)
        SENT[kind] = 1 + warm_up + rounds * batch
        if tracing is not None and kind != "observe-sampled":  # it traces only a tenth
            TRACINGS[kind] = tracing
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        raise SystemExit("a global tracer provider is set: the metrics kind must have none")
    order = list(KINDS)
    shuffle = random.Random(seed).shuffle
    per_round: dict[Kind, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(rounds):
        shuffle(order)
        for kind in order:
            per_round[kind].append(timed_batch(calls[kind], batch, flushes[kind], kind))
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
    kinds = ["observe-metrics", "exporter"]
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


def pin_to_one_cpu(*, enabled: bool) -> None:
    """Run on one CPU (the last this process may use), and say so.

    A loop of WSGI calls never waits for a socket, as a server's threads do between
    requests, so on a second CPU the batch processors' export threads rarely get the GIL:
    their queues overflow, spans are lost, and the SDK's warning for each lost span would
    be timed with the requests. On one CPU the threads take turns, as in a server whose
    workers outnumber its CPUs, and the shared machine's other load moves the numbers less.
    """
    if not enabled or not hasattr(os, "sched_setaffinity"):
        print("on every CPU this process may use")
        return
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    print(f"pinned to CPU {cpu} (--all-cpus not to)")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds (40)")
    parser.add_argument("--batch", type=int, default=2000, help="requests per batch (2000)")
    parser.add_argument("--routes", type=int, default=50, help="routes for the scrape (50)")
    parser.add_argument("--scrapes", type=int, default=30, help="timed scrapes per app (30)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the round order (1)")
    parser.add_argument(
        "--encoding-rounds", type=int, default=30, help="rounds of the encoding floor (30)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="8 rounds of 500, 10 scrapes, 8 encoding rounds"
    )
    parser.add_argument(
        "--all-cpus", action="store_true", help="do not pin the benchmark to one CPU"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.batch, args.scrapes, args.encoding_rounds = 8, 500, 10, 8
    start_collector(None if args.all_cpus else other_cpus())
    try:
        pin_to_one_cpu(enabled=not args.all_cpus)
        report(args)
    finally:
        for provider in PROVIDERS:
            provider.shutdown()
        stop_collector()
    return 0


def report(args: argparse.Namespace) -> None:
    print(
        f"Python {platform.python_version()}, Flask {version('flask')}, "
        f"prometheus_client {version('prometheus_client')}, flask-observe "
        f"{version('flask-observe')}, prometheus-flask-exporter "
        f"{version('prometheus-flask-exporter')}, opentelemetry-sdk "
        f"{version('opentelemetry-sdk')}, opentelemetry-instrumentation-flask "
        f"{version('opentelemetry-instrumentation-flask')}"
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
    print(f"  {'':32}{'us/request':>12}{'overhead us':>13}{'x bare':>9}")
    for kind, (per_request, overhead) in costs.items():
        extra = "-" if kind == "bare" else f"{overhead:.1f}"
        print(f"  {LABELS[kind]:32}{per_request:>12.1f}{extra:>13}{per_request / bare:>9.3f}")
    lost = {kind: SENT[kind] - received(tracing, SENT[kind]) for kind, tracing in TRACINGS.items()}
    if any(lost.values()):
        print("  spans that did not reach the collector (a queue overflowed, or an export")
        print("  failed; the timings above include the warnings for them):")
        for kind, count in lost.items():
            print(f"    {LABELS[kind]:30}{count:>8} of {SENT[kind]}")
    else:
        print(f"  every request's span reached the collector ({', '.join(map(LABELS.get, lost))})")

    scrape = scrape_cost(routes=args.routes, repeats=2, scrapes=args.scrapes, seed=args.seed)
    print(
        f"\nGET /metrics after {args.routes} routes x {len(METHODS)} methods x "
        f"{len(STATUSES)} statuses, text format: {args.scrapes} scrapes each, medians"
    )
    print(f"  {'':32}{'ms/scrape':>12}{'bytes':>13}{'samples':>9}")
    for kind, (ms, size, samples) in scrape.items():
        print(f"  {LABELS[kind]:32}{ms:>12.2f}{size:>13}{samples:>9}")

    overhead = {kind: cost[1] for kind, cost in costs.items()}
    share = overhead["observe-metrics"] / overhead["exporter"]
    ratio = costs["observe-metrics"][0] / bare
    scrape_ratio = scrape["observe-metrics"][0] / scrape["exporter"][0]
    # The access line's own cost: metrics + logs over metrics only, paired per round as the
    # overheads are; against the hand-written python-json-logger line over bare Flask, and
    # against the floor line over metrics only.
    access_line = overhead["observe-logs"] - overhead["observe-metrics"]
    floor_line = overhead["floor-line"] - overhead["observe-metrics"]
    # The console's own cost on the request path: its span processor and log handler.
    console = overhead["observe-console"] - overhead["observe-full"]
    # Native tracing's own cost is its row's overhead over bare Flask: metrics and logs are
    # off there, so it also carries the pipeline's wrapper, which any flask-observe setup
    # pays (the estimate errs against flask-observe).
    tracing_share = overhead["observe-tracing"] / overhead["otel-flask"]
    full_ratio = costs["observe-full"][0] / bare
    full_share = overhead["observe-full"] / overhead["peer"]

    print("\nEach part alone, in tight loops (bench/floors.py, bench/encoding.py), medians")
    parts = floors.floors()
    encoded = encoding.encoding_floor(batch=512, rounds=args.encoding_rounds, seed=args.seed)
    parts["OTLP encoding, SDK, per span"] = encoded["sdk"]
    parts["OTLP encoding, flask-observe, per span"] = encoded["flask_observe"]
    for name, us in parts.items():
        print(f"  {name:46}{us:>10.2f} us")
    print(
        f"  {'in the app: access line, flask-observe':46}{access_line:>10.2f} us"
        f"\n  {'in the app: the json.dumps line (floor)':46}{floor_line:>10.2f} us"
        f"\n  {'in the app: the console (spans and lines kept)':46}{console:>10.2f} us"
        f"\n  ({encoded['bytes']:.0f} bytes per span on the wire, "
        f"{encoded['gzip_bytes']:.0f} gzipped)"
    )

    print("\n  target                                            measured   limit")
    for name, value, limit in (
        ("metrics only: overhead / exporter's", share, MAX_OVERHEAD_SHARE),
        ("metrics only: request / bare Flask", ratio, MAX_REQUEST_RATIO),
        ("scrape, flask-observe / exporter", scrape_ratio, MAX_SCRAPE_RATIO),
        ("access line / by hand", access_line / overhead["by-hand"], MAX_ACCESS_LOG_SHARE),
        ("access line / json.dumps line", access_line / floor_line, MAX_ACCESS_LINE_FLOOR_RATIO),
        ("tracing, native / otel-instrumentation-flask", tracing_share, MAX_NATIVE_TRACING_SHARE),
        ("full, OTLP: request / bare Flask", full_ratio, MAX_FULL_REQUEST_RATIO),
        ("full, OTLP: overhead / peer stack's", full_share, MAX_FULL_OVERHEAD_SHARE),
        ("lean request span, us", parts["request span, lean"], MAX_LEAN_SPAN_US),
        ("OTLP encoding per span, us", encoded["flask_observe"], MAX_ENCODING_US),
    ):
        print(f"  {name:46}{value:>10.3f}{limit:>8.3f}  {verdict(value, limit)}")


if __name__ == "__main__":
    sys.exit(main())
