"""Throughput and tail latency through a real server: gunicorn with 4 workers, load from wrk.

Run with ``make bench-server`` (or ``python bench/server.py --help``); it needs ``wrk`` on the
PATH (Debian package ``wrk``). The apps are those of ``bench/overhead.py``, built by its own
``one_route_app``, one kind per gunicorn:

- bare Flask;
- flask-observe in full: metrics, the JSON access log and native request spans, every
  request traced; and the same tracing one request in ten;
- the peer stack: prometheus-flask-exporter, opentelemetry-instrumentation-flask and an
  access line written by hand through python-json-logger;
- bare Flask with an SDK span per request and nothing else: what a request span costs at
  the least, whoever makes it.

Every tracing kind exports its spans over OTLP/HTTP, as in production, to the collector
stand-in of ``bench/collector.py`` (a process of its own): flask-observe through the provider
and exporter it makes, the others through the SDK's batch processor and OTLP exporter.

As in production under gunicorn, every server runs with ``PROMETHEUS_MULTIPROC_DIR`` set (a
fresh directory each), so the metrics of both instrumented kinds are kept in
prometheus_client's multiprocess files; ``--no-multiprocess`` measures them in memory, as one
process would. Log lines go to ``/dev/null`` (the workers' standard error), gunicorn's own log
to a temporary file. The servers run side by side, idle but for the one under load; each is
warmed up once, then every round loads each for ``--seconds``, in a shuffled order, with
``wrk`` on ``--connections`` (8: two per worker). wrk's requests per second and 99th percentile
latency are printed per round, with the CPU time the workers spent per request (from
``/proc``), then the medians and two ratios to bare Flask: wrk's throughput, paired round by
round, and the capacity the CPU time per request gives, which the rest of the machine's load
hardly moves.

The machine this runs on is often shared: the numbers are for reading, and the exit status
is 0 whatever they are.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from flask import Flask

# bench/ is no package: this script's directory is on sys.path, run as a script or by
# gunicorn with --pythonpath bench.
from collector import Collector  # isort: skip
from overhead import KINDS as ALL_KINDS
from overhead import LABELS, Kind, one_route_app, service_of

ROOT = Path(__file__).resolve().parents[1]
KINDS: tuple[Kind, ...] = ("bare", "observe-full", "observe-sampled", "sdk-span", "peer")
PATH = "/orders/42"
#: The share of bare Flask's throughput flask-observe in full must keep, tracing every
#: request and one in ten.
MIN_THROUGHPUT_SHARE = {"observe-full": 0.80, "observe-sampled": 0.90}
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def wsgi(kind: Kind) -> Flask:
    """The app of *kind*, for gunicorn: ``server:wsgi('observe-full')``."""
    app, _tracing = one_route_app(kind)
    return app


@dataclass
class Result:
    requests_per_second: float
    p99_ms: float
    requests: int
    #: CPU time the workers spent per request, in microseconds (0 until measured).
    cpu_us: float = 0.0


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(output: str) -> Result:
    """Requests per second, the 99th percentile latency and the request count from wrk's
    ``--latency`` report."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\b", output, re.MULTILINE)
    count = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    if not (rate and p99 and count):
        raise RuntimeError(f"cannot read wrk's report:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"the server answered {errors.group(1)} requests with errors")
    return Result(
        float(rate.group(1)), float(p99.group(1)) * _UNITS[p99.group(2)], int(count.group(1))
    )


class Server:
    """gunicorn serving one kind, on a socket bound here to a free port of 127.0.0.1."""

    def __init__(
        self,
        kind: Kind,
        workdir: Path,
        workers: int,
        multiprocess: bool,
        collector: str,
        max_requests: int = 0,
        hooks: Path = ROOT / "bench" / "gunicorn_hooks.py",
        app: Optional[str] = None,
    ) -> None:
        self.kind = kind
        self.files: Optional[Path] = None
        env = dict(os.environ)
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        # gunicorn >= 25.1 opens a control socket there, else in ~/.gunicorn, shared by all.
        env["XDG_RUNTIME_DIR"] = str(workdir)
        if multiprocess:
            files = self.files = workdir / f"multiproc-{kind}"
            files.mkdir()
            env["PROMETHEUS_MULTIPROC_DIR"] = str(files)
        self.log_path = workdir / f"gunicorn-{kind}.log"
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1024)
            self.port: int = listener.getsockname()[1]
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--workers",
                    str(workers),
                    "--bind",
                    f"fd://{listener.fileno()}",
                    "--backlog",
                    "1024",
                    # The hooks that fold a dead worker's files, as in production.
                    "--config",
                    str(hooks),
                    "--max-requests",
                    str(max_requests),
                    "--error-logfile",
                    str(self.log_path),
                    "--pythonpath",
                    str(ROOT / "bench"),
                    app or f"server:wsgi({kind!r})",
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,  # where the apps' log lines go
                pass_fds=(listener.fileno(),),
            )

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def wait_ready(self, path: str = PATH) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn for {self.kind} exited:\n{self.log_path.read_text()}")
            with contextlib.suppress(OSError):
                if self.get(path)[0] == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn for {self.kind} did not answer in {START_TIMEOUT} s")

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after a bound, and wait."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def servers(
    kinds: tuple[Kind, ...],
    workers: int,
    multiprocess: bool,
    collector: str,
    max_requests: int = 0,
) -> Iterator[dict[Kind, Server]]:
    with tempfile.TemporaryDirectory(prefix="flask-observe-bench-") as tmp:
        started: dict[Kind, Server] = {}
        try:
            for kind in kinds:
                started[kind] = Server(
                    kind, Path(tmp), workers, multiprocess, collector, max_requests
                )
            for server in started.values():
                server.wait_ready()
            yield started
        finally:
            for server in started.values():
                server.stop()


def workers_cpu_seconds(master: int) -> float:
    """User and system CPU time of the live children of *master* so far, from ``/proc``."""
    ticks = 0
    for task in Path(f"/proc/{master}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):
                    fields = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()
                    ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def load(wrk_path: str, server: Server, seconds: float, connections: int) -> Result:
    """Load *server* with wrk; its result, with the CPU the workers spent per request."""
    before = workers_cpu_seconds(server.process.pid)
    result = wrk(wrk_path, server.port, seconds, connections)
    spent = workers_cpu_seconds(server.process.pid) - before
    result.cpu_us = spent / max(result.requests, 1) * 1e6
    return result


def wrk(wrk_path: str, port: int, seconds: float, connections: int) -> Result:
    command = [
        wrk_path,
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{max(1, round(seconds))}s",
        "--latency",
        f"http://127.0.0.1:{port}{PATH}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=True)
    return parse_wrk(done.stdout)


def scrape_cost(server: Server) -> tuple[int, Optional[float]]:
    """The ``.db`` files in *server*'s multiprocess directory, and the median of five
    ``GET /metrics`` in milliseconds (``None`` for a kind that serves none)."""
    assert server.files is not None
    files = len(list(server.files.glob("*.db")))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        status, _body = server.get("/metrics")
        if status != 200:
            return files, None
        times.append((time.perf_counter() - start) * 1000)
    return files, statistics.median(times)


def counted_requests(server: Server) -> Optional[float]:
    """``sum(http_requests_total)`` from flask-observe's ``/metrics``: every worker's."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = server.get("/metrics")
    if status != 200:
        return None
    return sum(
        sample.value
        for family in text_string_to_metric_families(body.decode())
        if family.name == "http_requests"
        for sample in family.samples
        if sample.name == "http_requests_total"
    )


def _verdict(share: float, limit: float) -> str:
    return "met" if share >= limit else "NOT met"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per run (5)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="warm-up of each server, once (2)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of every kind (3)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (4)")
    parser.add_argument("--connections", type=int, default=8, help="wrk's open connections (8)")
    parser.add_argument(
        "--no-multiprocess",
        dest="multiprocess",
        action="store_false",
        help="leave PROMETHEUS_MULTIPROC_DIR unset: metrics in each worker's memory",
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=ALL_KINDS,
        default=list(KINDS),
        metavar="KIND",
        help=f"apps to serve, of bench/overhead.py's: {', '.join(ALL_KINDS)} "
        f"(default: {' '.join(KINDS)}); bare is always one",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=0,
        help="recycle each worker after this many requests, as gunicorn's option (0: never)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    kinds: tuple[Kind, ...] = ("bare", *(k for k in dict.fromkeys(args.kinds) if k != "bare"))
    wrk_path = shutil.which("wrk")
    if wrk_path is None:
        print("bench/server.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 2

    mode = "multiprocess files" if args.multiprocess else "in memory"
    print(
        f"gunicorn {args.workers} workers (sync), wrk 1 thread {args.connections} connections, "
        f"{args.seconds:g} s a run, {args.rounds} rounds; metrics {mode}; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    rng = random.Random(args.seed)
    results: dict[Kind, list[Result]] = {kind: [] for kind in kinds}
    counted = None
    with (
        Collector() as collector,
        servers(kinds, args.workers, args.multiprocess, collector.endpoint) as running,
    ):
        warmed = {
            kind: wrk(wrk_path, running[kind].port, args.warmup, args.connections) for kind in kinds
        }
        for round_ in range(1, args.rounds + 1):
            order = list(kinds)
            rng.shuffle(order)
            for kind in order:
                result = load(wrk_path, running[kind], args.seconds, args.connections)
                results[kind].append(result)
                print(
                    f"  round {round_}  {LABELS[kind]:<30} {result.requests_per_second:>9.1f} "
                    f"req/s  p99 {result.p99_ms:>7.2f} ms  {result.cpu_us:>6.0f} us CPU/request"
                )
        scrapes = {kind: scrape_cost(server) for kind, server in running.items() if server.files}
        if "observe-full" in running:
            counted = counted_requests(running["observe-full"])
            sent = warmed["observe-full"].requests + sum(
                r.requests for r in results["observe-full"]
            )
        for server in running.values():
            server.stop()  # the workers flush their spans as they exit
        spans = collector.counts()

    # Two ratios to bare Flask. wrk's throughput, each round to the same round's bare
    # Flask so that a slow moment of a shared machine weighs on both sides; and the capacity
    # the workers' CPU time per request gives (bare's over the kind's), which other load on
    # the machine hardly moves, and which is what a server whose clients are elsewhere has.
    ratios = {
        kind: [
            r.requests_per_second / b.requests_per_second
            for r, b in zip(results[kind], results["bare"])
        ]
        for kind in kinds
    }
    cpu = {kind: statistics.median(r.cpu_us for r in results[kind]) for kind in kinds}
    print()
    heading = f"median of {args.rounds} rounds"
    print(
        f"{heading:<30} {'req/s':>9} {'p99 ms':>8} {'vs bare':>8} {'(range)':>11}"
        f" {'CPU us/req':>11} {'capacity':>9}"
    )
    for kind in kinds:
        rate = statistics.median(r.requests_per_second for r in results[kind])
        p99 = statistics.median(r.p99_ms for r in results[kind])
        ratio = statistics.median(ratios[kind])
        spread = f"{min(ratios[kind]):.2f}-{max(ratios[kind]):.2f}" if kind != "bare" else ""
        print(
            f"{LABELS[kind]:<30} {rate:>9.1f} {p99:>8.2f} {ratio:>8.2f} {spread:>11}"
            f" {cpu[kind]:>11.0f} {cpu['bare'] / cpu[kind]:>9.2f}"
        )
    print()
    for kind, limit in MIN_THROUGHPUT_SHARE.items():
        if kind not in ratios:
            continue
        by_wrk = statistics.median(ratios[kind])
        by_cpu = cpu["bare"] / cpu[kind]
        print(
            f"target: {LABELS[kind]} keeps >= {limit:.0%} of bare Flask's throughput: "
            f"{by_wrk:.0%} by wrk ({_verdict(by_wrk, limit)}), "
            f"{by_cpu:.0%} by the workers' CPU time ({_verdict(by_cpu, limit)})"
        )
    for kind, (files, ms) in scrapes.items():
        if ms is not None:
            print(f"{LABELS[kind]}: GET /metrics {ms:.1f} ms over {files} multiprocess files")
    traced = {kind: spans[service_of(kind)] for kind in kinds if service_of(kind) in spans}
    if traced:
        print(
            "spans the collector received: "
            + ", ".join(f"{LABELS[kind]} {count}" for kind, count in traced.items())
        )
    if counted is not None:
        whose = "over all its workers" if args.multiprocess else "in the one worker scraped"
        print(
            f"flask-observe's /metrics counted {counted:.0f} requests {whose}; wrk completed "
            f"{sent} (plus the readiness probe, and any cut off by a run's end)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
