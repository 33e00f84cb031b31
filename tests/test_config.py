"""OBSERVE_* keys: defaults, validation at init_app, the typo warning."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_observe import ConfigError, Observe

from .conftest import AppFactory


def _init(**config: Any) -> Flask:
    app = Flask("shop")
    app.config.update(config)
    Observe(app, registry=CollectorRegistry())
    return app


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("OBSERVE_BUCKETS", [0.1, -0.5, 1.0], "positive"),
        ("OBSERVE_BUCKETS", [0.5, 0.1, 1.0], "strictly increasing"),
        ("OBSERVE_BUCKETS", [0.1, 0.1], "strictly increasing"),
        ("OBSERVE_BUCKETS", "0.1,0.5", "sequence"),
        ("OBSERVE_BUCKETS", [], "non-empty"),
        ("OBSERVE_BUCKETS", [0.1, True], "not a number"),
        ("OBSERVE_BUCKETS", [0.1, float("inf")], "finite"),
        ("OBSERVE_SIZE_BUCKETS", [10, 5], "strictly increasing"),
        ("OBSERVE_GROUP_BY", "path", "one of 'route', 'endpoint'"),
        ("OBSERVE_GROUP_BY", None, "one of 'route', 'endpoint'"),
        ("OBSERVE_METRICS_ENABLED", "yes", "True or False"),
        ("OBSERVE_METRICS_ENABLED", 1, "True or False"),
        ("OBSERVE_METRICS_PATH", "metrics", "a URL path below '/'"),
        ("OBSERVE_METRICS_PATH", "/", "'/' would leave no request measured"),
        ("OBSERVE_HEALTH_PATH", 42, "a URL path below '/'"),
        ("OBSERVE_HEALTH_PATH", "//", "'/' would leave no request measured"),
        ("OBSERVE_EXCLUDE_PATHS", "/metrics", "a list of URL paths"),
        ("OBSERVE_EXCLUDE_PATHS", ["metrics"], "starting with '/'"),
        ("OBSERVE_EXCLUDE_PATHS", ["/static", "/"], "'/' would leave no request measured"),
        ("OBSERVE_ALERT_LATENCY_SECONDS", 0, "positive"),
        ("OBSERVE_ALERT_LATENCY_SECONDS", "2s", "positive"),
        ("OBSERVE_ALERT_LATENCY_FOR", "5 minutes", "a Prometheus duration"),
        ("OBSERVE_ALERT_LATENCY_FOR", 300, "a Prometheus duration"),
        ("OBSERVE_ALERT_ERROR_RATIO", 5, "between 0 and 1"),
        ("OBSERVE_ALERT_ERROR_RATIO", 0, "between 0 and 1"),
        ("OBSERVE_ALERT_ERROR_RATIO", "5%", "between 0 and 1"),
        ("OBSERVE_ALERT_ERROR_FOR", "2min", "such as '30s', '5m'"),
        ("OBSERVE_ALERT_ERROR_FOR", "0s", "longer than 0"),
        ("OBSERVE_ALERT_ERROR_FOR", "", "a Prometheus duration"),
        ("OBSERVE_ALERT_TRAFFIC_DROP_RATIO", 1.0, "between 0 and 1"),
        ("OBSERVE_ALERT_TRAFFIC_DROP_OFFSET", "m1h", "a Prometheus duration"),
        ("OBSERVE_ALERT_TRAFFIC_DROP_FOR", "10m1h", "a Prometheus duration"),
        ("OBSERVE_ALERT_SATURATION_RATIO", True, "between 0 and 1"),
        ("OBSERVE_ALERT_SATURATION_FOR", None, "a Prometheus duration"),
        ("OBSERVE_ALERT_IN_FLIGHT_MAX", 0, "a whole number > 0, or None"),
        ("OBSERVE_ALERT_IN_FLIGHT_MAX", 10.5, "a whole number > 0, or None"),
        ("OBSERVE_SLO_AVAILABILITY", 99.9, "between 0 and 1, both excluded, or None"),
        ("OBSERVE_SLO_AVAILABILITY", 1, "between 0 and 1, both excluded, or None"),
        ("OBSERVE_RUNBOOK_URL", "wiki/runbooks", "an http:// or https:// URL"),
        ("OBSERVE_RUNBOOK_URL", "https://wiki/run books", "without spaces"),
        ("OBSERVE_TRACE_URL_TEMPLATE", "https://tempo/trace/", "containing '{trace_id}'"),
        ("OBSERVE_TRACE_URL_TEMPLATE", "tempo/{trace_id}", "containing '{trace_id}'"),
        ("OBSERVE_RULES_SELECTOR", "shop", "PromQL label matchers"),
        ("OBSERVE_RULES_SELECTOR", "job=shop", "PromQL label matchers"),
        ("OBSERVE_RULES_SELECTOR", 'job="shop"}', "PromQL label matchers"),
        ("OBSERVE_RULES_SELECTOR", "", "PromQL label matchers"),
        ("OBSERVE_RULES_SELECTOR", 'job="sh\nop"', "PromQL label matchers"),
        ("OBSERVE_SERVICE_NAME", "", "non-empty string"),
        ("OBSERVE_METRICS_BEARER_TOKEN", 1234, "non-empty string"),
        ("OBSERVE_METRICS_ALLOW_NETWORKS", ["10.0.0.0/33"], "CIDR"),
        ("OBSERVE_METRICS_ALLOW_NETWORKS", "10.0.0.0/8", "CIDR"),
        ("OBSERVE_METRICS_ALLOW_NETWORKS", [10], "(10 is not one)"),
        ("OBSERVE_LOG_JSON", "on", "True or False"),
        ("OBSERVE_LOG_FORMAT", "pretty", "one of 'json', 'console'"),
        ("OBSERVE_LOG_LEVEL", "verbose", "a level name"),
        ("OBSERVE_LOG_LEVEL", -1, "a number >= 0"),
        ("OBSERVE_LOG_LOGGERS", "myapp", "a list of non-empty strings"),
        ("OBSERVE_LOG_LOGGERS", ["myapp", ""], "('' is not one)"),
        ("OBSERVE_LOG_ROOT", 1, "True or False"),
        ("OBSERVE_LOG_REDACT", "password", "a list of non-empty strings"),
        ("OBSERVE_LOG_QUERY_STRING", "yes", "True or False"),
        ("OBSERVE_REQUEST_ID_HEADER", "X Request Id", "an HTTP header name"),
        ("OBSERVE_REQUEST_ID_HEADER", "", "an HTTP header name"),
        ("OBSERVE_ACCESS_LOG", None, "True or False"),
        ("OBSERVE_ACCESS_LOG_SAMPLE", 1.5, "a number from 0 to 1"),
        ("OBSERVE_ACCESS_LOG_SAMPLE", "10%", "a number from 0 to 1"),
        ("OBSERVE_SLOW_REQUEST_SECONDS", 0, "positive"),
        ("OBSERVE_TRACING_INSTRUMENTATION", "auto", "one of 'native', 'contrib', 'off'"),
        ("OBSERVE_TRACING_SETUP", True, "one of 'auto', 'always', 'never'"),
        ("OBSERVE_TRACING_EXPORTER", "jaeger", "one of 'otlp', 'console', 'none', or None"),
        ("OBSERVE_TRACING_SAMPLE_RATIO", 1.5, "a number from 0 to 1"),
        ("OBSERVE_TRACING_SAMPLE_RATIO", "10%", "a number from 0 to 1"),
        ("OBSERVE_TRACING_QUEUE_SIZE", 0, "a whole number > 0"),
        ("OBSERVE_TRACING_BATCH_SIZE", 2.5, "a whole number > 0"),
        ("OBSERVE_SERVICE_VERSION", 2, "non-empty string"),
        ("OBSERVE_HEALTH_ENABLED", "yes", "True or False"),
        ("OBSERVE_HEALTH_TIMEOUT", 0, "positive"),
        ("OBSERVE_HEALTH_TIMEOUT", "2s", "positive"),
        ("OBSERVE_HEALTH_CACHE_SECONDS", -1, "a finite number of seconds, 0 or more"),
        ("OBSERVE_HEALTH_CACHE_SECONDS", float("inf"), "a finite number of seconds, 0 or more"),
        ("OBSERVE_HEALTH_DETAILS", "sometimes", "one of 'always', 'never', 'token', or None"),
        ("OBSERVE_HEALTH_DETAILS", "token", "while OBSERVE_HEALTH_TOKEN is None"),
        ("OBSERVE_HEALTH_TOKEN", "", "non-empty string"),
        ("OBSERVE_HEALTH_STARTUP_GRACE", "30s", "a finite number of seconds, 0 or more"),
        ("OBSERVE_HEALTH_MAX_WORKERS", 0, "a whole number > 0"),
        ("OBSERVE_HEALTH_MAX_WORKERS", 2.0, "a whole number > 0"),
        ("OBSERVE_SIGNALS_ENABLED", "yes", "True or False"),
        ("OBSERVE_TRACK_SQLALCHEMY", 1, "True or False"),
        ("OBSERVE_PROCESS_METRICS", None, "True or False"),
        ("OBSERVE_HTTP_CLIENTS", "requests", "a list of 'requests' and 'httpx'"),
        ("OBSERVE_HTTP_CLIENTS", ["urllib3"], "('urllib3' is not one)"),
        ("OBSERVE_PROPAGATE_HOSTS", "*.internal", "a list of host patterns"),
        ("OBSERVE_PROPAGATE_HOSTS", ["https://api.internal"], "is not one"),
        ("OBSERVE_PROPAGATE_HOSTS", ["api.*.internal"], "is not one"),
        ("OBSERVE_HTTP_CLIENT_MAX_PEERS", 0, "a whole number > 0"),
        ("OBSERVE_HTTP_CLIENT_LOG", "debug", "True or False"),
        ("OBSERVE_ALERT_DEPENDENCY_ERROR_RATIO", 1, "between 0 and 1, both excluded, or None"),
        ("OBSERVE_ALERT_DEPENDENCY_LATENCY_SECONDS", -1, "positive"),
        ("OBSERVE_ALERT_DEPENDENCY_FOR", "5", "a Prometheus duration"),
    ],
)
def test_bad_value_fails_at_init_app_naming_key_value_and_allowed(
    key: str, value: Any, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _init(**{key: value})
    message = str(info.value)
    assert message.startswith(f"{key} = {value!r} is invalid")
    assert allowed in message
    assert info.value.key == key
    assert isinstance(info.value, ValueError)


def test_defaults_are_set_on_the_app_config(app: Flask) -> None:
    assert app.config["OBSERVE_METRICS_PATH"] == "/metrics"
    assert app.config["OBSERVE_GROUP_BY"] == "route"
    assert app.config["OBSERVE_METRICS_ENABLED"] is True
    assert app.config["OBSERVE_SIGNALS_ENABLED"] is True
    assert app.config["OBSERVE_TRACK_SQLALCHEMY"] is False
    assert app.config["OBSERVE_PROCESS_METRICS"] is True
    settings = app.extensions["observe"].settings
    assert settings.exclude_paths == ("/metrics", "/healthz")
    assert settings.service_name == "shop"
    assert 2.0 in settings.buckets


def test_health_settings_defaults() -> None:
    settings = _init().extensions["observe"].settings
    assert settings.health_enabled is True
    assert settings.health_timeout == 2.0
    assert settings.health_cache_seconds == 1.0
    assert settings.health_details == "never"
    assert settings.health_startup_grace == 0.0
    assert settings.health_max_workers == 8
    assert settings.service_version is None
    with_token = _init(OBSERVE_HEALTH_TOKEN="s3cret").extensions["observe"].settings
    assert with_token.health_details == "token"


def test_log_settings_defaults_and_spellings() -> None:
    settings = _init().extensions["observe"].settings
    assert settings.log_level == logging.INFO
    assert settings.slow_request_seconds == settings.alert_latency_seconds
    assert "password" in settings.log_redact
    app = _init(OBSERVE_LOG_LEVEL="debug", OBSERVE_LOG_REDACT=[])
    settings = app.extensions["observe"].settings
    assert settings.log_level == logging.DEBUG
    assert settings.log_redact == ()


def test_latency_threshold_joins_the_default_buckets() -> None:
    app = _init(OBSERVE_ALERT_LATENCY_SECONDS=0.75)
    assert app.extensions["observe"].settings.buckets == (
        0.01,
        0.05,
        0.1,
        0.25,
        0.5,
        0.75,
        1.0,
        2.5,
        5.0,
    )


def test_settings_are_frozen(app: Flask) -> None:
    settings = app.extensions["observe"].settings
    with pytest.raises(AttributeError):
        settings.group_by = "endpoint"


def test_constructor_argument_beats_the_config_key() -> None:
    app = Flask("shop")
    app.config["OBSERVE_GROUP_BY"] = "route"
    Observe(app, registry=CollectorRegistry(), group_by="endpoint", service_name="orders")
    settings = app.extensions["observe"].settings
    assert settings.group_by == "endpoint"
    assert settings.service_name == "orders"


def test_bad_constructor_argument_is_named_by_its_key() -> None:
    with pytest.raises(ConfigError, match="OBSERVE_BUCKETS"):
        Observe(Flask("shop"), registry=CollectorRegistry(), buckets=[1, 0.5])


def test_unknown_key_logs_one_warning_naming_the_closest_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_observe"):
        _init(OBSERVE_BUCKET=[0.1, 1.0])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "OBSERVE_BUCKET " in warnings[0].getMessage()
    assert "did you mean OBSERVE_BUCKETS?" in warnings[0].getMessage()


def test_unknown_key_like_none_logs_no_suggestion(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_observe"):
        _init(OBSERVE_FOO=1)
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == "Unknown configuration key OBSERVE_FOO is ignored"


def test_known_keys_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_observe"):
        _init(OBSERVE_BUCKETS=[0.1, 1.0])
    assert caplog.records == []


def test_bad_config_leaves_the_app_untouched() -> None:
    app = Flask("shop")
    app.config["OBSERVE_GROUP_BY"] = "nonsense"
    with pytest.raises(ConfigError):
        Observe(app, registry=CollectorRegistry())
    assert "observe" not in app.extensions
    assert app.wsgi_app.__name__ == "wsgi_app"
    assert "flask_observe_metrics" not in app.blueprints


def test_metrics_path_is_configurable(app_factory: AppFactory) -> None:
    app = app_factory(OBSERVE_METRICS_PATH="/internal/prometheus")
    client = app.test_client()
    assert client.get("/metrics").status_code == 404
    assert client.get("/internal/prometheus").status_code == 200
    assert app.extensions["observe"].settings.exclude_paths[0] == "/internal/prometheus"


def test_metrics_path_none_records_without_serving(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory(OBSERVE_METRICS_PATH=None)
    client = app.test_client()
    client.get("/orders/1")
    assert client.get("/metrics").status_code == 404
    assert (
        registry.get_sample_value(
            "http_requests_total",
            {"method": "GET", "endpoint": "/orders/<int:order_id>", "status": "200"},
        )
        == 1.0
    )


def test_a_batch_larger_than_the_queue_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="OBSERVE_TRACING_BATCH_SIZE"):
        _init(
            OBSERVE_TRACING_SETUP="always",
            OBSERVE_TRACING_EXPORTER="console",
            OBSERVE_TRACING_QUEUE_SIZE=10,
            OBSERVE_TRACING_BATCH_SIZE=20,
        )


def test_the_service_name_follows_otel_service_name_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    assert _init().extensions["observe"].settings.service_name == "checkout"
    app = _init(OBSERVE_SERVICE_NAME="orders")
    assert app.extensions["observe"].settings.service_name == "orders"


def test_alert_settings_defaults() -> None:
    settings = _init().extensions["observe"].settings
    assert settings.alert_error_ratio == 0.05
    assert settings.alert_error_for == "2m"
    assert settings.alert_latency_for == "5m"
    assert (settings.alert_traffic_drop_ratio, settings.alert_traffic_drop_offset) == (0.5, "1h")
    assert settings.alert_traffic_drop_for == "10m"
    assert (settings.alert_saturation_ratio, settings.alert_saturation_for) == (0.8, "5m")
    assert settings.alert_in_flight_max is None
    assert settings.slo_availability is None
    assert settings.runbook_url is None
    assert settings.trace_url_template is None
    assert settings.rules_selector == 'job="shop"'


def test_client_settings_defaults() -> None:
    settings = _init().extensions["observe"].settings
    # Both libraries are test dependencies: installed, so observed by default.
    assert settings.http_clients == ("requests", "httpx")
    assert settings.propagate_hosts is None
    assert settings.http_client_max_peers == 100
    assert settings.http_client_log is False
    # The dependency alert's thresholds are the service's own unless set.
    assert settings.alert_dependency_error_ratio == settings.alert_error_ratio
    assert settings.alert_dependency_latency_seconds == settings.alert_latency_seconds
    assert settings.alert_dependency_for == "5m"


def test_client_settings_as_given() -> None:
    settings = (
        _init(
            OBSERVE_HTTP_CLIENTS=["httpx", "httpx"],
            OBSERVE_PROPAGATE_HOSTS=["API.internal", "*.svc.cluster.local:8080", "[::1]"],
            OBSERVE_ALERT_DEPENDENCY_ERROR_RATIO=0.2,
            OBSERVE_ALERT_DEPENDENCY_LATENCY_SECONDS=0.5,
        )
        .extensions["observe"]
        .settings
    )
    assert settings.http_clients == ("httpx",)
    assert settings.propagate_hosts == ("api.internal", "*.svc.cluster.local:8080", "[::1]")
    assert settings.alert_dependency_error_ratio == 0.2
    assert settings.alert_dependency_latency_seconds == 0.5
    assert _init(OBSERVE_HTTP_CLIENTS=[]).extensions["observe"].clients is None


def test_a_client_library_that_is_not_installed_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("flask_observe.config.installed_clients", lambda: ("requests",))
    with pytest.raises(ConfigError, match="'httpx' is not installed"):
        _init(OBSERVE_HTTP_CLIENTS=["httpx"])
    assert _init().extensions["observe"].settings.http_clients == ("requests",)


@pytest.mark.parametrize("duration", ["5s", "90s", "1h30m", "2d", "1w", "250ms", "1y"])
def test_prometheus_durations_are_kept_as_written(duration: str) -> None:
    settings = _init(OBSERVE_ALERT_ERROR_FOR=duration).extensions["observe"].settings
    assert settings.alert_error_for == duration


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ('job="shop"', 'job="shop"'),
        ('{job="shop", env=~"prod|eu",}', 'job="shop", env=~"prod|eu"'),
        (' namespace != "dev" ', 'namespace != "dev"'),
        ('app="a\\"b"', 'app="a\\"b"'),
    ],
)
def test_rules_selector_is_label_matchers_with_or_without_braces(given: str, kept: str) -> None:
    settings = _init(OBSERVE_RULES_SELECTOR=given).extensions["observe"].settings
    assert settings.rules_selector == kept


def test_default_rules_selector_quotes_the_service_name() -> None:
    settings = _init(OBSERVE_SERVICE_NAME='my "shop"').extensions["observe"].settings
    assert settings.rules_selector == 'job="my \\"shop\\""'
