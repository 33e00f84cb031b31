"""The request pipeline: one observation per request, finished once, sinks isolated."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask, request_started
from prometheus_client import CollectorRegistry

from flask_observe import Observe
from flask_observe.config import load_settings, set_defaults
from flask_observe.observation import Observation
from flask_observe.pipeline import RequestPipeline

ORDER = {"method": "GET", "endpoint": "/orders/<int:order_id>"}


class RecordingSink:
    """A sink that keeps what it was given."""

    name = "recording"

    def __init__(self) -> None:
        self.started: list[Observation] = []
        self.finished: list[Observation] = []

    def start(self, observation: Observation) -> None:
        self.started.append(observation)

    def finish(self, observation: Observation) -> None:
        self.finished.append(observation)


class BrokenSink:
    """A sink that raises where it is told to."""

    def __init__(self, name: str, *, on_start: bool = False, on_finish: bool = False) -> None:
        self.name = name
        self.on_start = on_start
        self.on_finish = on_finish
        self.finish_calls = 0

    def start(self, observation: Observation) -> None:
        if self.on_start:
            raise RuntimeError("start broke")

    def finish(self, observation: Observation) -> None:
        self.finish_calls += 1
        if self.on_finish:
            raise RuntimeError("finish broke")


def _errors(registry: CollectorRegistry, sink: str) -> float:
    value = registry.get_sample_value("flask_observe_errors_total", {"sink": sink})
    assert value is not None
    return value


def test_each_request_is_observed_once_with_its_facts(app: Flask) -> None:
    sink = RecordingSink()
    app.extensions["observe"].pipeline.add_sink(sink)
    client = app.test_client()
    client.get("/orders/5")
    client.get("/boom")
    response = client.get("/stream")
    response.get_data()
    response.close()
    client.get("/metrics")  # excluded: never observed

    assert len(sink.started) == len(sink.finished) == 3
    assert sink.started == sink.finished
    order, boom, stream = sink.finished
    assert (order.method, order.route, order.endpoint, order.status) == (
        "GET",
        "/orders/<int:order_id>",
        "/orders/<int:order_id>",
        200,
    )
    assert order.path == "/orders/5"
    assert order.exception is None
    assert boom.status == 500
    assert boom.exception == "OrderError"
    assert stream.response_size == 300
    assert all(o.finished and o.duration > 0 for o in sink.finished)


def test_a_sink_that_raises_on_finish_does_not_break_the_request(
    app: Flask, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    broken = BrokenSink("broken", on_finish=True)
    after = RecordingSink()
    pipeline = app.extensions["observe"].pipeline
    pipeline.add_sink(broken)
    pipeline.add_sink(after)
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="flask_observe"):
        for _ in range(3):
            response = client.get("/orders/5")
            assert response.status_code == 200
            assert response.get_json() == {"id": 5}
    assert _errors(registry, "broken") == 3.0
    # Logged once, with its traceback; later failures are only counted.
    logged = [r for r in caplog.records if r.name == "flask_observe"]
    assert len(logged) == 1
    assert "'broken'" in logged[0].getMessage()
    assert logged[0].exc_info is not None
    # The sinks after it, and the metrics before it, still got every request.
    assert len(after.finished) == 3
    assert registry.get_sample_value("http_requests_total", {**ORDER, "status": "200"}) == 3.0


def test_a_sink_that_raises_on_start_is_not_asked_to_finish(
    app: Flask, registry: CollectorRegistry
) -> None:
    broken = BrokenSink("early", on_start=True)
    app.extensions["observe"].pipeline.add_sink(broken)
    assert app.test_client().get("/orders/5").status_code == 200
    assert _errors(registry, "early") == 1.0
    assert broken.finish_calls == 0
    assert registry.get_sample_value("http_requests_total", {**ORDER, "status": "200"}) == 1.0


def test_error_counter_exists_at_zero_before_any_failure(
    registry: CollectorRegistry, app: Flask
) -> None:
    assert _errors(registry, "metrics") == 0.0
    assert _errors(registry, "pipeline") == 0.0


def test_a_request_that_fails_in_routing_is_observed(app: Flask) -> None:
    sink = RecordingSink()
    app.extensions["observe"].pipeline.add_sink(sink)
    app.test_client().get("/not/a/route")
    (observation,) = sink.finished
    assert observation.route is None
    assert observation.endpoint == "<unmatched>"
    assert observation.status == 404


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", " ", "99999999999999999999999"])
def test_a_hostile_content_length_never_breaks_the_request(
    app: Flask, registry: CollectorRegistry, length: str
) -> None:
    response = app.test_client().get("/orders/5", headers={"Content-Length": length})
    assert response.status_code in (200, 400)
    labels = {"method": "GET", "endpoint": "/orders/<int:order_id>"}
    assert registry.get_sample_value("http_request_duration_seconds_count", labels) == 1.0
    assert registry.get_sample_value("flask_observe_errors_total", {"sink": "pipeline"}) == 0.0
    size = registry.get_sample_value("http_request_size_bytes_sum", labels)
    assert size is not None
    assert 0 <= size <= 10**23


class _Buffering:
    """A middleware that holds the response back until the whole body is made, so Flask's
    request object is gone by the time ``start_response`` reaches the pipeline."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, environ: Any, start_response: Any) -> Any:
        held: list[Any] = []
        body = self.inner(
            environ, lambda status, headers, exc_info=None: held.extend([status, headers])
        )
        try:
            data = b"".join(body)
        finally:
            getattr(body, "close", lambda: None)()
        start_response(*held)
        return [data]


@pytest.mark.parametrize(
    ("method", "path", "endpoint", "status"),
    [
        ("GET", "/orders/5", "/orders/<int:order_id>", "200"),
        ("DELETE", "/orders/5", "/orders/<int:order_id>", "405"),
        ("GET", "/no/such/route", "<unmatched>", "404"),
        ("BREW", "/orders/5", "/orders/<int:order_id>", "405"),
    ],
)
def test_the_route_is_found_when_the_response_starts_after_flask_is_done(
    registry: CollectorRegistry, method: str, path: str, endpoint: str, status: str
) -> None:
    app = Flask("shop")
    app.add_url_rule("/orders/<int:order_id>", "get_order", lambda order_id: "ok")
    app.wsgi_app = _Buffering(app.wsgi_app)  # type: ignore[method-assign]
    Observe(app, registry=registry)
    response = app.test_client().open(path, method=method)
    assert str(response.status_code) == status
    label = method if method != "BREW" else "_OTHER"
    labels = {"method": label, "endpoint": endpoint, "status": status}
    assert registry.get_sample_value("http_requests_total", labels) == 1.0
    assert registry.get_sample_value("flask_observe_errors_total", {"sink": "pipeline"}) == 0.0


class Shutdown(BaseException):
    """Not an ``Exception``: Flask lets it through untouched."""


def test_a_base_exception_from_a_view_is_a_500_of_its_route(registry: CollectorRegistry) -> None:
    app = Flask("shop")

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> str:
        raise Shutdown

    Observe(app, registry=registry)
    with pytest.raises(Shutdown):
        app.test_client().get("/orders/5")
    labels = {"method": "GET", "endpoint": "/orders/<int:order_id>"}
    assert registry.get_sample_value("http_requests_total", {**labels, "status": "500"}) == 1.0
    assert (
        registry.get_sample_value(
            "http_request_exceptions_total", {**labels, "exception": "Shutdown"}
        )
        == 1.0
    )
    assert registry.get_sample_value("http_requests_in_progress", labels) == 0.0


class RoutedSink(RecordingSink):
    """A sink with a ``routed`` hook, which notes what it saw then."""

    name = "routed"

    def __init__(self, log: list[str], *, broken: bool = False) -> None:
        super().__init__()
        self.log = log
        self.broken = broken

    def routed(self, observation: Observation) -> None:
        self.log.append(f"routed {observation.method} {observation.endpoint}")
        if self.broken:
            raise RuntimeError("routed broke")


def routed_app(sink: RoutedSink) -> tuple[Flask, list[str]]:
    """An app whose pipeline has *sink* alone; returns the app and the failed sinks' names."""
    app = Flask("routed")

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> str:
        sink.log.append("view")
        return "ok"

    set_defaults(app.config)
    settings = load_settings(app.config, app_name=app.name, overrides={})
    failures: list[str] = []
    RequestPipeline(settings, [sink], failures.append).install(app)
    return app, failures


def test_a_routed_hook_runs_once_the_route_is_known_before_the_view() -> None:
    log: list[str] = []
    sink = RoutedSink(log)
    app, failures = routed_app(sink)

    @app.before_request
    def before() -> None:
        log.append("before_request")

    client = app.test_client()
    client.get("/orders/5")
    client.get("/no/such/path")
    assert log == [
        "routed GET /orders/<int:order_id>",
        "before_request",
        "view",
        "routed GET <unmatched>",
        "before_request",
    ]
    assert len(sink.finished) == 2
    assert failures == []


def test_a_failing_routed_hook_is_counted_and_its_sink_still_finishes() -> None:
    sink = RoutedSink([], broken=True)
    app, failures = routed_app(sink)
    assert app.test_client().get("/orders/5").status_code == 200
    assert failures == ["routed"]
    assert len(sink.finished) == 1


def test_the_pipeline_listens_for_routing_only_when_a_sink_needs_it(app: Flask) -> None:
    assert not request_started.has_receivers_for(app)
