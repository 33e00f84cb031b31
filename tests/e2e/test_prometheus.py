"""A real Prometheus scraping a real gunicorn, with the rules ``flask observe rules`` writes.

gunicorn serves the end-to-end app with 4 workers in multiprocess mode; Debian's
``prometheus`` scrapes it every second and evaluates the generated rules as often, with
``HighErrorRate``'s ``for`` shortened to 5 seconds through ``OBSERVE_ALERT_ERROR_FOR``.
Prometheus' HTTP API then says what it saw: every request sent, once, and the alert going
pending, then firing, once more than 5% of the requests fail.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import pytest

from ..conftest import require_binary
from .app import create_app
from .conftest import StartGunicorn
from .prometheus import PrometheusServer, wait_until
from .servers import request

pytestmark = pytest.mark.e2e

#: The rules' selector: the scrape job is the service's name, as in the docs' scrape config.
JOB = "e2e"
#: The first, counted phase: these requests, exactly, 1 in 10 of them a 500.
COUNTED = [("GET", "/ok")] * 60 + [("GET", "/items/0")] * 10 + [("GET", "/fail")] * 8
#: The second phase: traffic with one request in five failing, until the alert fires.
FAILING = [("GET", "/ok")] * 4 + [("GET", "/fail")]
MAX_SECONDS = 45.0


def _rules(folder: Path) -> Path:
    """The rule file for the app, as a user would write it with the CLI."""
    app = create_app({"OBSERVE_ALERT_ERROR_FOR": "5s"})
    result = app.test_cli_runner().invoke(args=["observe", "rules"])
    assert result.exit_code == 0, result.output
    path = folder / "e2e.rules.yml"
    path.write_text(result.output)
    return path


def when(prom: PrometheusServer, state: str) -> Callable[[], Optional[float]]:
    """A check for :func:`wait_until`: the time at which ``HighErrorRate`` is in *state*."""

    def check() -> Optional[float]:
        return time.monotonic() if prom.alert_state("HighErrorRate") == state else None

    return check


def _send(port: int, plan: list[tuple[str, str]]) -> list[int]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda entry: request(port, *entry).status, plan))


def test_prometheus_counts_every_request_and_fires_high_error_rate(
    start_gunicorn: StartGunicorn, tmp_path: Path
) -> None:
    binary = require_binary("prometheus")
    rules = _rules(tmp_path)
    server = start_gunicorn()
    with PrometheusServer(binary, tmp_path, {JOB: [f"127.0.0.1:{server.port}"]}, [rules]) as prom:
        assert set(prom.rule_health().values()) <= {"ok", "unknown"}

        # Every request, as Prometheus sums them over the 4 workers' files.
        statuses = _send(server.port, COUNTED)
        assert sorted(set(statuses)) == [200, 404, 500]
        total = f'sum(http_requests_total{{job="{JOB}"}})'
        wait_until(
            f"{total} == {len(COUNTED)}",
            lambda: prom.value(total) == len(COUNTED) or None,
            timeout=30,
        )
        by_status = {
            r["metric"]["status"]: float(r["value"][1])
            for r in prom.query(f'sum by (status) (http_requests_total{{job="{JOB}"}})')
        }
        assert by_status == {"200": 60.0, "404": 10.0, "500": 8.0}
        assert prom.alert_state("HighErrorRate") is None  # no rate yet: one sample per series

        # 20% of the requests fail from now on: pending first, firing once 'for' has passed.
        stop = threading.Event()

        def traffic() -> None:
            deadline = time.monotonic() + MAX_SECONDS
            while not stop.is_set() and time.monotonic() < deadline:
                _send(server.port, FAILING)

        sender = threading.Thread(target=traffic, daemon=True)
        sender.start()
        try:
            pending_at = wait_until("HighErrorRate pending", when(prom, "pending"), timeout=30)
            firing_at = wait_until("HighErrorRate firing", when(prom, "firing"), timeout=30)
        finally:
            stop.set()
            sender.join(timeout=20)
        assert not sender.is_alive()
        # 'for: 5s', evaluated every second: firing comes about 5 s after pending.
        assert firing_at - pending_at > 3.5
        (alert,) = [a for a in prom.alerts() if a["labels"]["alertname"] == "HighErrorRate"]
        assert alert["labels"]["severity"] == "page"
        assert alert["labels"]["job"] == JOB
        assert 0.05 < float(alert["value"]) <= 1.0
        ratio = prom.value(f'service:http_request_errors_per_requests:ratio_rate5m{{job="{JOB}"}}')
        assert ratio is not None
        assert ratio > 0.05
