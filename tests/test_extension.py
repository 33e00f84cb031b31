"""Observe as an extension: init_app, app factories, several apps, registries."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from flask_observe import ConfigError, Observe

from .conftest import make_app, scrape

GET_ORDER = {"method": "GET", "endpoint": "/orders/<int:order_id>", "status": "200"}


def test_init_app_twice_is_refused(registry: CollectorRegistry) -> None:
    app = make_app(registry)
    observe = app.extensions["observe"]
    with pytest.raises(RuntimeError, match="already set up on the app 'shop'"):
        Observe().init_app(app)
    with pytest.raises(RuntimeError):
        Observe(app, registry=registry)
    assert app.extensions["observe"] is observe
    # The request is still observed once, not once per attempt.
    app.test_client().get("/orders/1")
    assert registry.get_sample_value("http_requests_total", GET_ORDER) == 1.0


def test_one_observe_serves_two_apps_with_their_own_settings() -> None:
    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    first = make_app(first_registry, OBSERVE_SERVICE_NAME="orders")
    observe = Observe(registry=second_registry)
    second = make_app(None, observe=observe, OBSERVE_GROUP_BY="endpoint")
    first.test_client().get("/orders/1")
    second.test_client().get("/orders/1")
    assert first_registry.get_sample_value("http_requests_total", GET_ORDER) == 1.0
    assert (
        second_registry.get_sample_value(
            "http_requests_total", {**GET_ORDER, "endpoint": "get_order"}
        )
        == 1.0
    )
    assert first.extensions["observe"].settings.service_name == "orders"
    assert second.extensions["observe"].settings.group_by == "endpoint"


def test_app_factory_with_shared_observe_and_registry(registry: CollectorRegistry) -> None:
    observe = Observe(registry=registry)
    apps = [make_app(None, observe=observe, OBSERVE_SERVICE_NAME=f"svc{i}") for i in range(3)]
    for app in apps:
        app.test_client().get("/orders/1")
    assert registry.get_sample_value("http_requests_total", GET_ORDER) == 3.0
    services = {
        s.labels["service"]
        for m in registry.collect()
        if m.name == "flask_observe"
        for s in m.samples
    }
    assert services == {"svc0", "svc1", "svc2"}


def test_several_apps_on_the_default_registry_never_duplicate_timeseries() -> None:
    before = REGISTRY.get_sample_value("http_requests_total", GET_ORDER) or 0.0
    apps = [make_app(None) for _ in range(3)]
    for app in apps:
        app.test_client().get("/orders/1")
    assert REGISTRY.get_sample_value("http_requests_total", GET_ORDER) == before + 3.0


def test_user_metrics_on_the_default_registry_appear_at_metrics() -> None:
    app = make_app(None)
    signups = Counter("shop_signups", "Users who signed up.")
    try:
        signups.inc(2)
        families = scrape(app.test_client())
        assert families["shop_signups"].samples[0].value == 2.0
        assert "http_requests" in families
    finally:
        REGISTRY.unregister(signups)


def test_apps_sharing_a_registry_must_agree_on_buckets(registry: CollectorRegistry) -> None:
    make_app(registry)
    with pytest.raises(ConfigError, match="OBSERVE_BUCKETS") as info:
        make_app(registry, OBSERVE_BUCKETS=[0.1, 1.0])
    assert "Observe(registry=...)" in str(info.value)


def test_a_before_request_that_answers_early_is_still_observed(
    registry: CollectorRegistry,
) -> None:
    app = Flask("shop")

    @app.before_request
    def maintenance() -> Any:
        return "down for maintenance", 503

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> str:
        return "never"

    Observe(app, registry=registry)
    assert app.test_client().get("/orders/1").status_code == 503
    assert registry.get_sample_value("http_requests_total", {**GET_ORDER, "status": "503"}) == 1.0


def test_an_after_request_that_changes_the_status_is_seen(registry: CollectorRegistry) -> None:
    app = make_app(registry)

    @app.after_request
    def teapot(response: Any) -> Any:
        response.status_code = 418
        return response

    app.test_client().get("/orders/1")
    assert registry.get_sample_value("http_requests_total", {**GET_ORDER, "status": "418"}) == 1.0


def test_state_lives_in_app_extensions_not_on_the_extension(registry: CollectorRegistry) -> None:
    observe = Observe(registry=registry)
    app = make_app(None, observe=observe)
    assert not hasattr(observe, "app")
    state = app.extensions["observe"]
    assert state.registry is registry


def test_the_public_api_is_the_one_screen_of_names_it_was() -> None:
    """Adding or dropping a public name is a decision, made here as well."""
    import flask_observe

    assert flask_observe.__all__ == [
        "ConfigError",
        "HealthCheckError",
        "Observe",
        "__version__",
        "configure_structlog",
        "counted",
        "disk_space_check",
        "get_logger",
        "redis_check",
        "sqlalchemy_check",
        "timed",
        "traced",
        "url_check",
    ]
    assert all(hasattr(flask_observe, name) for name in flask_observe.__all__)
