"""/healthz: aggregation, the draft's body, timeouts, the cache, details, built-in checks,
the health_changed signal and the health metrics."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pytest
import redis
from flask import Flask, current_app
from prometheus_client import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from flask_observe import (
    ConfigError,
    HealthCheckError,
    Observe,
    disk_space_check,
    redis_check,
    sqlalchemy_check,
    url_check,
)
from flask_observe.signals import health_changed

from .conftest import make_app, sample_value, scrape, serving

HealthApp = Callable[..., tuple[Flask, Observe]]

#: Fields the draft defines at the top level and in each check object.
TOP_FIELDS = {
    "status",
    "version",
    "releaseId",
    "notes",
    "output",
    "checks",
    "links",
    "serviceId",
    "description",
}
CHECK_FIELDS = {
    "componentId",
    "componentType",
    "observedValue",
    "observedUnit",
    "status",
    "affectedEndpoints",
    "time",
    "output",
    "links",
}


@pytest.fixture
def health_app(registry: CollectorRegistry) -> HealthApp:
    """``health_app(**config)``: the test app and its Observe, details shown and no cache
    unless the config says otherwise."""

    def factory(**config: Any) -> tuple[Flask, Observe]:
        config.setdefault("OBSERVE_HEALTH_DETAILS", "always")
        config.setdefault("OBSERVE_HEALTH_CACHE_SECONDS", 0)
        observe = Observe(registry=registry)
        return make_app(registry, observe, **config), observe

    return factory


def _passes() -> None:
    pass


def _raises() -> None:
    raise ConnectionError("connection refused by db.internal:5432")


def checks_of(response: Any) -> dict[str, dict[str, Any]]:
    """The body's checks, each name with its single object."""
    return {key.split(":")[0]: value[0] for key, value in response.get_json()["checks"].items()}


# -- aggregation, status codes, the body --


@pytest.mark.parametrize(
    ("critical", "other", "status", "code"),
    [
        (_passes, _passes, "pass", 200),
        (_passes, _raises, "warn", 200),
        (_passes, lambda: False, "warn", 200),
        (_raises, _passes, "fail", 503),
        (lambda: False, _passes, "fail", 503),
        (_raises, _raises, "fail", 503),
    ],
)
def test_critical_failures_fail_and_others_warn(
    health_app: HealthApp, critical: Any, other: Any, status: str, code: int
) -> None:
    app, observe = health_app()
    observe.add_health_check("database", critical)
    observe.add_health_check("payments", other, critical=False)
    client = app.test_client()
    for path in ("/healthz", "/healthz/ready"):
        response = client.get(path)
        assert response.status_code == code
        assert response.get_json()["status"] == status


def test_no_checks_is_a_pass(health_app: HealthApp) -> None:
    app, _ = health_app()
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "pass"
    assert response.get_json()["checks"] == {}


def test_live_runs_no_check(health_app: HealthApp) -> None:
    app, observe = health_app()
    calls: list[int] = []
    observe.add_health_check("database", lambda: calls.append(1) or False)
    response = app.test_client().get("/healthz/live")
    assert response.status_code == 200
    assert response.mimetype == "application/health+json"
    assert response.get_json() == {"status": "pass", "serviceId": "shop"}
    assert response.headers["Cache-Control"] == "no-store"
    assert calls == []


def test_body_has_the_fields_of_the_draft(health_app: HealthApp) -> None:
    app, observe = health_app(OBSERVE_SERVICE_VERSION="1.4.2")
    observe.add_health_check("database", _passes, component_type="datastore")
    observe.add_health_check("payments", _raises, critical=False)
    response = app.test_client().get("/healthz")
    assert response.headers["Content-Type"] == "application/health+json"
    body = json.loads(response.get_data(as_text=True))
    assert set(body) <= TOP_FIELDS
    assert body["status"] == "warn"
    assert body["version"] == "1.4.2"
    assert body["serviceId"] == "shop"
    assert set(body["checks"]) == {"database:responseTime", "payments:responseTime"}
    for entries in body["checks"].values():
        assert isinstance(entries, list)
        (entry,) = entries
        assert set(entry) <= CHECK_FIELDS
        assert entry["status"] in ("pass", "fail", "warn")
        assert isinstance(entry["observedValue"], (int, float))
        assert entry["observedValue"] >= 0
        assert entry["observedUnit"] == "ms"
        assert entry["time"].endswith("Z")
        datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    database, payments = checks_of(response).values()
    assert database["componentType"] == "datastore"
    assert database["status"] == "pass"
    assert "output" not in database  # the draft: omitted for "pass"
    assert payments["componentType"] == "component"
    assert payments["status"] == "fail"
    assert payments["output"] == "ConnectionError: connection refused by db.internal:5432"


def test_version_is_left_out_unless_set(health_app: HealthApp) -> None:
    app, _ = health_app()
    assert "version" not in app.test_client().get("/healthz").get_json()


def test_output_is_one_trimmed_line_never_a_traceback(health_app: HealthApp) -> None:
    app, observe = health_app()

    def multiline() -> None:
        raise RuntimeError("first line\n  second line\n" + "x" * 1000)

    def own_message() -> None:
        raise HealthCheckError("queue backlog is 12000")

    def empty() -> None:
        raise KeyError

    observe.add_health_check("multiline", multiline)
    observe.add_health_check("own", own_message)
    observe.add_health_check("empty", empty)
    checks = checks_of(app.test_client().get("/healthz"))
    output = checks["multiline"]["output"]
    assert output.startswith("RuntimeError: first line second line xxx")
    assert "\n" not in output
    assert "Traceback" not in output
    assert len(output) == 300
    assert output.endswith("...")
    assert checks["own"]["output"] == "queue backlog is 12000"
    assert checks["empty"]["output"] == "KeyError"


def test_exclude_skips_checks_without_running_them(health_app: HealthApp) -> None:
    app, observe = health_app()
    runs: list[str] = []

    def tracked(name: str, ok: bool) -> Callable[[], bool]:
        return lambda: runs.append(name) or ok

    observe.add_health_check("database", tracked("database", False))
    observe.add_health_check("cache", tracked("cache", False))
    observe.add_health_check("disk", tracked("disk", True))
    client = app.test_client()
    response = client.get("/healthz/ready?exclude=database&exclude=cache&exclude=nonesuch")
    assert response.status_code == 200
    assert list(checks_of(response)) == ["disk"]
    assert runs == ["disk"]
    assert client.get("/healthz/ready?exclude=cache").status_code == 503


def test_cache_control_matches_the_cache_window(health_app: HealthApp) -> None:
    app, observe = health_app(OBSERVE_HEALTH_CACHE_SECONDS=5, OBSERVE_HEALTH_DETAILS="never")
    observe.add_health_check("database", _passes)
    response = app.test_client().get("/healthz/ready")
    assert response.headers["Cache-Control"] == "max-age=5"


def test_a_check_added_after_init_app_runs_for_every_app(registry: CollectorRegistry) -> None:
    observe = Observe(registry=registry)
    config = {"OBSERVE_HEALTH_DETAILS": "always", "OBSERVE_HEALTH_CACHE_SECONDS": 0}
    first = make_app(registry, observe, **config)
    second = Flask("billing")
    second.config.update(config)
    observe.init_app(second)
    seen: list[str] = []

    @observe.health_check("app_name")
    def app_name() -> None:
        seen.append(current_app.name)  # runs inside the app's context

    assert app_name is not None  # the decorator returns the function
    for app in (first, second):
        response = app.test_client().get("/healthz")
        assert response.status_code == 200
        assert list(checks_of(response)) == ["app_name"]
    assert seen == ["shop", "billing"]


def test_async_checks_run(health_app: HealthApp) -> None:
    app, observe = health_app()

    @observe.health_check("async")
    async def async_check() -> bool:
        return False

    assert checks_of(app.test_client().get("/healthz"))["async"]["output"] == "returned False"


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("bad name", _passes), {}, ValueError, "letters, digits"),
        (("db:time", _passes), {}, ValueError, "letters, digits"),
        (("", _passes), {}, ValueError, "letters, digits"),
        (("db", "SELECT 1"), {}, TypeError, "callable"),
        (("db", _passes), {"timeout": 0}, ValueError, "positive"),
        (("db", _passes), {"timeout": True}, ValueError, "positive"),
        (("db", _passes), {"critical": "yes"}, TypeError, "True or False"),
    ],
)
def test_bad_check_arguments_are_refused(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Observe().add_health_check(*args, **kwargs)


def test_a_name_is_registered_once() -> None:
    observe = Observe()
    observe.add_health_check("database", _passes)
    with pytest.raises(ValueError, match="'database' is already registered"):
        observe.add_health_check("database", _passes)


def test_path_and_switch(health_app: HealthApp) -> None:
    app, _ = health_app(OBSERVE_HEALTH_PATH="/internal/health/")
    client = app.test_client()
    assert client.get("/healthz").status_code == 404
    assert client.get("/internal/health").status_code == 200
    assert client.get("/internal/health/live").status_code == 200
    assert client.get("/internal/health/ready").status_code == 200
    off, _ = health_app(OBSERVE_HEALTH_ENABLED=False)
    assert off.test_client().get("/healthz/ready").status_code == 404
    assert off.extensions["observe"].health is None


# -- timeouts and threads --


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set when the test ends, so that a check waiting on it ends too."""
    event = threading.Event()
    yield event
    event.set()


def test_a_hung_check_times_out_and_never_piles_up_threads(
    health_app: HealthApp, release: threading.Event
) -> None:
    before = set(threading.enumerate())
    app, observe = health_app(OBSERVE_HEALTH_MAX_WORKERS=2)
    calls: list[int] = []
    observe.add_health_check("hung", lambda: calls.append(1) or release.wait(30), timeout=0.2)
    observe.add_health_check("database", _passes)
    client = app.test_client()

    start = time.monotonic()
    response = client.get("/healthz")
    assert time.monotonic() - start < 0.2 + 0.5
    assert response.status_code == 503
    checks = checks_of(response)
    assert checks["hung"]["output"] == "timeout after 0.2 s"
    assert checks["hung"]["observedValue"] == pytest.approx(200)
    assert checks["database"]["status"] == "pass"

    start = time.monotonic()
    for _ in range(20):
        checks = checks_of(client.get("/healthz"))
        assert checks["hung"]["output"].startswith("timeout: still running after")
        assert checks["database"]["status"] == "pass"
    assert time.monotonic() - start < 0.2 + 0.5  # it is not waited for again
    assert calls == [1]  # nor started again
    started = [t for t in threading.enumerate() if t not in before]
    assert len(started) <= app.extensions["observe"].health.max_workers == 2


def test_idle_workers_end_and_come_back(
    health_app: HealthApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flask_observe.health._IDLE_SECONDS", 0.05)
    before = set(threading.enumerate())
    app, observe = health_app()
    observe.add_health_check("exits", lambda: sys.exit(3))
    client = app.test_client()
    assert checks_of(client.get("/healthz"))["exits"]["output"] == "SystemExit: 3"
    (worker,) = [t for t in threading.enumerate() if t not in before]
    worker.join(timeout=2)
    assert not worker.is_alive()
    assert checks_of(client.get("/healthz"))["exits"]["output"] == "SystemExit: 3"


def test_each_check_has_its_own_timeout(health_app: HealthApp, release: threading.Event) -> None:
    app, observe = health_app(OBSERVE_HEALTH_TIMEOUT=0.1)
    observe.add_health_check("default", lambda: release.wait(30))
    observe.add_health_check("patient", lambda: time.sleep(0.3), timeout=1.0)
    start = time.monotonic()
    checks = checks_of(app.test_client().get("/healthz"))
    assert 0.3 <= time.monotonic() - start < 1.0
    assert checks["default"]["output"] == "timeout after 0.1 s"
    assert checks["patient"]["status"] == "pass"


def test_a_check_runs_again_once_its_hung_run_ends(health_app: HealthApp) -> None:
    app, observe = health_app()
    gate = threading.Event()
    observe.add_health_check("slow", lambda: gate.wait(5), timeout=0.1)
    client = app.test_client()
    assert checks_of(client.get("/healthz"))["slow"]["output"] == "timeout after 0.1 s"
    gate.set()
    time.sleep(0.05)
    assert checks_of(client.get("/healthz"))["slow"]["status"] == "pass"


# -- the cache --


def test_concurrent_probes_run_each_check_once_per_window(health_app: HealthApp) -> None:
    app, observe = health_app(OBSERVE_HEALTH_CACHE_SECONDS=60, OBSERVE_HEALTH_DETAILS="never")
    runs: list[str] = []

    def counted(name: str) -> Callable[[], None]:
        def check() -> None:
            runs.append(name)
            time.sleep(0.05)

        return check

    observe.add_health_check("database", counted("database"))
    observe.add_health_check("cache", counted("cache"))

    with serving(app) as port:
        url = f"http://127.0.0.1:{port}/healthz/ready"

        def probe(_: int) -> int:
            with urllib.request.urlopen(url, timeout=10) as response:
                assert json.load(response) == {"status": "pass"}
                return int(response.status)

        with ThreadPoolExecutor(max_workers=100) as pool:
            assert set(pool.map(probe, range(100))) == {200}
    assert sorted(runs) == ["cache", "database"]


def test_a_result_is_kept_for_the_cache_window_only(health_app: HealthApp) -> None:
    app, observe = health_app(OBSERVE_HEALTH_CACHE_SECONDS=0.2)
    runs: list[float] = []
    observe.add_health_check("database", lambda: runs.append(time.monotonic()))
    client = app.test_client()
    first = checks_of(client.get("/healthz"))
    assert checks_of(client.get("/healthz")) == first  # the same result, from the cache
    assert len(runs) == 1
    time.sleep(0.25)
    assert checks_of(client.get("/healthz"))["database"]["time"] >= first["database"]["time"]
    assert len(runs) == 2


# -- details --


@pytest.mark.parametrize(
    ("config", "headers", "code", "shown"),
    [
        ({"OBSERVE_HEALTH_DETAILS": "never"}, {}, 503, False),
        ({"OBSERVE_HEALTH_DETAILS": "never"}, {"Authorization": "Bearer s3cret"}, 503, False),
        ({"OBSERVE_HEALTH_DETAILS": "always"}, {}, 503, True),
        ({"OBSERVE_HEALTH_DETAILS": None}, {}, 503, False),  # no token: never
        ({"OBSERVE_HEALTH_DETAILS": None, "OBSERVE_HEALTH_TOKEN": "s3cret"}, {}, 503, False),
        (
            {"OBSERVE_HEALTH_DETAILS": None, "OBSERVE_HEALTH_TOKEN": "s3cret"},
            {"Authorization": "Bearer s3cret"},
            503,
            True,
        ),
        (
            {"OBSERVE_HEALTH_DETAILS": "token", "OBSERVE_HEALTH_TOKEN": "s3cret"},
            {"Authorization": "bearer s3cret"},
            503,
            True,
        ),
        (
            {"OBSERVE_HEALTH_DETAILS": "token", "OBSERVE_HEALTH_TOKEN": "s3cret"},
            {"Authorization": "Bearer s3cre"},
            401,
            False,
        ),
        (
            {"OBSERVE_HEALTH_DETAILS": "token", "OBSERVE_HEALTH_TOKEN": "s3cret"},
            {"Authorization": "Basic czNjcmV0"},
            401,
            False,
        ),
    ],
)
def test_details_only_for_those_allowed(
    health_app: HealthApp, config: dict[str, Any], headers: dict[str, str], code: int, shown: bool
) -> None:
    app, observe = health_app(**config)
    observe.add_health_check("database", _raises)
    response = app.test_client().get("/healthz", headers=headers)
    assert response.status_code == code
    if code == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert b"s3cret" not in response.data
        assert b"database" not in response.data
    elif shown:
        assert "database" in checks_of(response)
        assert response.headers["Cache-Control"] == "private, max-age=0"
    else:
        assert response.get_json() == {"status": "fail"}


def test_token_details_without_a_token_is_a_config_error(registry: CollectorRegistry) -> None:
    with pytest.raises(ConfigError) as info:
        make_app(registry, OBSERVE_HEALTH_DETAILS="token")
    assert info.value.key == "OBSERVE_HEALTH_DETAILS"
    assert "OBSERVE_HEALTH_TOKEN" in str(info.value)


# -- built-in checks, against real things --


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispose()


def test_sqlalchemy_check_against_sqlite(
    health_app: HealthApp, tmp_path: Path, engines: list[Engine]
) -> None:
    good = create_engine(f"sqlite:///{tmp_path / 'shop.sqlite3'}")
    broken = create_engine(f"sqlite:///{tmp_path / 'missing' / 'shop.sqlite3'}")
    engines.extend((good, broken))
    app, observe = health_app()
    observe.add_health_check("database", sqlalchemy_check(good))
    observe.add_health_check("replica", sqlalchemy_check(lambda: good), critical=False)
    observe.add_health_check("archive", sqlalchemy_check(broken), critical=False)
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    checks = checks_of(response)
    assert checks["database"]["status"] == "pass"
    assert checks["database"]["componentType"] == "datastore"
    assert checks["replica"]["status"] == "pass"
    assert checks["archive"]["status"] == "fail"
    assert checks["archive"]["output"].startswith("OperationalError: ")
    assert "unable to open database file" in checks["archive"]["output"]


def test_sqlalchemy_check_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # import sqlalchemy now fails
    with pytest.raises(ImportError, match=r"flask-observe\[sqlalchemy\]"):
        sqlalchemy_check(object())


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was just bound and closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_url_check_against_a_real_server(health_app: HealthApp) -> None:
    upstream = Flask("upstream")

    @upstream.get("/ok")
    def ok() -> str:
        return "ok"

    @upstream.get("/moved")
    def moved() -> Any:
        return "", 302, {"Location": "/ok"}

    @upstream.get("/broken")
    def broken() -> Any:
        return "down", 500

    app, observe = health_app()
    with serving(upstream) as port:
        base = f"http://127.0.0.1:{port}"
        observe.add_health_check("ok", url_check(f"{base}/ok", timeout=1))
        observe.add_health_check("moved", url_check(f"{base}/moved", timeout=1))
        observe.add_health_check("broken", url_check(f"{base}/broken", timeout=1))
        closed = f"http://127.0.0.1:{_closed_port()}/healthz"
        observe.add_health_check("closed", url_check(closed, timeout=1))
        checks = checks_of(app.test_client().get("/healthz"))
    assert checks["ok"]["status"] == "pass"
    assert checks["moved"]["status"] == "pass"
    assert checks["broken"]["output"] == f"GET {base}/broken answered 500"
    assert checks["closed"]["status"] == "fail"
    assert "Connection refused" in checks["closed"]["output"]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/", "localhost"])
def test_url_check_takes_only_http_urls(url: str) -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        url_check(url)


def test_disk_space_check_against_tmp_path(health_app: HealthApp, tmp_path: Path) -> None:
    app, observe = health_app()
    observe.add_health_check("any", disk_space_check(tmp_path, min_free_ratio=0.0))
    observe.add_health_check("all", disk_space_check(str(tmp_path), min_free_ratio=1.0))
    checks = checks_of(app.test_client().get("/healthz"))
    assert checks["any"]["status"] == "pass"
    assert checks["any"]["componentType"] == "system"
    assert checks["all"]["status"] == "fail"
    assert f"free on {tmp_path}, below the 100.0% required" in checks["all"]["output"]


@pytest.mark.parametrize("ratio", [-0.1, 1.5, "10%", True])
def test_disk_space_check_takes_a_ratio(ratio: Any) -> None:
    with pytest.raises(ValueError, match="from 0 to 1"):
        disk_space_check("/", ratio)


class _RespHandler(socketserver.StreamRequestHandler):
    """Answers Redis' protocol (RESP2): PONG to PING, OK to anything else."""

    def handle(self) -> None:
        while line := self.rfile.readline():
            words = []
            for _ in range(int(line[1:])):
                length = int(self.rfile.readline()[1:])
                words.append(self.rfile.read(length + 2)[:-2])
            self.wfile.write(b"+PONG\r\n" if words[0].upper() == b"PING" else b"+OK\r\n")


@contextlib.contextmanager
def _resp_server() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _RespHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_redis_check_with_redis_py(health_app: HealthApp) -> None:
    app, observe = health_app()
    with _resp_server() as port:
        # RESP2, which the stand-in speaks: RESP3 would open with a HELLO handshake. No
        # retries, which would back off past the check's timeout.
        options: dict[str, Any] = {
            "socket_timeout": 1,
            "protocol": 2,
            "retry": Retry(NoBackoff(), 0),
        }
        up = redis.Redis(port=port, **options)
        down = redis.Redis(port=_closed_port(), **options)
        observe.add_health_check("up", redis_check(up))
        observe.add_health_check("down", redis_check(down))
        try:
            checks = checks_of(app.test_client().get("/healthz"))
        finally:
            up.close()
            down.close()
    assert checks["up"]["status"] == "pass"
    assert checks["up"]["componentType"] == "datastore"
    assert checks["down"]["output"].startswith("ConnectionError: ")


def test_redis_check_needs_a_client() -> None:
    with pytest.raises(TypeError, match=r"ping\(\)"):
        redis_check("redis://localhost")


# -- the signal, the metrics, the start-up grace --


class Switch:
    """A check whose result the test sets."""

    def __init__(self) -> None:
        self.ok = True

    def __call__(self) -> None:
        if not self.ok:
            raise HealthCheckError("switched off")


def test_health_changed_fires_exactly_on_transitions(health_app: HealthApp) -> None:
    app, observe = health_app()
    switch = Switch()
    observe.add_health_check("switch", switch)
    observe.add_health_check("steady", _passes)
    changes: list[tuple[Any, dict[str, Any]]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        changes.append((sender, kwargs))

    client = app.test_client()
    with health_changed.connected_to(receiver, app):
        for ok in (True, True, False, False, True, True):
            switch.ok = ok
            client.get("/healthz")
    assert changes == [
        (
            app,
            {
                "check": "switch",
                "old_status": "pass",
                "new_status": "fail",
                "output": "switched off",
            },
        ),
        (app, {"check": "switch", "old_status": "fail", "new_status": "pass", "output": None}),
    ]


def test_a_failing_receiver_is_logged_and_the_probe_goes_on(
    health_app: HealthApp, caplog: pytest.LogCaptureFixture
) -> None:
    app, observe = health_app()
    switch = Switch()
    observe.add_health_check("switch", switch)
    later: list[str] = []

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    def other(sender: Any, **kwargs: Any) -> None:
        later.append(kwargs["new_status"])

    client = app.test_client()
    client.get("/healthz")
    switch.ok = False
    with (
        caplog.at_level(logging.INFO, logger="flask_observe"),
        health_changed.connected_to(broken),
        health_changed.connected_to(other),
    ):
        assert client.get("/healthz").status_code == 503
    assert later == ["fail"]
    messages = [r.getMessage() for r in caplog.records]
    assert "Health check switch is failing: switched off" in messages
    assert any("receiver of the health-changed signal failed" in m for m in messages)


def test_metrics_match_the_last_results(health_app: HealthApp) -> None:
    app, observe = health_app()
    switch = Switch()
    observe.add_health_check("switch", switch)
    observe.add_health_check("slow", lambda: time.sleep(0.02))
    client = app.test_client()
    for ok in (True, False):
        switch.ok = ok
        checks = checks_of(client.get("/healthz"))
        families = scrape(client)
        status, duration = (
            families["health_check_status"],
            families["health_check_duration_seconds"],
        )
        assert sample_value(status, check="switch") == (1.0 if ok else 0.0)
        assert sample_value(status, check="slow") == 1.0
        for name in ("switch", "slow"):
            seconds = sample_value(duration, check=name)
            assert seconds == pytest.approx(checks[name]["observedValue"] / 1000, abs=1e-6)
        assert sample_value(duration, check="slow") >= 0.02  # type: ignore[operator]


def test_apps_on_one_registry_share_the_health_families(registry: CollectorRegistry) -> None:
    observe = Observe(registry=registry)
    observe.add_health_check("database", _passes)
    apps = [make_app(registry, observe) for _ in range(2)]
    apps.append(make_app(registry))  # another Observe, the same registry
    for app in apps:
        assert app.test_client().get("/healthz").status_code == 200
    assert registry.get_sample_value("health_check_status", {"check": "database"}) == 1.0


def test_startup_grace_holds_readiness_until_every_check_passes(health_app: HealthApp) -> None:
    app, observe = health_app(OBSERVE_HEALTH_STARTUP_GRACE=0.3)
    switch = Switch()
    switch.ok = False
    observe.add_health_check("warming", switch, critical=False)
    client = app.test_client()
    response = client.get("/healthz/ready")
    assert response.status_code == 503
    assert response.get_json()["output"] == "starting"
    assert client.get("/healthz/live").status_code == 200
    time.sleep(0.35)
    response = client.get("/healthz/ready")  # the grace is over: a warning, as usual
    assert response.status_code == 200
    assert response.get_json()["status"] == "warn"


def test_startup_grace_ends_once_every_check_passes(health_app: HealthApp) -> None:
    app, observe = health_app(OBSERVE_HEALTH_STARTUP_GRACE=60)
    switch = Switch()
    observe.add_health_check("warming", switch, critical=False)
    client = app.test_client()
    assert client.get("/healthz/ready").status_code == 200
    switch.ok = False
    response = client.get("/healthz/ready")
    assert response.status_code == 200
    assert response.get_json()["status"] == "warn"
    assert "output" not in response.get_json()
