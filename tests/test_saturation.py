"""Saturation: pool gauges from a real SQLAlchemy QueuePool on an SQLite file, queue depth
from a real ``queue.Queue``, and the process figures."""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy import create_engine, exc, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from flask_observe import Observe

from .conftest import make_app, sample_value, scrape

EngineFactory = Callable[..., Engine]

LINUX_PROC = os.path.exists("/proc/self/stat")


@pytest.fixture
def engine_factory(tmp_path: Path) -> Iterator[EngineFactory]:
    """``engine_factory(**kwargs)``: an engine on an SQLite file, disposed after the test."""
    engines: list[Engine] = []

    def factory(**kwargs: Any) -> Engine:
        url = kwargs.pop("url", f"sqlite:///{tmp_path / 'pool.sqlite3'}")
        engine = create_engine(url, **kwargs)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.dispose()


class Holders:
    """Threads that each check a connection out and hold it until released."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._release = threading.Event()
        self._threads: list[threading.Thread] = []
        self._holding = threading.Semaphore(0)
        self.errors: list[BaseException] = []

    def _hold(self) -> None:
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                self._holding.release()
                self._release.wait(10)
        except BaseException as e:  # pragma: no cover - reported by the test
            self.errors.append(e)
            self._holding.release()

    def hold(self, count: int) -> None:
        """Start *count* threads and return once each holds its connection."""
        for _ in range(count):
            thread = threading.Thread(target=self._hold, name="pool-holder")
            thread.start()
            self._threads.append(thread)
        for _ in range(count):
            assert self._holding.acquire(timeout=10)
        assert not self.errors

    def release(self) -> None:
        self._release.set()
        for thread in self._threads:
            thread.join(timeout=10)


@contextlib.contextmanager
def holding(engine: Engine, count: int) -> Iterator[Holders]:
    holders = Holders(engine)
    try:
        holders.hold(count)
        yield holders
    finally:
        holders.release()


def pool_values(app: Flask, pool: str = "orders") -> tuple[Optional[float], Optional[float]]:
    families = scrape(app.test_client())
    return (
        sample_value(families["db_pool_connections_in_use"], pool=pool),
        sample_value(families["db_pool_connections_max"], pool=pool),
    )


def wait_bucket(registry: CollectorRegistry, le: str, pool: str = "orders") -> float:
    value = registry.get_sample_value("db_pool_wait_seconds_bucket", {"pool": pool, "le": le})
    return value or 0.0


def failures(registry: CollectorRegistry, reason: str, pool: str = "orders") -> Optional[float]:
    labels = {"pool": pool, "reason": reason}
    return registry.get_sample_value("db_pool_checkout_failures_total", labels)


# -- pools --


def tracking(registry: CollectorRegistry, engine: Engine) -> Flask:
    """The test app on *registry*, its Observe object tracking *engine* as ``orders``."""
    observe = Observe(registry=registry)
    app = make_app(registry, observe)
    observe.track_pool(engine, "orders")
    return app


def test_three_of_five_connections_held_in_threads_are_in_use(
    engine_factory: EngineFactory, registry: CollectorRegistry
) -> None:
    engine = engine_factory(pool_size=5, max_overflow=0)
    app = tracking(registry, engine)
    with holding(engine, 3):
        assert pool_values(app) == (3.0, 5.0)
    assert pool_values(app) == (0.0, 5.0)


def test_an_exhausted_pool_times_out_and_the_wait_and_failure_are_recorded(
    engine_factory: EngineFactory, registry: CollectorRegistry
) -> None:
    engine = engine_factory(pool_size=2, max_overflow=1, pool_timeout=0.3)
    app = tracking(registry, engine)
    assert failures(registry, "timeout") == 0.0
    with holding(engine, 3):
        assert pool_values(app) == (3.0, 3.0)
        started = time.perf_counter()
        with pytest.raises(exc.TimeoutError):
            engine.connect()
        waited = time.perf_counter() - started
    assert failures(registry, "timeout") == 1.0
    assert failures(registry, "error") == 0.0
    assert wait_bucket(registry, "+Inf") == 4.0
    # The three that found a free connection were quick; the fourth waited the timeout.
    assert wait_bucket(registry, "0.25") == 3.0
    total = registry.get_sample_value("db_pool_wait_seconds_sum", {"pool": "orders"}) or 0.0
    assert 0.3 <= total <= waited + 1.0


def test_a_checkout_that_queues_for_a_connection_is_timed_until_it_gets_one(
    engine_factory: EngineFactory, registry: CollectorRegistry
) -> None:
    """What a pair of connect and checkout events could not see: the time in the queue."""
    engine = engine_factory(pool_size=1, max_overflow=0, pool_timeout=10)
    tracking(registry, engine)
    got: list[Connection] = []
    with holding(engine, 1) as holders:
        waiter = threading.Thread(target=lambda: got.append(engine.connect()), name="waiter")
        waiter.start()
        time.sleep(0.3)
        assert not got
        holders.release()
        waiter.join(timeout=10)
    got[0].close()
    assert wait_bucket(registry, "+Inf") == 2.0
    assert wait_bucket(registry, "0.25") == 1.0  # the holder's; the waiter's took >= 0.3 s
    assert failures(registry, "timeout") == 0.0


def test_a_connection_that_cannot_be_opened_is_a_failed_checkout(
    engine_factory: EngineFactory, registry: CollectorRegistry, tmp_path: Path
) -> None:
    engine = engine_factory(url=f"sqlite:///{tmp_path / 'missing' / 'no.sqlite3'}")
    app = tracking(registry, engine)
    with pytest.raises(exc.OperationalError):
        engine.connect()
    assert failures(registry, "error") == 1.0
    assert failures(registry, "timeout") == 0.0
    assert wait_bucket(registry, "+Inf") == 1.0
    assert pool_values(app) == (0.0, 15.0)  # SQLAlchemy's default 5 + 10 overflow


def test_tracking_carries_over_to_the_pool_dispose_makes(
    engine_factory: EngineFactory, registry: CollectorRegistry
) -> None:
    engine = engine_factory(pool_size=3, max_overflow=0)
    app = tracking(registry, engine)
    old_pool = engine.pool
    with engine.connect():
        engine.dispose()  # the held connection belongs to the old pool, still in use
        with engine.connect():
            assert pool_values(app) == (2.0, 3.0)
    assert pool_values(app) == (0.0, 3.0)
    assert wait_bucket(registry, "+Inf") == 2.0
    # The held connection went back to the old pool, which nothing disposes of: close it
    # here, not in the garbage collector (Python 3.13 warns of an unclosed SQLite database).
    old_pool.dispose()


def test_unbounded_pools_have_an_infinite_max(
    engine_factory: EngineFactory, registry: CollectorRegistry
) -> None:
    observe = Observe(registry=registry)
    app = make_app(registry, observe)
    observe.track_pool(engine_factory(max_overflow=-1), "overflowing")
    observe.track_pool(engine_factory(poolclass=NullPool), "null")
    for name in ("overflowing", "null"):
        in_use, limit = pool_values(app, name)
        assert in_use == 0.0
        assert limit is not None
        assert math.isinf(limit)


def test_a_detached_connection_is_no_longer_in_use(
    engine_factory: EngineFactory, registry: CollectorRegistry
) -> None:
    engine = engine_factory(pool_size=2, max_overflow=0)
    app = tracking(registry, engine)
    with engine.connect() as connection:
        connection.detach()
        assert pool_values(app) == (0.0, 2.0)


def test_pools_tracked_before_or_after_init_app_reach_every_app_of_the_object(
    engine_factory: EngineFactory, registry: CollectorRegistry
) -> None:
    engine = engine_factory(pool_size=4, max_overflow=0)
    observe = Observe(registry=registry)
    observe.track_pool(engine, "before")
    first, second = make_app(registry, observe), make_app(registry, observe)
    observe.track_pool(engine, "after")
    Observe(registry=registry).init_app(Flask("unrelated"))  # no family made twice
    with engine.connect():
        for app in (first, second):
            in_use = scrape(app.test_client())["db_pool_connections_in_use"]
            assert sample_value(in_use, pool="before") == 1.0
            assert sample_value(in_use, pool="after") == 1.0


def test_a_pool_tracked_for_one_app_goes_away_with_it(
    engine_factory: EngineFactory, registry: CollectorRegistry
) -> None:
    engine = engine_factory(pool_size=2, max_overflow=0)
    observe = Observe(registry=registry)
    app = make_app(registry, observe)
    observe.track_pool(engine, "mine", app=app)
    assert registry.get_sample_value("db_pool_connections_max", {"pool": "mine"}) == 2.0
    del app
    gc.collect()
    assert registry.get_sample_value("db_pool_connections_max", {"pool": "mine"}) is None


def test_two_apps_tracking_the_same_name_export_the_newest_and_warn(
    engine_factory: EngineFactory, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    observe = Observe(registry=registry)
    old, new = make_app(registry, observe), make_app(registry, observe)
    observe.track_pool(engine_factory(pool_size=2, max_overflow=0), "orders", app=old)
    observe.track_pool(engine_factory(pool_size=7, max_overflow=0), "orders", app=new)
    with caplog.at_level(logging.WARNING, logger="flask_observe"):
        for _ in range(2):
            assert pool_values(old) == (0.0, 7.0)
    assert sum("track a pool named 'orders'" in m for m in caplog.messages) == 1


def test_track_pool_refuses_bad_arguments(
    engine_factory: EngineFactory, registry: CollectorRegistry
) -> None:
    observe = Observe(registry=registry)
    engine = engine_factory()
    observe.track_pool(engine, "orders")
    with pytest.raises(ValueError, match="already tracked"):
        observe.track_pool(engine, "orders")
    with pytest.raises(ValueError, match="non-empty string"):
        observe.track_pool(engine, "")
    with pytest.raises(ValueError, match="non-empty string"):
        observe.track_pool(engine, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SQLAlchemy Engine"):
        observe.track_pool("sqlite://", "text")
    with pytest.raises(RuntimeError, match="not set up"):
        observe.track_pool(engine, "orphan", app=Flask("orphan"))


def test_an_engine_that_is_gone_leaves_the_metrics(registry: CollectorRegistry) -> None:
    observe = Observe(registry=registry)
    app = make_app(registry, observe)
    engine = create_engine("sqlite://")
    observe.track_pool(engine, "gone")
    assert pool_values(app, "gone")[1] is not None
    engine.dispose()
    del engine
    gc.collect()
    assert "db_pool_connections_max" not in scrape(app.test_client())


# -- Flask-SQLAlchemy --


def _flask_sqlalchemy_app(
    tmp_path: Path, registry: CollectorRegistry, *, db_first: bool = True, **config: Any
) -> tuple[Flask, SQLAlchemy]:
    app = Flask("shop")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'default.sqlite3'}",
        SQLALCHEMY_BINDS={"reports": f"sqlite:///{tmp_path / 'reports.sqlite3'}"},
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 3, "max_overflow": 1},
        **config,
    )
    db = SQLAlchemy()
    if db_first:
        db.init_app(app)
        Observe(app, registry=registry)
    else:
        Observe(app, registry=registry)
        db.init_app(app)
    return app, db


def _dispose(app: Flask, db: SQLAlchemy) -> None:
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_flask_sqlalchemy_engines_are_tracked_with_observe_track_sqlalchemy(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    app, db = _flask_sqlalchemy_app(tmp_path, registry, OBSERVE_TRACK_SQLALCHEMY=True)
    try:
        with app.app_context():
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                assert pool_values(app, "default") == (1.0, 4.0)
            # SQLALCHEMY_ENGINE_OPTIONS are the default engine's: the bind has 5 + 10.
            assert pool_values(app, "reports") == (0.0, 15.0)
        assert registry.get_sample_value("db_pool_wait_seconds_count", {"pool": "default"}) == 1
    finally:
        _dispose(app, db)


def test_flask_sqlalchemy_engines_are_not_tracked_by_default(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    app, db = _flask_sqlalchemy_app(tmp_path, registry)
    try:
        assert "db_pool_connections_max" not in scrape(app.test_client())
        with app.app_context():
            Observe(registry=registry).track_pool(db.engine, app=app)
        assert pool_values(app, "default") == (0.0, 4.0)
    finally:
        _dispose(app, db)


def test_track_sqlalchemy_without_flask_sqlalchemy_yet_warns(
    tmp_path: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_observe"):
        app, db = _flask_sqlalchemy_app(
            tmp_path, registry, db_first=False, OBSERVE_TRACK_SQLALCHEMY=True
        )
    try:
        assert any("db.init_app(app) before Observe(app)" in m for m in caplog.messages)
        assert "db_pool_connections_max" not in scrape(app.test_client())
    finally:
        _dispose(app, db)


# -- queues --


def test_queue_depth_follows_items_added_and_consumed(registry: CollectorRegistry) -> None:
    jobs: queue.Queue[int] = queue.Queue()
    observe = Observe(registry=registry)
    observe.track_queue("jobs", jobs.qsize)
    app = make_app(registry, observe)
    client = app.test_client()
    assert sample_value(scrape(client)["app_queue_depth"], queue="jobs") == 0.0
    for item in range(5):
        jobs.put(item)
    assert sample_value(scrape(client)["app_queue_depth"], queue="jobs") == 5.0

    done: list[int] = []

    def consume(count: int) -> None:
        for _ in range(count):
            done.append(jobs.get(timeout=10))
            jobs.task_done()

    worker = threading.Thread(target=consume, args=(3,), name="consumer")
    worker.start()
    worker.join(timeout=10)
    assert done == [0, 1, 2]
    assert sample_value(scrape(client)["app_queue_depth"], queue="jobs") == 2.0
    assert sample_value(scrape(client)["app_queue_depth_errors"], "_total", queue="jobs") == 0.0


def test_a_raising_depth_function_is_counted_and_the_scrape_goes_on(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    jobs: queue.Queue[int] = queue.Queue()
    jobs.put(1)

    def broken() -> int:
        raise ConnectionError("broker unreachable")

    observe = Observe(registry=registry)
    app = make_app(registry, observe)
    observe.track_queue("jobs", jobs.qsize)
    observe.track_queue("broker", broken)
    observe.track_queue("nonsense", lambda: None)  # type: ignore[arg-type,return-value]
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="flask_observe"):
        for scrapes in (1, 2):
            families = scrape(client)
            depth = families["app_queue_depth"]
            assert sample_value(depth, queue="jobs") == 1.0
            assert sample_value(depth, queue="broker") is None
            errors = families["app_queue_depth_errors"]
            assert sample_value(errors, "_total", queue="broker") == scrapes
            assert sample_value(errors, "_total", queue="nonsense") == scrapes
            assert sample_value(errors, "_total", queue="jobs") == 0.0
            assert "http_requests" in families
    failed = [r for r in caplog.records if "depth function of queue 'broker'" in r.getMessage()]
    assert len(failed) == 1  # logged once, then only counted
    assert failed[0].exc_info is not None


def test_track_queue_refuses_bad_arguments() -> None:
    observe = Observe()
    observe.track_queue("jobs", lambda: 0)
    with pytest.raises(ValueError, match="already tracked"):
        observe.track_queue("jobs", lambda: 0)
    with pytest.raises(TypeError, match="callable"):
        observe.track_queue("other", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty string"):
        observe.track_queue(" jobs", lambda: 0)


# -- the process --

PROCESS_FAMILIES = (
    "process_cpu_seconds",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_threads",
)


@pytest.mark.skipif(not LINUX_PROC, reason="the process figures come from /proc")
def test_process_figures_are_added_to_a_registry_of_the_app(registry: CollectorRegistry) -> None:
    app = make_app(registry)
    make_app(registry)  # a second app on the same registry adds nothing twice
    text_body = app.test_client().get("/metrics").get_data(as_text=True)
    families = scrape(app.test_client())
    for name in PROCESS_FAMILIES:
        assert name in families, name
    assert text_body.count("# TYPE process_cpu_seconds_total counter") == 1
    threads = sample_value(families["process_threads"])
    assert threads is not None
    assert threads >= 1


@pytest.mark.skipif(not LINUX_PROC, reason="the process figures come from /proc")
def test_the_default_registry_keeps_its_own_process_collector() -> None:
    app = Flask("default-registry")
    Observe(app)  # prometheus_client's REGISTRY, which has a process collector already
    Observe(Flask("again"))  # and a second app on it adds nothing twice
    body = app.test_client().get("/metrics").get_data(as_text=True)
    assert body.count("# TYPE process_cpu_seconds_total counter") == 1
    assert body.count("# TYPE process_threads gauge") == 1
    assert REGISTRY.get_sample_value("process_threads") is not None


@pytest.mark.skipif(not LINUX_PROC, reason="the process figures come from /proc")
def test_process_figures_can_be_left_out(registry: CollectorRegistry) -> None:
    app = make_app(registry, OBSERVE_PROCESS_METRICS=False)
    families = scrape(app.test_client())
    for name in PROCESS_FAMILIES:
        assert name not in families
