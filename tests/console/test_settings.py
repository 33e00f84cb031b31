"""The console's keys: when it is on, where it answers, what start-up refuses."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_observe import ConfigError, Observe


def _observe(app: Flask, **config: Any) -> Flask:
    app.config.update(config)
    Observe(app, registry=CollectorRegistry())
    return app


@pytest.mark.parametrize(
    ("config", "on"),
    [
        ({}, False),
        ({"DEBUG": True}, True),
        ({"OBSERVE_CONSOLE_TOKEN": "t0ken"}, True),
        ({"DEBUG": True, "OBSERVE_CONSOLE_ENABLED": False}, False),
        ({"OBSERVE_CONSOLE_TOKEN": "t0ken", "OBSERVE_CONSOLE_ENABLED": False}, False),
        ({"OBSERVE_CONSOLE_ENABLED": True}, True),
    ],
)
def test_the_console_is_on_in_debug_or_with_a_token_unless_the_key_says(
    config: dict[str, Any], on: bool
) -> None:
    app = _observe(Flask("shop"), **config)
    assert app.extensions["observe"].settings.console_enabled is on
    assert (app.extensions["observe"].console is not None) is on
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert ("/observe/" in rules) is on


def test_the_console_answers_at_its_path(app_factory: Any) -> None:
    app = _observe(Flask("shop"), OBSERVE_CONSOLE_ENABLED=True, OBSERVE_CONSOLE_PATH="/_ops/")
    client = app.test_client()
    assert client.get("/_ops/").status_code == 200
    assert client.get("/_ops/api/logs").status_code == 200
    assert client.get("/observe/").status_code == 404
    assert "/_ops" in app.extensions["observe"].settings.exclude_paths


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("OBSERVE_CONSOLE_ENABLED", "yes", "True, False, or None"),
        ("OBSERVE_CONSOLE_PATH", "/", "would leave no request measured"),
        ("OBSERVE_CONSOLE_PATH", "observe", "a URL path below '/'"),
        ("OBSERVE_CONSOLE_PATH", "/ob serve", "without spaces"),
        ("OBSERVE_CONSOLE_PATH", "/<name>", "a converter"),
        ("OBSERVE_CONSOLE_PATH", "/observe?x", "'?'"),
        ("OBSERVE_CONSOLE_TOKEN", "s3cret\n", "strip it"),
        ("OBSERVE_CONSOLE_TOKEN", "", "non-empty string"),
        ("OBSERVE_CONSOLE_SPANS", 0, "a whole number > 0"),
        ("OBSERVE_CONSOLE_LOGS", 1.5, "a whole number > 0"),
        ("OBSERVE_CONSOLE_WINDOW", "1s", "from '10s' to '1h'"),
        ("OBSERVE_CONSOLE_WINDOW", "2h", "from '10s' to '1h'"),
        ("OBSERVE_CONSOLE_WINDOW", 300, "a Prometheus duration"),
    ],
)
def test_bad_console_values_are_refused_naming_the_key(key: str, value: Any, allowed: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _observe(Flask("shop"), **{"OBSERVE_CONSOLE_ENABLED": True, key: value})
    assert refused.value.key == key
    assert allowed in str(refused.value)


@pytest.mark.parametrize(
    "config",
    [
        {"OBSERVE_CONSOLE_PATH": "/metrics"},
        {"OBSERVE_CONSOLE_PATH": "/healthz"},
        {"OBSERVE_CONSOLE_PATH": "/status", "OBSERVE_HEALTH_PATH": "/status/health"},
        {"OBSERVE_CONSOLE_PATH": "/ops", "OBSERVE_METRICS_PATH": "/ops/metrics"},
    ],
)
def test_a_console_path_holding_another_endpoint_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as refused:
        _observe(Flask("shop"), OBSERVE_CONSOLE_ENABLED=True, **config)
    assert refused.value.key == "OBSERVE_CONSOLE_PATH"


def test_a_console_path_is_not_checked_while_the_console_is_off() -> None:
    _observe(Flask("shop"), OBSERVE_CONSOLE_PATH="/metrics")


@pytest.mark.parametrize("rule", ["/observe", "/observe/", "/observe/<path:rest>", "/observe/x"])
def test_an_app_route_at_or_below_the_console_is_refused(rule: str) -> None:
    app = Flask("shop")
    app.add_url_rule(rule, "mine", lambda **kwargs: "mine")
    with pytest.raises(ConfigError) as refused:
        _observe(app, OBSERVE_CONSOLE_ENABLED=True)
    assert refused.value.key == "OBSERVE_CONSOLE_PATH"
    assert "'mine'" in str(refused.value)


def test_an_app_route_beside_the_console_is_fine() -> None:
    app = Flask("shop")
    app.add_url_rule("/observer", "mine", lambda: "mine")
    _observe(app, OBSERVE_CONSOLE_ENABLED=True)


def test_a_route_added_below_the_console_later_is_listed_by_the_check() -> None:
    app = _observe(Flask("shop"), OBSERVE_CONSOLE_ENABLED=True)

    @app.get("/observe/orders")
    def late_orders() -> str:
        return "mine"

    result = app.test_cli_runner().invoke(args=["observe", "check", "--strict"])
    assert result.exit_code == 1
    assert (
        "OBSERVE_CONSOLE_PATH: the app's own view 'late_orders' answers at /observe/orders"
        in result.output
    )


def test_the_consoles_own_routes_are_no_collision() -> None:
    app = _observe(Flask("shop"), OBSERVE_CONSOLE_ENABLED=True)
    result = app.test_cli_runner().invoke(args=["observe", "check"])
    assert "answers at" not in result.output


def test_the_check_hides_the_console_token() -> None:
    app = _observe(Flask("shop"), OBSERVE_CONSOLE_TOKEN="s3cr3t-console")
    output = app.test_cli_runner().invoke(args=["observe", "check"]).output
    assert "OBSERVE_CONSOLE_TOKEN = '[REDACTED]'" in output
    assert "s3cr3t" not in output
