"""What flask-observe's access line costs, next to the floor under any JSON access line.

Run with ``python bench/access_line.py`` (``--help`` for the options).

**The floor** is the least an access line costs through stdlib ``logging`` with no
formatter library: a ``logging.Logger`` (level ``INFO``, not propagating) with one
``logging.Handler`` subclass, :class:`FloorHandler`, whose ``emit`` builds the line's object
(``timestamp`` in RFC 3339 UTC by ``time.strftime`` plus the record's milliseconds,
``level``, ``logger``, ``event``, then the record's fields) and writes
``json.dumps(fields) + "\\n"`` to a line-buffered stream on ``os.devnull``, as ``sys.stderr``
is line-buffered. It is called once per request as ``logger.info("request", extra=fields)``
with the fields flask-observe's access line has, and the same values: ``service``,
``request_id``, ``trace_id`` and ``span_id`` when traced, ``method``, ``route``, ``path``,
``status``, ``duration_ms``, ``client_addr``, ``user_agent``, ``response_bytes``. Its
``request_id`` is a constant: reading or making one is counted apart (below).

Four copies of ``bench/overhead.py``'s one-route app, tracing off, each on its own registry,
are called through their WSGI callables in interleaved rounds (the order shuffled every
round, the garbage collector paused in a batch), as ``bench/overhead.py`` does:

- ``metrics``: ``Observe`` recording metrics only (``OBSERVE_LOG_JSON`` and
  ``OBSERVE_ACCESS_LOG`` off);
- ``ids``: metrics and JSON logs with the access line off: each request's ID read from
  ``X-Request-ID`` or made, sent back on the response, its log context set and cleared;
- ``logs``: metrics and logs with the access line, ``bench/overhead.py``'s
  "flask-observe, metrics + logs";
- ``floor``: the ``metrics`` app with the floor line written for each request by a sink at
  the end of its pipeline, from the same observation flask-observe's line is made from.

Each round's time minus the same round's ``metrics`` time is that round's cost: the access
line (``logs``), of which the request ID and context (``ids``), and the floor (``floor``).
The median over the rounds, with the quartiles, is printed, and the ratio of the medians
of the access line and of the floor, the issue's target being at most 1.3.

Then the lines alone and their parts, each a function timed in a tight loop, in
interleaved rounds, minus an empty call's time in the same round: the floor's
``logger.info`` and its parts (the record, ``findCaller``, the timestamp, ``json.dumps``, the
write), and flask-observe's line and its parts.

The numbers are for reading, not for CI: the exit status is 0 whatever they are.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import platform
import random
import statistics
import sys
import time
from importlib.metadata import version
from typing import Any, Callable, Optional

from flask import Flask
from overhead import DEVNULL, LOGS_OFF, TRACING_OFF, caller, pin_to_one_cpu, timed_batch
from prometheus_client import CollectorRegistry

from flask_observe import Observe
from flask_observe.logs import ACCESS_LOGGER, LogSink
from flask_observe.observation import Observation

# bench/ is no package: this script's directory is on sys.path when it runs.
from floors import (  # isort: skip
    FLOOR_REQUEST_ID,
    add_floor_line,
    floor_fields,
    floor_logger,
    floor_timestamp,
)

#: IDs of a traced request, for the lines alone.
TRACE_ID, SPAN_ID = "1416899fad5c3e01a5a9c1e6f21132d2", "523da49b8f12580a"
#: What the callers send; a User-Agent of the length of a browser's.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"

#: The target of the issue: flask-observe's access line costs at most this many floor lines.
MAX_RATIO = 1.3

LABELS = {
    "metrics": "metrics only",
    "ids": "metrics + request IDs, no access line",
    "logs": "metrics + logs (access line)",
    "floor": "metrics + the floor line",
}
KINDS = tuple(LABELS)
#: ``OBSERVE_LOG_FORMAT`` of the apps that log (``--format``): a preset's access line is
#: written from a dict, not by hand.
LOG_FORMAT = "json"


def one_route_app(kind: str) -> Flask:
    app = Flask(f"bench_access_{kind}")

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> dict[str, Any]:
        return {"id": order_id, "status": "paid"}

    app.config.update(
        TRACING_OFF,
        OBSERVE_SERVICE_NAME="shop",
        OBSERVE_LOG_FORMAT=LOG_FORMAT,
        OBSERVE_GCP_PROJECT="bench",
    )
    if kind in ("metrics", "floor"):
        app.config.update(LOGS_OFF)
    elif kind == "ids":
        app.config.update(OBSERVE_ACCESS_LOG=False)
    Observe(app, registry=CollectorRegistry())
    if kind == "floor":
        add_floor_line(app)
    return app


def lines_of(call: Callable[[], Any]) -> list[dict[str, Any]]:
    """The JSON lines *call* writes to ``sys.stderr``, parsed."""
    stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        call()
        written = sys.stderr.getvalue()
    finally:
        sys.stderr = stderr
    return [json.loads(line) for line in written.splitlines()]


def check_lines(apps: dict[str, Flask]) -> None:
    """Refuse to time apps that do not write the lines they should: one access line from
    ``logs``, none from the others, and a floor line with the access line's fields, in its
    order, with its values (but the timestamp, the logger, the duration and the request ID)."""
    buffer = io.StringIO()
    floor_logger(buffer)  # the same logger as the floor sink's, writing here for a while
    written = {}
    try:
        for kind, app in apps.items():
            written[kind] = lines_of(caller(app, "GET", "/orders/42"))
    finally:
        floor_logger()
    for kind, lines in written.items():
        if len(lines) != (kind == "logs"):
            raise SystemExit(f"{kind}: expected {int(kind == 'logs')} line(s), got {lines!r}")
    if LOG_FORMAT != "json":  # the preset's names are not the floor's
        return
    (access,) = written["logs"]
    (line,) = [json.loads(text) for text in buffer.getvalue().splitlines()]
    varying = {"timestamp", "logger", "duration_ms", "request_id"}
    if list(line) != list(access) or any(
        line[key] != access[key] for key in line if key not in varying
    ):
        raise SystemExit(f"the floor line differs from the access line:\n{line}\n{access}")


def request_costs(rounds: int, batch: int, seed: int) -> dict[str, list[float]]:
    """Per kind but ``metrics``: the microseconds per request above ``metrics`` in the same
    round, round by round; for ``metrics`` itself, its microseconds per request."""
    apps = {kind: one_route_app(kind) for kind in KINDS}
    check_lines(apps)
    calls = {kind: caller(app, "GET", "/orders/42") for kind, app in apps.items()}
    for call in calls.values():
        timed_batch(call, max(batch // 4, 50))
    per_round = interleaved(calls, rounds, batch, seed)
    base = per_round["metrics"]
    costs = {"metrics": base}
    for kind in KINDS[1:]:
        costs[kind] = [t - b for t, b in zip(per_round[kind], base)]
    return costs


def interleaved(
    calls: dict[str, Callable[[], Any]], rounds: int, batch: int, seed: int
) -> dict[str, list[float]]:
    """Microseconds per call of each of *calls*, per round."""
    order = list(calls)
    shuffle = random.Random(seed).shuffle
    per_round: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            per_round[name].append(timed_batch(calls[name], batch))
    return per_round


def loops(
    calls: dict[str, Callable[[], Any]], rounds: int, batch: int, seed: int
) -> dict[str, float]:
    """The median microseconds of each of *calls* over the rounds, less an empty call's."""
    per_round = interleaved({"": lambda: None, **calls}, rounds, batch, seed)
    empty = per_round.pop("")
    return {
        name: statistics.median(t - e for t, e in zip(times, empty))
        for name, times in per_round.items()
    }


def observation(app: Flask, *, traced: bool = False) -> Observation:
    """A finished observation of ``GET /orders/42`` by *app*'s pipeline, as the sinks get it."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/orders/42",
        "QUERY_STRING": "",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_USER_AGENT": USER_AGENT,
    }
    made = Observation(time.perf_counter(), environ, app.extensions["observe"].pipeline)
    made.method, made.endpoint = "GET", "/orders/<int:order_id>"
    made.route, made.path = made.endpoint, "/orders/42"
    made.status, made.response_size, made.duration = 200, 27, 0.000123
    made.request_id = FLOOR_REQUEST_ID
    if traced:
        made.trace_id, made.span_id = TRACE_ID, SPAN_ID
    made.finished = True
    return made


def floor_parts(app: Flask) -> dict[str, Callable[[], Any]]:
    """The floor line, whole and in parts, for an observation of *app*."""
    logger = floor_logger()
    handler = logger.handlers[0]
    plain, traced = observation(app), observation(app, traced=True)
    fields = floor_fields(plain)
    record = logger.makeRecord(logger.name, logging.INFO, "x", 0, "request", (), None, None, fields)
    line = {
        "timestamp": floor_timestamp(record),
        "level": "info",
        "logger": logger.name,
        "event": "request",
        **fields,
    }
    text = json.dumps(line) + "\n"
    make = logger.makeRecord
    name = logger.name
    return {
        "floor: the line": lambda: logger.info("request", extra=floor_fields(plain)),
        "floor: the line, traced": lambda: logger.info("request", extra=floor_fields(traced)),
        "floor: its fields from the observation": lambda: floor_fields(plain),
        "floor: findCaller": logger.findCaller,
        "floor: makeRecord": lambda: make(name, 20, "x", 0, "request", (), None, None, fields),
        "floor: handler.handle (lock, emit)": lambda: handler.handle(record),
        "floor: its timestamp": lambda: floor_timestamp(record),
        "floor: json.dumps": lambda: json.dumps(line),
        "floor: the write": lambda: DEVNULL.write(text),
    }


def observe_parts(app: Flask) -> dict[str, Callable[[], Any]]:
    """flask-observe's line, whole and in parts, for an observation of *app* (an app with
    the logs and the access line on)."""
    from flask_observe import logs

    sink = next(s for s in app.extensions["observe"].pipeline._sinks if isinstance(s, LogSink))
    logger = logging.getLogger(ACCESS_LOGGER)
    plain, traced = observation(app), observation(app, traced=True)
    handler = logs._sole_handler(logger, logging.INFO)
    assert handler is not None
    formatter = handler.formatter
    assert isinstance(formatter, logs.JsonLogFormatter)
    fields = {
        "status": 200,
        "duration_ms": 0.123,
        "client_addr": "127.0.0.1",
        "user_agent": USER_AGENT,
        "response_bytes": 27,
    }
    data = formatter._common(time.time(), "INFO", ACCESS_LOGGER, "request", plain, None, None)
    data.update(fields)
    text = formatter.serialize_access(data) + "\n"
    given = {"HTTP_X_REQUEST_ID": "req-7f3a"}
    made: dict[str, Any] = {}
    start = sink.start
    return {
        "observe: the line": lambda: sink._write_access(logger, plain),
        "observe: the line, traced": lambda: sink._write_access(logger, traced),
        "observe: start, ID made": lambda: start(Observation(0.0, made)),
        "observe: start, ID given": lambda: start(Observation(0.0, given)),
        "observe: an Observation (in both starts)": lambda: Observation(0.0, made),
        "observe: _sole_handler": lambda: logs._sole_handler(logger, logging.INFO),
        "observe: access_line": lambda: formatter.access_line(20, ACCESS_LOGGER, plain, fields),
        "observe: a record's fields (_common)": lambda: formatter._common(
            time.time(), "INFO", ACCESS_LOGGER, "request", plain, None, None
        ),
        "observe: a record's encoding": lambda: formatter.serialize_access(data),
        "observe: timestamp": lambda: logs._rfc3339(time.time()),
        "observe: the write": lambda: handler._write(text),
    }


def access_line_floor(rounds: int, batch: int, seed: int = 1) -> dict[str, float]:
    """The floor line alone, and its parts: median microseconds each, timed in tight loops."""
    app = one_route_app("metrics")
    return loops(floor_parts(app), rounds, batch, seed)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds (40)")
    parser.add_argument("--batch", type=int, default=2000, help="requests per batch (2000)")
    parser.add_argument("--loop", type=int, default=20000, help="calls per tight loop (20000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the round order (1)")
    parser.add_argument("--quick", action="store_true", help="8 rounds of 500, loops of 5000")
    parser.add_argument(
        "--format",
        default="json",
        choices=["json", "ecs", "gcp", "datadog"],
        help="OBSERVE_LOG_FORMAT of flask-observe's line (json)",
    )
    parser.add_argument(
        "--all-cpus", action="store_true", help="do not pin the benchmark to one CPU"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.batch, args.loop = 8, 500, 5000
    global LOG_FORMAT
    LOG_FORMAT = args.format
    pin_to_one_cpu(enabled=not args.all_cpus)
    print(
        f"Python {platform.python_version()}, Flask {version('flask')}, python-json-logger "
        f"{version('python-json-logger')}, flask-observe {version('flask-observe')}"
    )
    stderr, sys.stderr = sys.stderr, DEVNULL  # where flask-observe writes its lines
    try:
        costs = request_costs(args.rounds, args.batch, args.seed)
        logs_app = one_route_app("logs")
        parts = loops(
            {**floor_parts(logs_app), **observe_parts(logs_app)},
            args.rounds,
            args.loop,
            args.seed,
        )
    finally:
        sys.stderr = stderr
    median = {kind: statistics.median(values) for kind, values in costs.items()}
    print(
        f"\nGET /orders/<int:order_id> through the WSGI callable, tracing off: {args.rounds} "
        f"interleaved rounds of {args.batch} requests; each round's cost over metrics only "
        f"({median['metrics']:.1f} us/request), median and quartiles"
    )
    line, ids = costs["logs"], costs["ids"]
    for label, values in (
        ("access line, all of it (logs - metrics)", line),
        ("  of which the request ID and context (ids - metrics)", ids),
        ("  the line itself (logs - ids)", [a - b for a, b in zip(line, ids)]),
        ("floor line (floor - metrics)", costs["floor"]),
    ):
        q1, q2, q3 = statistics.quantiles(values, n=4)
        print(f"  {label:56}{q2:>8.2f} us  ({q1:.2f} to {q3:.2f})")
    ratio = median["logs"] / median["floor"]
    print(
        f"  {'ratio, access line / floor':56}{ratio:>8.2f}     limit {MAX_RATIO}: "
        f"{'ok' if ratio <= MAX_RATIO else 'MISS'}"
    )
    print(
        f"  {'ratio, the line without the request ID / floor':56}"
        f"{(median['logs'] - median['ids']) / median['floor']:>8.2f}"
    )
    print(
        f"\nAlone, in tight loops: {args.rounds} interleaved rounds of {args.loop} calls, "
        "medians, less an empty call"
    )
    for name, value in parts.items():
        print(f"  {name:56}{value:>8.2f} us")
    alone = (parts["observe: the line"] + parts["observe: start, ID made"]) / parts[
        "floor: the line"
    ]
    print(f"  {'ratio, flask-observe (the line + start) / floor':56}{alone:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
