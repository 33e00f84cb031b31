"""The console under gunicorn: each page names the worker that answered, and the route
figures are every worker's, from the shared metrics."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import StartGunicorn
from .servers import request

pytestmark = pytest.mark.e2e

#: The e2e app with its console on; gunicorn calls the factory with this literal.
CONSOLE_APP = "tests.e2e.app:create_app({'OBSERVE_CONSOLE_ENABLED': True})"


def test_the_console_shows_every_workers_figures_and_names_its_own(
    start_gunicorn: StartGunicorn,
) -> None:
    server = start_gunicorn(CONSOLE_APP, workers=2)
    paths = ["/ok"] * 30 + ["/fail"] * 10
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda path: request(server.port, "GET", path).status, paths))
    assert statuses.count(200) == 30
    assert statuses.count(500) == 10

    reply = request(server.port, "GET", "/observe/api/routes")
    assert reply.status == 200, reply.text
    data = json.loads(reply.body)
    assert data["worker"]["multiprocess"] is True
    assert data["worker"]["pid"] == int(reply.headers["x-worker-pid"])
    routes = {(r["method"], r["endpoint"]): r for r in data["routes"]}
    assert routes["GET", "/ok"]["requests"] == 30
    assert routes["GET", "/fail"]["error_ratio"] == 1.0
    assert routes["GET", "/ok"]["p99"] is not None
    # Whichever worker answers, its first view (totals, as no window has passed yet in a
    # worker whose history starts then) counts every worker's requests: ask until both have.
    seen = {data["worker"]["pid"]: routes["GET", "/ok"]["requests"]}
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            for reply in pool.map(
                lambda _: request(server.port, "GET", "/observe/api/routes"), range(20)
            ):
                figures = {
                    (r["method"], r["endpoint"]): r for r in json.loads(reply.body)["routes"]
                }
                pid, count = int(reply.headers["x-worker-pid"]), figures["GET", "/ok"]["requests"]
                # The first view a worker served is its largest (the replies come in the
                # order they were asked for, not served in).
                seen[pid] = max(seen.get(pid, 0), count)
            if len(seen) == 2:
                break
    assert len(seen) == 2, seen
    assert set(seen.values()) == {30}, seen
    page = request(server.port, "GET", "/observe/")
    assert f"Worker pid {page.headers['x-worker-pid']}" in page.text
    assert "every worker" in page.text
    # The traces and the lines are the answering worker's own: each page says whose.
    for path in ("/observe/traces", "/observe/logs"):
        page = request(server.port, "GET", path)
        assert page.status == 200, page.text
        assert f"Worker pid {page.headers['x-worker-pid']}" in page.text
