"""Health checks that hang or fail strangely never keep the others from running in time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from flask_observe import Observe

from ..conftest import make_app


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set when the test ends, so that the hung checks end too."""
    event = threading.Event()
    yield event
    event.set()


def _app(**config: Any) -> tuple[Any, Observe]:
    config.setdefault("OBSERVE_HEALTH_DETAILS", "always")
    config.setdefault("OBSERVE_HEALTH_CACHE_SECONDS", 0)
    registry = CollectorRegistry()
    observe = Observe(registry=registry)
    return make_app(registry, observe, **config), observe


def _checks(response: Any) -> dict[str, dict[str, Any]]:
    return {key.split(":")[0]: value[0] for key, value in response.get_json()["checks"].items()}


def test_hung_checks_never_starve_a_quick_one(release: threading.Event) -> None:
    """Two threads, four hung checks: the quick check still passes on every probe."""
    before = set(threading.enumerate())
    app, observe = _app(OBSERVE_HEALTH_MAX_WORKERS=2)
    for n in range(4):
        observe.add_health_check(f"hung{n}", lambda: release.wait(30), timeout=0.2)
    observe.add_health_check("quick", lambda: None, timeout=0.5)
    client = app.test_client()
    for _ in range(5):
        start = time.monotonic()
        checks = _checks(client.get("/healthz"))
        assert time.monotonic() - start < 0.5 + 0.5
        assert checks["quick"]["status"] == "pass", checks["quick"]
        for n in range(4):
            assert checks[f"hung{n}"]["status"] == "fail"
    # Each hung check holds one thread, and the pool stays within its size besides.
    started = [t for t in threading.enumerate() if t not in before]
    assert len(started) <= 2 + 4


def test_a_check_that_waits_for_a_thread_says_so(release: threading.Event) -> None:
    app, observe = _app(OBSERVE_HEALTH_MAX_WORKERS=1)
    observe.add_health_check("hung", lambda: release.wait(30), timeout=5)
    observe.add_health_check("queued", lambda: None, timeout=0.2)
    checks = _checks(app.test_client().get("/healthz"))
    # The hung check is within its 5 s and holds the only thread: the other never started.
    assert checks["queued"]["output"] == "timeout after 0.2 s waiting for a thread"


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot say")


def _unprintable() -> None:
    raise Unprintable


def test_an_exception_that_cannot_be_printed_fails_its_check_in_one_line() -> None:
    app, observe = _app(OBSERVE_HEALTH_MAX_WORKERS=1)
    observe.add_health_check("strange", _unprintable, timeout=1)
    observe.add_health_check("quick", lambda: None, timeout=1)
    client = app.test_client()
    for _ in range(5):  # the one thread survives each of them
        checks = _checks(client.get("/healthz"))
        assert checks["strange"]["output"] == "<unprintable Unprintable>"
        assert checks["quick"]["status"] == "pass"
