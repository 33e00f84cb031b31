"""gunicorn with four workers: every worker's requests in one scrape, and a killed worker.

The workers share their metrics through prometheus_client's multiprocess files, set up by
the hooks of ``example_app/gunicorn.conf.py``. Requests are sent from several threads, each
on a connection of its own, so that every worker serves some.
"""

from __future__ import annotations

import http.client
import os
import queue
import random
import signal
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import pytest
from prometheus_client.metrics_core import Metric

from .conftest import StartGunicorn
from .servers import HTTP_TIMEOUT, Gunicorn, wait_for

pytestmark = pytest.mark.e2e

Key = tuple[str, str, str]

#: What the tests send: method, path, the status it must get, and its ``endpoint`` label.
MIX = (
    ("GET", "/ok", 200, "/ok"),
    ("GET", "/items/7", 200, "/items/<int:item_id>"),
    ("GET", "/items/0", 404, "/items/<int:item_id>"),
    ("POST", "/items", 201, "/items"),
    ("GET", "/fail", 500, "/fail"),
    ("GET", "/no/such/path", 404, "<unmatched>"),
)


def plan(each: int, seed: int) -> list[tuple[str, str, int, str]]:
    """*each* requests of every kind in :data:`MIX`, in a shuffled order."""
    requests = [entry for entry in MIX for _ in range(each)]
    random.Random(seed).shuffle(requests)
    return requests


def send(
    server: Gunicorn, requests: list[tuple[str, str, int, str]]
) -> tuple[Counter[Key], Counter[int]]:
    """Send *requests* from four threads; check each status. Return how many went to each
    ``(method, endpoint, status)``, and how many each worker served."""

    def one(entry: tuple[str, str, int, str]) -> tuple[Key, int]:
        method, path, status, endpoint = entry
        reply = server.request(method, path, body=b"{}" if method == "POST" else None)
        assert reply.status == status, (method, path, reply.status)
        return (method, endpoint, str(status)), int(reply.headers["x-worker-pid"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, requests))
    return Counter(key for key, _ in results), Counter(pid for _, pid in results)


def counts(families: dict[str, Metric], name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples of family *name* (no suffix), keyed by the values of *labels*."""
    return {
        tuple(sample.labels[label] for label in labels): sample.value
        for sample in families[name].samples
        if sample.name in (name, name + "_total")
    }


def requests_total(families: dict[str, Metric]) -> Counter[Key]:
    found = counts(families, "http_requests", "method", "endpoint", "status")
    return Counter({key: int(value) for key, value in found.items()})


def test_a_scrape_adds_up_the_requests_of_every_worker(start_gunicorn: StartGunicorn) -> None:
    server = start_gunicorn()
    sent, by_worker = send(server, plan(each=25, seed=8))
    assert sum(sent.values()) == 150
    assert len(by_worker) > 1, f"one worker served every request: {by_worker}"

    families = server.scrape()
    assert requests_total(families) == sent
    assert counts(families, "http_request_exceptions", "endpoint", "exception") == {
        ("/fail", "RuntimeError"): 25.0
    }
    by_route: Counter[tuple[str, str]] = Counter()
    for (method, endpoint, _status), count in sent.items():
        by_route[method, endpoint] += count
    assert {
        (sample.labels["method"], sample.labels["endpoint"]): sample.value
        for sample in families["http_request_duration_seconds"].samples
        if sample.name.endswith("_count")
    } == by_route
    in_progress = counts(families, "http_requests_in_progress", "method", "endpoint")
    assert set(in_progress) == set(by_route)
    assert set(in_progress.values()) == {0.0}
    (info,) = families["flask_observe_info"].samples
    assert info.labels["service"] == "e2e"
    assert info.value == 1.0


class SlowRequest(threading.Thread):
    """``GET /slow`` on a connection of its own: reports the worker serving it as soon as the
    headers arrive, then reads the rest, which fails if that worker is killed meanwhile."""

    def __init__(self, port: int, seconds: float, workers: queue.Queue[int]) -> None:
        super().__init__(name="slow-request", daemon=True)
        self._port = port
        self._seconds = seconds
        self._workers = workers
        self.completed = False

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=HTTP_TIMEOUT)
        try:
            conn.request("GET", f"/slow?seconds={self._seconds}")
            response = conn.getresponse()
            self._workers.put(int(response.headers["X-Worker-Pid"]))
            self.completed = response.read() == b"started\ndone\n"
        except (OSError, http.client.HTTPException):
            pass  # the worker serving it was killed
        finally:
            conn.close()


def test_a_killed_worker_loses_no_completed_request_and_leaves_none_in_progress(
    start_gunicorn: StartGunicorn,
) -> None:
    server = start_gunicorn()
    sent, by_worker = send(server, plan(each=20, seed=9))

    # Three workers busy with a slow request each; the fourth serves the scrapes.
    serving: queue.Queue[int] = queue.Queue()
    slow = [SlowRequest(server.port, 4.0, serving) for _ in range(3)]
    for thread in slow:
        thread.start()
    busy = {serving.get(timeout=HTTP_TIMEOUT) for _ in slow}
    assert len(busy) == 3, busy

    def slow_in_progress() -> float:
        return counts(server.scrape(), "http_requests_in_progress", "method", "endpoint").get(
            ("GET", "/slow"), 0.0
        )

    wait_for("three slow requests in progress", lambda: slow_in_progress() == 3.0, 10.0)

    # The victim is killed with a slow request in flight, after serving some of the others.
    victim = max(busy, key=lambda pid: by_worker[pid])
    assert by_worker[victim] > 0, (victim, by_worker)
    workers_before = server.worker_pids()
    assert victim in workers_before
    os.kill(victim, signal.SIGKILL)
    workers_after = server.wait_ready(exclude={victim})
    assert len(workers_after - workers_before) == 1  # gunicorn replaced it

    for thread in slow:
        thread.join(timeout=HTTP_TIMEOUT)
        assert not thread.is_alive()
    assert sorted(thread.completed for thread in slow) == [False, True, True]

    more, _ = send(server, plan(each=10, seed=10))
    expected = sent + more + Counter({("GET", "/slow", "200"): 2})

    families = server.scrape()
    assert requests_total(families) == expected
    in_progress = counts(families, "http_requests_in_progress", "method", "endpoint")
    assert in_progress[("GET", "/slow")] == 0.0
    assert set(in_progress.values()) == {0.0}
    # Why: the dead worker's counters were folded into the archive, its live gauges went.
    files = {path.name for path in Path(server.multiproc_dir).iterdir()}
    assert "counter_archive.db" in files
    assert f"counter_{victim}.db" not in files
    assert f"gauge_livesum_{victim}.db" not in files


def test_recycled_workers_leave_no_pile_of_files_and_lose_no_count(
    start_gunicorn: StartGunicorn,
) -> None:
    """Workers recycled every few requests (``--max-requests``), as a server with a memory
    leak is run: every request is still counted, and the directory holds the live workers'
    files and a few archives, not every worker's that ever lived."""
    server = start_gunicorn(workers=2, args=("--max-requests", "8"))
    seen: set[int] = set()
    sent: Counter[Key] = Counter()
    for round_ in range(6):
        more, by_worker = send(server, plan(each=4, seed=round_))  # 24 requests a round
        sent += more
        seen |= set(by_worker)
    assert len(seen) >= 6, f"too few workers recycled to tell: {seen}"

    def settled() -> Optional[set[str]]:
        live = server.worker_pids()
        names = {path.name for path in Path(server.multiproc_dir).iterdir()}
        stale = [
            n
            for n in names
            if n.endswith(".db")
            and "archive" not in n
            and not any(n.endswith(f"_{pid}.db") for pid in live)
        ]
        return None if stale else names

    names = wait_for("the dead workers' files folded", settled, 15.0)
    db_files = [n for n in names if n.endswith(".db")]
    # Each live worker writes a few kinds of file; the archives are one per kind.
    assert len(db_files) <= 2 * 6 + 6, sorted(db_files)
    assert requests_total(server.scrape()) == sent


def test_gunicorn_refuses_to_start_without_the_multiprocess_directory(
    start_gunicorn: StartGunicorn, tmp_path: Path
) -> None:
    missing = tmp_path / "never-made"
    with pytest.raises(AssertionError, match="PROMETHEUS_MULTIPROC_DIR") as failed:
        start_gunicorn(env={"PROMETHEUS_MULTIPROC_DIR": str(missing)})
    assert "is not a directory" in str(failed.value)
    assert "gunicorn exited" in str(failed.value)


def test_the_example_app_serves_under_its_gunicorn_config(
    start_gunicorn: StartGunicorn, tmp_path: Path
) -> None:
    server = start_gunicorn(
        "example_app:create_app()",
        env={"EXAMPLE_DATABASE_URL": f"sqlite:///{tmp_path / 'orders.sqlite3'}"},
    )
    assert server.request("GET", "/healthz/ready").status == 200
    listed = [server.request("GET", "/orders").status for _ in range(12)]
    assert listed == [200] * 12

    families = server.scrape()
    assert requests_total(families)[("GET", "/orders", "200")] == 12
    assert counts(families, "health_check_status", "check") == {("database",): 1.0}
    assert counts(families, "flask_observe_info", "service", "version") == {
        ("shop", families["flask_observe_info"].samples[0].labels["version"]): 1.0
    }
