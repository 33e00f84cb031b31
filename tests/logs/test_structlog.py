"""structlog's events through flask-observe's output, with the real structlog: set up by
configure_structlog, or by a chain of the user's ending in render_to_observe."""

from __future__ import annotations

import builtins
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_observe import Observe, configure_structlog
from flask_observe.logs import ObserveLoggerFactory, render_to_observe

from ..conftest import log_lines
from .helpers import CONTEXT, CORE

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """structlog's configuration is process-wide: each test starts and ends with its
    defaults."""
    structlog.reset_defaults()
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def _app(registry: CollectorRegistry, **config: Any) -> Flask:
    app = Flask("shop")
    app.config.update(config)

    @app.post("/orders")
    def create_order() -> Any:
        # No name: structlog names the stdlib logger after this module, outside "shop".
        structlog.get_logger().info("order_created", order_id=12345, user_id=42, total_cents=9999)
        return {"id": 12345}, 201

    Observe(app, registry=registry)
    return app


def test_a_structlog_line_in_a_request_is_one_line_with_the_requests_fields(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_structlog()
    app = _app(registry)
    app.test_client().post("/orders", headers={"X-Request-ID": "s-1", "traceparent": TRACEPARENT})
    line, access = log_lines(capsys)
    assert list(line) == [*CORE, *CONTEXT, "order_id", "user_id", "total_cents"]
    assert (line["event"], line["level"], line["logger"]) == ("order_created", "info", __name__)
    assert (line["request_id"], line["trace_id"]) == ("s-1", TRACE_ID)
    assert line["span_id"] == access["span_id"]
    assert (line["route"], line["order_id"], line["total_cents"]) == ("/orders", 12345, 9999)


def test_arguments_context_and_any_field_name(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_structlog()
    _app(registry)
    log = structlog.get_logger("shop.payments")
    structlog.contextvars.bind_contextvars(tenant="acme")
    log.info("charged %d cents", 9999, name="Bob", msg="hi", level="gold")
    log.bind(order_id=7).warning("retrying", attempt=2)
    structlog.contextvars.clear_contextvars()
    log.info("after")
    charged, retrying, after = log_lines(capsys)
    assert charged["event"] == "charged 9999 cents"
    assert (charged["tenant"], charged["name"], charged["msg"]) == ("acme", "Bob", "hi")
    assert charged["extra_level"] == "gold"
    assert (retrying["level"], retrying["order_id"], retrying["attempt"]) == ("warning", 7, 2)
    assert "tenant" not in after


def test_redaction_and_levels_hold(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_structlog()
    _app(registry, OBSERVE_LOG_LEVEL="INFO")
    log = structlog.get_logger("billing")
    log.debug("hidden", password="x")
    log.info("login", password="hunter2", headers={"Authorization": "Bearer t", "Accept": "*/*"})
    (line,) = log_lines(capsys)
    assert line["password"] == "[REDACTED]"
    assert line["headers"] == {"Authorization": "[REDACTED]", "Accept": "*/*"}


def test_an_exception_is_the_records(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_structlog()
    _app(registry)
    try:
        {}["missing"]
    except KeyError:
        structlog.get_logger("billing").exception("lookup_failed", key="missing")
    (line,) = log_lines(capsys)
    assert (line["level"], line["exc_type"], line["exc_message"]) == (
        "error",
        "KeyError",
        "'missing'",
    )
    assert line["stack"].startswith("Traceback (most recent call last):")
    assert line["key"] == "missing"


def test_processors_of_the_users_run_before_the_hand_off(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    def add_region(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict["region"] = "eu"
        return event_dict

    configure_structlog(processors=[add_region])
    _app(registry)
    structlog.get_logger("billing").info("invoiced")
    (line,) = log_lines(capsys)
    assert line["region"] == "eu"


def test_the_processor_in_a_chain_of_the_users(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configuration of the user's own: a filtering bound logger, their processors, and
    render_to_observe last, in a format preset. The logger, outside the app's, has the
    configured level by the time filter_by_level looks."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            lambda logger, name, event_dict: {**event_dict, "team": "payments"},
            render_to_observe,
        ],
        logger_factory=ObserveLoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    app = _app(registry, OBSERVE_LOG_FORMAT="datadog")
    app.test_client().post("/orders", headers={"traceparent": TRACEPARENT})
    line, _ = log_lines(capsys)
    assert (line["message"], line["status"], line["team"]) == ("order_created", "info", "payments")
    assert line["dd.trace_id"] == str(int(TRACE_ID[16:], 16))
    assert line["logger"] == {"name": __name__}


def test_a_logger_that_is_not_the_stdlibs_is_refused_with_the_fix() -> None:
    structlog.configure(
        processors=[render_to_observe], logger_factory=structlog.PrintLoggerFactory()
    )
    with pytest.raises(TypeError, match=r"structlog\.stdlib\.LoggerFactory\(\)"):
        structlog.get_logger().info("x")


def test_without_structlog_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_structlog(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "structlog":
            raise ImportError("No module named 'structlog'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "structlog")
    monkeypatch.setattr(builtins, "__import__", no_structlog)
    with pytest.raises(ImportError, match=r"flask-observe\[structlog\]"):
        configure_structlog()
