"""What the request signals cost: nothing measurable with no receiver, little with one.

Run with ``make bench`` (after ``bench/overhead.py``) or ``python bench/signals.py``. Three
copies of the same one-route app, each recording metrics only (the JSON logs, the access log
and tracing off), each on its own registry:

- with ``OBSERVE_SIGNALS_ENABLED = False``: no signal sink on the request path at all;
- with the signal sink and no receiver connected to ``request_observed`` or ``slow_request``
  (the default every app gets);
- with the signal sink and one receiver of ``request_observed``, which counts the requests.

A receiver connected to any app makes the sink of every app build the request's facts, so
the receiver is connected only while its own app's batch runs. Requests go through the WSGI
callable, no server or socket, in interleaved rounds (order shuffled every round) with the
garbage collector paused inside a timed batch; the differences are paired per round against
the app without the sink, and medians are printed. The numbers are for reading, not for CI.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
from importlib.metadata import version
from typing import Any, Callable, Optional

from flask import Flask
from overhead import DEVNULL, LOGS_OFF, TRACING_OFF, caller, pin_to_one_cpu, timed_batch
from prometheus_client import CollectorRegistry

from flask_observe import Observe
from flask_observe.signals import request_observed, slow_request

LABELS = {
    "off": "metrics, no signal sink",
    "idle": "metrics + signals, no receiver",
    "heard": "metrics + signals, one receiver",
}


class Counting:
    """The receiver: counts what it hears."""

    def __init__(self) -> None:
        self.heard = 0

    def __call__(self, sender: Flask, **facts: Any) -> None:
        self.heard += 1


def one_route_app(kind: str) -> Flask:
    app = Flask(f"bench_signals_{kind}")
    app.config.update(**LOGS_OFF, **TRACING_OFF, OBSERVE_SIGNALS_ENABLED=kind != "off")

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> dict[str, Any]:
        return {"id": order_id, "status": "paid"}

    Observe(app, registry=CollectorRegistry())
    return app


def batch_of(kind: str, app: Flask, receiver: Counting) -> Callable[[int], float]:
    """A function timing a batch of *kind*'s requests, its receiver connected meanwhile."""
    call = caller(app, "GET", "/orders/42")

    def run(count: int) -> float:
        if request_observed.receivers or slow_request.receivers:
            raise SystemExit("a receiver was left connected: the batches are not comparable")
        if kind != "heard":
            return timed_batch(call, count)
        with request_observed.connected_to(receiver, app):
            return timed_batch(call, count)

    return run


def measure(rounds: int, batch: int, seed: int) -> tuple[dict[str, tuple[float, float]], int]:
    """Per kind: median microseconds per request and median paired difference to ``off``;
    and how many requests the receiver heard."""
    receiver = Counting()
    runs = {kind: batch_of(kind, one_route_app(kind), receiver) for kind in LABELS}
    for run in runs.values():
        run(max(batch // 4, 50))  # warm up
    if receiver.heard == 0:
        raise SystemExit("the receiver heard nothing: the signal was not sent")
    heard_before = receiver.heard
    order = list(LABELS)
    shuffle = random.Random(seed).shuffle
    per_round: dict[str, list[float]] = {kind: [] for kind in LABELS}
    for _ in range(rounds):
        shuffle(order)
        for kind in order:
            per_round[kind].append(runs[kind](batch))
    off = per_round["off"]
    costs = {
        kind: (statistics.median(times), statistics.median(t - o for t, o in zip(times, off)))
        for kind, times in per_round.items()
    }
    return costs, receiver.heard - heard_before


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds (40)")
    parser.add_argument("--batch", type=int, default=2000, help="requests per batch (2000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the round order (1)")
    parser.add_argument("--quick", action="store_true", help="8 rounds of 500")
    parser.add_argument(
        "--all-cpus", action="store_true", help="do not pin the benchmark to one CPU"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.batch = 8, 500
    pin_to_one_cpu(enabled=not args.all_cpus)
    print(
        f"Python {platform.python_version()}, Flask {version('flask')}, blinker "
        f"{version('blinker')}, flask-observe {version('flask-observe')}"
    )
    print(
        f"GET /orders/<int:order_id> through the WSGI callable: {args.rounds} interleaved "
        f"rounds of {args.batch} requests, medians"
    )
    stderr, sys.stderr = sys.stderr, DEVNULL
    try:
        costs, heard = measure(args.rounds, args.batch, args.seed)
    finally:
        sys.stderr = stderr
    print(f"  {'':34}{'us/request':>12}{'vs no sink us':>15}")
    for kind, (per_request, difference) in costs.items():
        extra = "-" if kind == "off" else f"{difference:+.2f}"
        print(f"  {LABELS[kind]:34}{per_request:>12.2f}{extra:>15}")
    expected = args.rounds * args.batch
    if heard != expected:
        raise SystemExit(f"the receiver heard {heard} of {expected} requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
