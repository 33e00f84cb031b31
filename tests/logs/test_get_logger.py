"""get_logger's lines are written whatever the logger's name, each once, wherever else the
record goes: inside the app's logger tree or outside it, with the root logger configured
by flask-observe or by the user, and in a one-file app served by ``flask run``."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_observe import Observe, get_logger
from flask_observe.logs import ObserveHandler

from ..conftest import KeptRecords, log_lines

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

#: Made before any app is set up, as a helper module does at import.
early = get_logger("orders")


def _app(registry: CollectorRegistry, **config: Any) -> Flask:
    app = Flask("shop")
    app.config.update(config)

    @app.post("/orders")
    def create_order() -> Any:
        early.info("order_created", order_id=12345)
        get_logger("billing.invoices").info("invoice_sent", order_id=12345)
        get_logger("shop.stock").info("stock_reserved", order_id=12345)
        return {"id": 12345}, 201

    Observe(app, registry=registry)
    return app


def _events(lines: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The lines by their event."""
    events: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        events.setdefault(line["event"], []).append(line)
    return events


def test_a_logger_outside_the_apps_tree_is_written_with_the_request_fields(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(registry)
    app.test_client().post("/orders", headers={"X-Request-ID": "r-1", "traceparent": TRACEPARENT})
    events = _events(log_lines(capsys))
    for event, logger in [
        ("order_created", "orders"),  # made before Observe(app)
        ("invoice_sent", "billing.invoices"),  # made in the request
        ("stock_reserved", "shop.stock"),  # below the app's logger
    ]:
        (line,) = events[event]
        assert line["logger"] == logger
        assert line["level"] == "info"  # the root's WARNING does not apply
        assert line["request_id"] == "r-1"
        assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
        assert (line["method"], line["route"], line["path"]) == ("POST", "/orders", "/orders")
        assert line["order_id"] == 12345
    assert len(events["request"]) == 1


def test_a_logger_outside_gets_the_configured_level_and_one_inside_keeps_its_own(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    _app(registry, OBSERVE_LOG_LEVEL="WARNING")
    assert logging.getLogger("orders").level == logging.WARNING
    assert logging.getLogger("shop.stock").level == logging.NOTSET
    early.info("hidden")
    early.warning("shown")
    assert [line["event"] for line in log_lines(capsys)] == ["shown"]

    _app(CollectorRegistry(), OBSERVE_LOG_LEVEL="DEBUG")
    early.debug("debug now")
    assert [line["event"] for line in log_lines(capsys)] == ["debug now"]


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"OBSERVE_LOG_ROOT": True},
        {"OBSERVE_LOG_LOGGERS": ["orders", "billing"]},
    ],
    ids=["app-tree", "log-root", "log-loggers"],
)
def test_each_line_is_written_once_whatever_else_has_the_handler(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str], config: dict[str, Any]
) -> None:
    app = _app(registry, **config)
    app.test_client().post("/orders")
    events = _events(log_lines(capsys))
    assert {event: len(lines) for event, lines in events.items()} == {
        "order_created": 1,
        "invoice_sent": 1,
        "stock_reserved": 1,
        "request": 1,
    }


def test_a_users_root_handler_still_gets_each_record_once(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    """A root logger configured by the user (logging.basicConfig, say) is the user's: its
    handler gets the records as before, and flask-observe writes each line once."""
    app = _app(registry)
    kept = KeptRecords()
    logging.getLogger().addHandler(kept)
    try:
        app.test_client().post("/orders")
    finally:
        logging.getLogger().removeHandler(kept)
    events = _events(log_lines(capsys))
    assert [len(events[e]) for e in ("order_created", "invoice_sent", "stock_reserved")] == [1] * 3
    mine = [r.name for r in kept.records if r.name != "flask_observe.access"]
    assert sorted(mine) == ["billing.invoices", "orders", "shop.stock"]


def test_a_logger_that_does_not_propagate_is_written_all_the_same(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(registry)
    logging.getLogger("shop.stock").propagate = False
    try:
        app.test_client().post("/orders")
    finally:
        logging.getLogger("shop.stock").propagate = True
    assert len(_events(log_lines(capsys))["stock_reserved"]) == 1


def test_a_later_setup_gives_adopted_loggers_its_handler_in_place_of_the_earlier_one(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    _app(registry)
    _app(CollectorRegistry(), OBSERVE_LOG_FORMAT="console")
    handlers = [h for h in logging.getLogger("orders").handlers if isinstance(h, ObserveHandler)]
    assert len(handlers) == 1
    early.info("once", order_id=7)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("INFO     orders once order_id=7")


def test_the_root_logger_is_not_adopted(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    _app(registry)
    get_logger().warning("root line")
    assert not any(isinstance(h, ObserveHandler) for h in logging.getLogger().handlers)
    assert "root line" not in capsys.readouterr().err  # Python's last resort wrote it bare


def test_without_json_logging_no_handler_is_attached(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    from flask_observe.logs import install

    install._installed = None  # a process where no app set logging up
    _app(registry, OBSERVE_LOG_JSON=False)
    get_logger("elsewhere.off").warning("plain")
    assert logging.getLogger("elsewhere.off").handlers == []


# -- a one-file app under flask run --

ONE_FILE_APP = """
    from flask import Flask
    from flask_observe import Observe, configure_structlog

    import helpers

    app = Flask(__name__)
    Observe(app)
    configure_structlog()

    @app.post("/orders")
    def create_order():
        helpers.place_order(12345)
        return {"id": 12345}, 201
"""

HELPERS = """
    import structlog
    from flask_observe import get_logger

    log = get_logger(__name__)
    orders = get_logger("orders")
    slog = structlog.get_logger()

    def place_order(order_id):
        log.info("order_placed", order_id=order_id)
        orders.info("order_created", order_id=order_id)
        slog.info("order_logged", order_id=order_id)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post_when_up(url: str, headers: dict[str, str], deadline: float) -> int:
    while True:
        try:
            request = urllib.request.Request(url, data=b"", headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_one_file_app_under_flask_run_writes_its_helper_modules_lines(tmp_path: Path) -> None:
    """get_logger's lines and structlog's, from a module beside app.py."""
    (tmp_path / "app.py").write_text(textwrap.dedent(ONE_FILE_APP))
    (tmp_path / "helpers.py").write_text(textwrap.dedent(HELPERS))
    port = _free_port()
    # No collector to export spans to: the spans are made, their IDs logged, and dropped.
    env = {**os.environ, "FLASK_APP": "app", "OTEL_TRACES_EXPORTER": "none"}
    env.pop("FLASK_DEBUG", None)
    command = [sys.executable, "-m", "flask", "run", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        headers = {"X-Request-ID": "one-file", "traceparent": TRACEPARENT}
        url = f"http://127.0.0.1:{port}/orders"
        assert _post_when_up(url, headers, time.monotonic() + 30) == 201
    finally:
        server.terminate()
        try:
            _, err = server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate(timeout=10)
    # Every line is JSON, werkzeug's banner and request lines too (they go through
    # flask-observe's handler while JSON logs are on).
    events = _events([json.loads(line) for line in err.splitlines() if line.strip()])
    for event, logger in [
        ("order_placed", "helpers"),
        ("order_created", "orders"),
        ("order_logged", "helpers"),  # structlog's, named after the module
    ]:
        (line,) = events[event]
        assert line["logger"] == logger
        assert line["service"] == "app"
        assert line["request_id"] == "one-file"
        assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
        assert line["route"] == "/orders"
        assert line["order_id"] == 12345
    (access,) = events["request"]
    assert (access["status"], access["request_id"]) == (201, "one-file")
