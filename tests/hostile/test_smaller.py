"""The smaller faults: a warning that names the right exporter, and a depth of any number."""

from __future__ import annotations

import io
import logging
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from flask import Flask
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from prometheus_client import CollectorRegistry

from flask_observe import Observe
from flask_observe.export.processor import CountingExporter
from flask_observe.metrics import HttpMetrics

from ..conftest import sample_value, scrape


def _one_span() -> Any:
    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("work")
    span.end()
    return span


def test_a_failed_console_export_is_not_blamed_on_a_collector(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = io.StringIO()
    closed.close()
    metrics = HttpMetrics.for_registry(CollectorRegistry(), (1.0,), (1.0,))
    exporter = CountingExporter(ConsoleSpanExporter(out=closed), metrics.spans_dropped_by)
    with (
        caplog.at_level(logging.WARNING, "flask_observe"),
        pytest.raises(ValueError, match="closed file"),
    ):
        exporter.export([_one_span()])
    assert "Check where the ConsoleSpanExporter writes them." in caplog.text
    assert "OTLP" not in caplog.text
    assert "collector" not in caplog.text


@pytest.mark.parametrize(
    ("depth", "exported"),
    [(Decimal("12"), 12.0), (Fraction(7, 2), 3.5), (3, 3.0), (2.5, 2.5)],
)
def test_a_depth_may_be_any_finite_real_number(depth: Any, exported: float) -> None:
    app = Flask("shop")
    observe = Observe(app, registry=CollectorRegistry())
    observe.track_queue("jobs", lambda: depth)
    families = scrape(app.test_client())
    assert sample_value(families["app_queue_depth"], queue="jobs") == exported


@pytest.mark.parametrize("depth", [float("nan"), float("inf"), "12", True, None])
def test_a_depth_that_is_no_finite_number_is_counted_not_shown(depth: Any) -> None:
    app = Flask("shop")
    observe = Observe(app, registry=CollectorRegistry())
    observe.track_queue("jobs", lambda: depth)
    families = scrape(app.test_client())
    depths = families.get("app_queue_depth")
    assert depths is None or sample_value(depths, queue="jobs") is None
    errors = families["app_queue_depth_errors"]
    assert sample_value(errors, "_total", queue="jobs") == 1.0


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("cannot say")

    __repr__ = __str__


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot say")


def test_hostile_log_fields_still_make_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    """bytes as base64, as the docs say; an object or exception that cannot be printed."""
    import json

    from flask_observe import get_logger

    app = Flask("shop")
    Observe(app, registry=CollectorRegistry())
    log = get_logger("hostile.fields")
    capsys.readouterr()
    with app.app_context():
        log.info("bytes", data=b"\x00abc\xff")
        log.info("object", thing=_Unprintable())
        log.info("exception", error=_UnprintableError())
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    data, thing, error = (json.loads(line) for line in lines)
    assert data["data"] == "AGFiY_8="
    assert thing["thing"] == "__could_not_encode__"
    assert error["event"] == "exception"
    assert "log_error" in error
