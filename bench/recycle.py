"""Scrape time while gunicorn recycles its workers: flask-observe's hooks against
prometheus_client's alone.

Run with ``make bench-server`` (or ``python bench/recycle.py --help``); it needs gunicorn,
not wrk. Two gunicorns serve the same app (``--routes`` routes of every method and status,
flask-observe's metrics in multiprocess files), each recycling its workers after
``--max-requests`` requests, as a server guarding against slow memory growth does:

- with ``flask_observe.gunicorn``'s hooks (``bench/gunicorn_hooks.py``), which fold a dead
  worker's files into one archive per type;
- with prometheus_client's ``mark_process_dead`` alone (``bench/gunicorn_hooks_plain.py``),
  which removes a dead worker's live gauges and leaves its other files in place.

Each round sends ``--requests`` requests to both, one connection at a time, across every
route, method and status, then times five scrapes of each. It prints, per round, how many
workers have exited, how many ``.db`` files each directory holds, and the median scrape
time; then checks that both count every request sent (folding loses no count).

The machine this runs on is often shared: the numbers are for reading.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from flask import Flask

# bench/ is no package: this script's directory is on sys.path, run as a script or by
# gunicorn with --pythonpath bench.
from overhead import METHODS, STATUSES, many_routes_app  # isort: skip
from server import ROOT, Server, counted_requests, scrape_cost

HOOKS = {
    "flask-observe's hooks": ROOT / "bench" / "gunicorn_hooks.py",
    "mark_process_dead alone": ROOT / "bench" / "gunicorn_hooks_plain.py",
}
KIND = "observe-metrics"


def wsgi(routes: int) -> Flask:
    """The app for gunicorn: ``recycle:wsgi(10)``."""
    return many_routes_app(KIND, routes)


def send(server: Server, requests: int, routes: int, start: int) -> None:
    """*requests* requests, the *start*-th on, going round every route, method and status."""
    every = itertools.cycle(itertools.product(range(routes), METHODS, STATUSES))
    for route, method, status in itertools.islice(every, start, start + requests):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request(method, f"/r{route}/1?status={status}")
            conn.getresponse().read()
        finally:
            conn.close()


def workers_booted(server: Server) -> int:
    """Workers gunicorn has started so far, from its log: the first ones and every
    replacement of one that exited."""
    return server.log_path.read_text(errors="replace").count("Booting worker with pid")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument(
        "--max-requests", type=int, default=100, help="requests a worker serves (100)"
    )
    parser.add_argument("--rounds", type=int, default=8, help="rounds of requests (8)")
    parser.add_argument("--requests", type=int, default=400, help="requests a round (400)")
    parser.add_argument("--routes", type=int, default=10, help="routes of the app (10)")
    args = parser.parse_args(argv)
    print(
        f"gunicorn {args.workers} workers, --max-requests {args.max_requests}; "
        f"{args.routes} routes x {len(METHODS)} methods x {len(STATUSES)} statuses; "
        f"{args.requests} requests a round"
    )
    with tempfile.TemporaryDirectory(prefix="flask-observe-recycle-") as tmp:
        running: dict[str, Server] = {}
        try:
            for n, (label, hooks) in enumerate(HOOKS.items()):
                workdir = Path(tmp) / str(n)
                workdir.mkdir()
                running[label] = Server(
                    KIND,
                    workdir,
                    args.workers,
                    multiprocess=True,
                    collector="http://127.0.0.1:9",  # no tracing in this kind
                    max_requests=args.max_requests,
                    hooks=hooks,
                    app=f"recycle:wsgi({args.routes})",
                )
            for server in running.values():
                server.wait_ready("/r0/1?status=200")
            print(f"{'round':>5} {'requests':>9}" + "".join(f"  {label:>34}" for label in running))
            print(
                f"{'':>5} {'':>9}"
                + "".join(f"  {'workers':>9} {'files':>7} {'scrape ms':>16}" for _ in running)
            )
            total = 0
            first: dict[str, float] = {}
            last: dict[str, float] = {}
            for round_ in range(1, args.rounds + 1):
                for server in running.values():
                    send(server, args.requests, args.routes, total)
                total += args.requests
                time.sleep(0.5)  # the last recycled workers' exits, and their hooks
                row = f"{round_:>5} {total:>9}"
                for label, server in running.items():
                    files, ms = scrape_cost(server)
                    assert ms is not None
                    first.setdefault(label, ms)
                    last[label] = ms
                    exited = workers_booted(server) - args.workers
                    row += f"  {exited:>9} {files:>7} {ms:>16.1f}"
                print(row, flush=True)
            print()
            for label, server in running.items():
                counted = counted_requests(server)
                # Plus the readiness probe of wait_ready.
                verdict = "every one" if counted == total + 1 else f"NOT {total + 1}"
                print(
                    f"{label}: scrape {first[label]:.1f} ms after round 1, "
                    f"{last[label]:.1f} ms after round {args.rounds}; "
                    f"counted {counted:.0f} requests ({verdict})"
                )
        finally:
            for server in running.values():
                server.stop()
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
