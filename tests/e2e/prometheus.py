"""A real Prometheus server for the end-to-end tests: Debian's ``prometheus`` binary on a
free port of 127.0.0.1, with a storage folder of the test's own, stopped by its PID.

Prometheus loads new scrape targets on a five-second timer, so the first sample of a target
is there about six seconds after the start: every wait here polls, within a bound.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar

from .servers import free_port, stop_process, wait_for

T = TypeVar("T")

#: How long Prometheus may take to answer ``/-/ready``.
START_SECONDS = 20.0


def _attempt(check: Callable[[], Optional[T]]) -> Callable[[], Optional[T]]:
    """*check*, with an error (Prometheus not answering yet) read as "not yet"."""

    def attempt() -> Optional[T]:
        try:
            return check()
        except (OSError, ValueError):  # refused, reset, or a half-written answer
            return None

    return attempt


def wait_until(what: str, check: Callable[[], Optional[T]], timeout: float) -> T:
    """:func:`~tests.e2e.servers.wait_for`, trying again when the API does not answer."""
    return wait_for(what, _attempt(check), timeout)


def _config(jobs: Mapping[str, Sequence[str]], rule_files: Sequence[Path], interval: str) -> str:
    """A Prometheus configuration, as JSON (which YAML reads): one job per entry of *jobs*."""
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "static_configs": [{"targets": list(targets)}],
            }
            for job, targets in jobs.items()
        ],
    }
    return json.dumps(config, indent=2)


class PrometheusServer:
    """``with PrometheusServer(binary, folder, {"shop": ["127.0.0.1:8000"]}, [rules]) as p``:
    a Prometheus scraping those targets every *interval* and evaluating *rule_files* as
    often; its HTTP API through :meth:`query` and :meth:`alerts`."""

    def __init__(
        self,
        binary: str,
        folder: Path,
        jobs: Mapping[str, Sequence[str]],
        rule_files: Sequence[Path] = (),
        interval: str = "1s",
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = folder / "prometheus.yml"
        config.write_text(_config(jobs, rule_files, interval))
        self._args = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self._log_path = folder / "prometheus.log"
        self._process: Optional[subprocess.Popen[bytes]] = None

    def __enter__(self) -> PrometheusServer:
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self._args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            wait_until("Prometheus ready", self._ready, START_SECONDS)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        error: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server, by its PID: politely, then for good."""
        if self._process is not None:
            stop_process(self._process)

    def log(self) -> str:
        """What the server has written so far."""
        return self._log_path.read_text(errors="replace")

    def _ready(self) -> Optional[bool]:
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(f"Prometheus exited at start:\n{self.log()}")
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
            return True if response.status == 200 else None

    def _api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus API {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of *expr* now: ``[{"metric": {...}, "value": [t, "v"]}]``."""
        data = self._api("query", query=expr)
        if data["resultType"] != "vector":
            raise AssertionError(f"{expr} is a {data['resultType']}, not a vector")
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> Optional[float]:
        """The single value of *expr* now, or ``None`` when it has no series."""
        result = self.query(expr)
        if not result:
            return None
        (only,) = result
        return float(only["value"][1])

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts pending or firing now, each with ``labels`` and ``state``."""
        alerts: list[dict[str, Any]] = self._api("alerts")["alerts"]
        return alerts

    def alert_state(self, name: str) -> Optional[str]:
        """``"pending"`` or ``"firing"`` for the alert *name*, ``None`` while inactive."""
        states = {a["state"] for a in self.alerts() if a["labels"].get("alertname") == name}
        return "firing" if "firing" in states else "pending" if "pending" in states else None

    def rule_health(self) -> dict[str, str]:
        """Each loaded rule's name and health (``ok``, ``err``, ``unknown``)."""
        groups = self._api("rules")["groups"]
        return {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
