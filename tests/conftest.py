"""Shared fixtures: a fresh registry per test, an app factory with a small set of routes."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, NoReturn, Optional

import pytest
from flask import Flask, Response, abort, stream_with_context
from flask.testing import FlaskClient, FlaskCliRunner
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from flask_observe import Observe
from flask_observe.logs import ObserveHandler
from flask_observe.logs import install as log_install

AppFactory = Callable[..., Flask]

#: OpenTelemetry lets a process set its global tracer provider once: this is it, set before
#: any app is made, as an application would. Its spans go here; tests that look at spans
#: give their app a provider of its own (the ``spans`` fixture).
GLOBAL_SPANS = InMemorySpanExporter()
_global_provider = TracerProvider()
_global_provider.add_span_processor(SimpleSpanProcessor(GLOBAL_SPANS))
trace.set_tracer_provider(_global_provider)


class OrderError(Exception):
    """Raised by the /boom route; never handled, so it is a 500."""


def make_app(
    registry: Optional[CollectorRegistry], observe: Optional[Observe] = None, **config: Any
) -> Flask:
    """A small app with the shapes of route the pipeline must handle."""
    app = Flask("shop")
    app.config.update(config)

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> dict[str, int]:
        if order_id == 0:
            abort(404)
        return {"id": order_id}

    @app.post("/orders")
    def create_order() -> Any:
        return {"id": 1}, 201

    @app.get("/boom")
    def boom() -> str:
        raise OrderError("payment service exploded")

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[bytes]:
            for _ in range(3):
                time.sleep(0.01)
                yield b"x" * 100

        return Response(body(), mimetype="text/plain")

    @app.get("/stream-context")
    def stream_context() -> Response:
        def body() -> Iterator[str]:
            yield "hello "
            yield "world"

        return Response(stream_with_context(body()), mimetype="text/plain")

    @app.get("/async")
    async def async_view() -> dict[str, str]:
        return {"async": "yes"}

    if observe is None:
        Observe(app, registry=registry)
    else:
        observe.init_app(app)
    return app


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Loggers are process-wide: put back every logger's handlers and level after a test,
    and what flask-observe remembers of its setup (the handler adopted loggers get)."""
    loggers = [
        logging.getLogger(),
        *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict)),
    ]
    saved = [(logger, list(logger.handlers), logger.level) for logger in loggers]
    installed, adopted = log_install._installed, set(log_install._adopted)
    yield
    for logger, handlers, level in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
    known = {id(logger) for logger in loggers}
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        ours = [h for h in logger.handlers if isinstance(h, ObserveHandler)]
        if id(logger) not in known and ours:  # made and adopted during the test
            for handler in ours:
                logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)
    log_install._installed = installed
    log_install._adopted.clear()
    log_install._adopted.update(adopted)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


class Spans:
    """A fresh tracer provider whose finished spans are kept in memory.

    :meth:`observe` sets an app up to trace into it: by giving it this provider (the SDK's
    own spans, as for a provider the user gives), or, with *made*, by letting flask-observe
    make the app's provider (its lean spans) and adding this exporter to that provider.
    """

    def __init__(self, *, made: bool = False) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.made = made
        self._made: list[TracerProvider] = []

    def observe(self, app: Flask, observe: Optional[Observe] = None, **options: Any) -> None:
        """Set *app* up with flask-observe (``Observe(app, **options)``, or *observe*'s
        ``init_app``), its spans landing in :attr:`exporter`."""
        if not self.made:
            if observe is None:
                Observe(app, tracer_provider=self.provider, **options)
            else:
                observe.init_app(app)
            return
        app.config.setdefault("OBSERVE_TRACING_SETUP", "always")
        app.config.setdefault("OBSERVE_TRACING_EXPORTER", "none")
        if observe is None:
            Observe(app, **options)
        else:
            observe.init_app(app)
        provider = app.extensions["observe"].tracer_provider
        assert provider is not trace.get_tracer_provider(), "the app must have its own"
        assert type(app.extensions["observe"].tracer).__name__ == "LeanTracer"
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self._made.append(provider)

    def shutdown(self) -> None:
        for provider in (self.provider, *self._made):
            provider.shutdown()

    def finished(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> Any:
        (span,) = [s for s in self.finished() if s.name == name]
        return span


@pytest.fixture
def spans() -> Iterator[Spans]:
    kept = Spans()
    yield kept
    kept.shutdown()


@pytest.fixture
def app_factory(registry: CollectorRegistry) -> AppFactory:
    """``app_factory(**config)``: the test app on this test's registry."""

    def factory(**config: Any) -> Flask:
        return make_app(registry, **config)

    return factory


@pytest.fixture
def app(app_factory: AppFactory) -> Flask:
    return app_factory()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def scrape(client: FlaskClient, path: str = "/metrics", **headers: str) -> dict[str, Metric]:
    """GET the metrics page and parse it back with prometheus_client's own parser."""
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.data
    text = response.get_data(as_text=True)
    if response.mimetype == "application/openmetrics-text":
        families = parse_openmetrics(text)
    else:
        families = parse_text(text)
    return {family.name: family for family in families}


def sample_value(family: Metric, suffix: str = "", **labels: str) -> Optional[float]:
    """The value of the sample ``family.name + suffix`` with exactly *labels*, if any."""
    for sample in family.samples:
        if sample.name == family.name + suffix and sample.labels == labels:
            return float(sample.value)
    return None


def require_binary(name: str, package: str = "prometheus") -> str:
    """The path of *name*; skip without it locally, fail without it under CI=true."""
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} is not installed (Debian package {package!r})")
    return path


def require_module(name: str, extra: str = "test") -> Any:
    """The module *name*; skip without it locally, fail without it under CI=true."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        _missing(f"{name} cannot be imported ({error}); it is in the {extra!r} extra")


def _missing(message: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI must install it")
    pytest.skip(message)


def run_checked(*command: str, cwd: Optional[str] = None) -> str:
    """Run a checking tool (promtool, amtool); its standard output, or a failure showing
    everything it said."""
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@contextlib.contextmanager
def serving(app: Flask) -> Iterator[int]:
    """Serve *app* with werkzeug's threaded server on 127.0.0.1 (HTTP/1.1 keep-alive) and
    yield its port; the server is shut down and its thread joined on the way out."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class KeepAliveHandler(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=KeepAliveHandler)
    thread = threading.Thread(target=server.serve_forever, name="test-server", daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """What was written to stderr since the last call, each line parsed as one JSON object."""
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "flask_observe.access"]


@contextlib.contextmanager
def without_root_handlers() -> Iterator[None]:
    """No handler on the root logger for a while, as in an app that configures none.

    pytest's logging plugin puts its own handlers on the root for each phase of a test, so
    that every access record would reach them: flask-observe's handler is then never the only
    one, and the access line is never written without a record. Inside this block it is.
    """
    root = logging.getLogger()
    saved = list(root.handlers)
    root.handlers[:] = []
    try:
        yield
    finally:
        root.handlers[:] = saved


class KeptRecords(logging.Handler):
    """A handler of the user's own, keeping the records it gets. Where it is, the access
    record is made, as it is for any handler but flask-observe's."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
