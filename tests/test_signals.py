"""Signals: request_observed, slow_request and function_failed, with their payloads; a
receiver that raises never breaks what sent the signal, and is counted."""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_observe import Observe, counted, get_logger, timed, traced
from flask_observe.signals import (
    function_failed,
    health_changed,
    request_observed,
    slow_request,
)

from .conftest import OrderError, Spans, log_lines, make_app

Received = list[tuple[Any, dict[str, Any]]]


class Recorder:
    """A receiver that keeps what it was sent."""

    def __init__(self) -> None:
        self.received: Received = []

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        self.received.append((sender, kwargs))


def signal_errors(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value("flask_observe_errors_total", {"sink": "signals"})
    assert value is not None
    return value


@pytest.fixture
def traced_app(registry: CollectorRegistry, spans: Spans) -> Flask:
    app = Flask("shop")
    app.config["OBSERVE_SLOW_REQUEST_SECONDS"] = 0.25

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> dict[str, int]:
        return {"id": order_id}

    @app.get("/slow")
    def slow() -> str:
        time.sleep(0.3)
        return "done"

    @app.get("/boom")
    def boom() -> str:
        raise OrderError("payment service exploded")

    Observe(app, registry=registry, tracer_provider=spans.provider)
    return app


# -- request_observed and slow_request --


def test_request_observed_carries_the_requests_facts(traced_app: Flask, spans: Spans) -> None:
    recorder = Recorder()
    with request_observed.connected_to(recorder, traced_app):
        response = traced_app.test_client().get("/orders/5")
    ((sender, facts),) = recorder.received
    assert sender is traced_app
    span = spans.named("GET /orders/<int:order_id>")
    assert facts.pop("duration") > 0
    assert facts == {
        "method": "GET",
        "route": "/orders/<int:order_id>",
        "path": "/orders/5",
        "status": 200,
        "request_id": response.headers["X-Request-ID"],
        "trace_id": format(span.context.trace_id, "032x"),
        "exception": None,
        "error": None,
    }


def test_request_observed_names_an_unhandled_exception(traced_app: Flask) -> None:
    recorder = Recorder()
    with request_observed.connected_to(recorder, traced_app):
        assert traced_app.test_client().get("/boom").status_code == 500
    ((_, facts),) = recorder.received
    assert facts["status"] == 500
    assert facts["route"] == "/boom"
    assert facts["exception"] == "OrderError"
    assert isinstance(facts["error"], OrderError)


def test_request_observed_for_unmatched_and_excluded_paths(traced_app: Flask) -> None:
    recorder = Recorder()
    client = traced_app.test_client()
    with request_observed.connected_to(recorder, traced_app):
        client.get("/nowhere")
        client.get("/metrics")  # excluded: not observed, so not sent
    ((_, facts),) = recorder.received
    assert facts["status"] == 404
    assert facts["route"] is None
    assert facts["path"] == "/nowhere"


def test_a_receiver_for_one_app_hears_nothing_of_another(
    traced_app: Flask, registry: CollectorRegistry
) -> None:
    other = make_app(CollectorRegistry())
    recorder = Recorder()
    with request_observed.connected_to(recorder, other):
        traced_app.test_client().get("/orders/1")
    assert recorder.received == []


def test_slow_request_fires_only_above_the_threshold(traced_app: Flask) -> None:
    observed, slow = Recorder(), Recorder()
    client = traced_app.test_client()
    with (
        request_observed.connected_to(observed, traced_app),
        slow_request.connected_to(slow, traced_app),
    ):
        client.get("/orders/1")
        client.get("/slow")
    assert [facts["route"] for _, facts in observed.received] == [
        "/orders/<int:order_id>",
        "/slow",
    ]
    ((sender, facts),) = slow.received
    assert sender is traced_app
    assert facts["route"] == "/slow"
    assert facts["duration"] > 0.25
    assert facts == observed.received[1][1]


def test_slow_request_alone_is_sent_without_request_observed(traced_app: Flask) -> None:
    slow = Recorder()
    with slow_request.connected_to(slow):
        traced_app.test_client().get("/slow")
    assert len(slow.received) == 1


def test_a_receiver_logs_with_the_requests_ids(
    traced_app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    log = get_logger("shop.alerts")

    def warn(sender: Flask, **facts: Any) -> None:
        log.warning("slow_request", route=facts["route"], duration=facts["duration"])

    capsys.readouterr()
    with slow_request.connected_to(warn, traced_app):
        response = traced_app.test_client().get("/slow")
    (line,) = [line for line in log_lines(capsys) if line["event"] == "slow_request"]
    assert line["level"] == "warning"
    assert line["route"] == "/slow"
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["trace_id"] == response.headers["traceresponse"].split("-")[1]


def test_a_raising_receiver_never_breaks_the_request_and_is_counted(
    traced_app: Flask, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: Any, **facts: Any) -> None:
        raise RuntimeError("receiver bug")

    recorder = Recorder()
    client = traced_app.test_client()
    assert signal_errors(registry) == 0.0
    with (
        caplog.at_level(logging.ERROR, logger="flask_observe"),
        request_observed.connected_to(broken, traced_app),
        request_observed.connected_to(recorder, traced_app),
    ):
        for _ in range(3):
            response = client.get("/orders/2")
            assert response.status_code == 200
            assert response.get_json() == {"id": 2}
    assert len(recorder.received) == 3  # the other receiver still heard every request
    assert signal_errors(registry) == 3.0
    failed = [r for r in caplog.records if "receiver of the request-observed" in r.getMessage()]
    assert len(failed) == 1  # the traceback once; later failures only counted
    assert failed[0].exc_info is not None
    assert (
        registry.get_sample_value(
            "http_requests_total",
            {"method": "GET", "endpoint": "/orders/<int:order_id>", "status": "200"},
        )
        == 3.0
    )


def test_with_signals_off_no_request_signal_is_sent(registry: CollectorRegistry) -> None:
    app = make_app(registry, OBSERVE_SIGNALS_ENABLED=False)
    recorder = Recorder()
    with request_observed.connected_to(recorder), slow_request.connected_to(recorder):
        assert app.test_client().get("/orders/1").status_code == 200
    assert recorder.received == []


def test_a_raising_health_changed_receiver_is_counted(registry: CollectorRegistry) -> None:
    app = Flask("shop")
    app.config["OBSERVE_HEALTH_CACHE_SECONDS"] = 0
    observe = Observe(app, registry=registry)
    healthy = [True]

    def check() -> bool:
        return healthy[0]

    observe.add_health_check("flag", check)

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    client = app.test_client()
    client.get("/healthz")
    healthy[0] = False
    with health_changed.connected_to(broken, app):
        assert client.get("/healthz").status_code == 503
    assert signal_errors(registry) == 1.0


# -- function_failed --


class PaymentDeclined(Exception):
    pass


@timed
def charge(amount: int) -> int:
    if amount < 0:
        raise PaymentDeclined(f"cannot charge {amount}")
    return amount


@counted(name="refund")
def refund(amount: int) -> int:
    if amount < 0:
        raise PaymentDeclined("no refund")
    return amount


@traced("inventory.reserve")
@timed
def reserve(sku: str) -> str:
    if not sku:
        raise LookupError("no sku")
    return sku


@traced
def outer(sku: str) -> str:
    return reserve(sku)


@timed
async def fetch_rate(currency: str) -> float:
    if currency == "XXX":
        raise KeyError(currency)
    return 1.0


@counted
def lines(count: int) -> Iterator[int]:
    for number in range(count):
        if number == 2:
            raise ValueError("line 2 is corrupt")
        yield number


@traced
async def stream_rates() -> AsyncIterator[float]:
    yield 1.0
    raise TimeoutError("rate feed stalled")


def test_function_failed_is_sent_for_each_decorator_with_the_exception(app: Flask) -> None:
    recorder = Recorder()
    with function_failed.connected_to(recorder), app.app_context():
        with pytest.raises(PaymentDeclined) as charged:
            charge(-1)
        with pytest.raises(PaymentDeclined):
            refund(-5)
        with pytest.raises(KeyError):
            asyncio.run(fetch_rate("XXX"))
        with pytest.raises(ValueError, match="corrupt"):
            list(lines(5))

        async def drain() -> None:
            async for _ in stream_rates():
                pass

        with pytest.raises(TimeoutError):
            asyncio.run(drain())
    names = [(kwargs["function"], type(kwargs["exception"])) for _, kwargs in recorder.received]
    assert names == [
        (f"{__name__}.charge", PaymentDeclined),
        ("refund", PaymentDeclined),
        (f"{__name__}.fetch_rate", KeyError),
        (f"{__name__}.lines", ValueError),
        (f"{__name__}.stream_rates", TimeoutError),
    ]
    assert recorder.received[0][1]["exception"] is charged.value
    assert all(sender is app for sender, _ in recorder.received)


def test_stacked_decorators_send_once_and_each_failing_caller_its_own(app: Flask) -> None:
    recorder = Recorder()
    with function_failed.connected_to(recorder), app.app_context():
        with pytest.raises(LookupError):
            reserve("")
        with pytest.raises(LookupError):
            outer("")
    # @traced over @timed on reserve: one signal, from the inner decorator; outer() failed
    # too, with the same exception, and is a signal of its own.
    assert [kwargs["function"] for _, kwargs in recorder.received] == [
        f"{__name__}.reserve",
        f"{__name__}.reserve",
        f"{__name__}.outer",
    ]


def test_function_failed_is_not_sent_on_success_nor_for_an_early_close(app: Flask) -> None:
    recorder = Recorder()
    with function_failed.connected_to(recorder), app.app_context():
        assert charge(3) == 3
        assert reserve("MUG") == "MUG"
        gen = lines(5)
        assert next(gen) == 0
        gen.close()
    assert recorder.received == []


def test_outside_an_app_context_the_sender_is_none() -> None:
    recorder = Recorder()
    with function_failed.connected_to(recorder), pytest.raises(PaymentDeclined):
        charge(-2)
    ((sender, kwargs),) = recorder.received
    assert sender is None
    assert kwargs["function"] == f"{__name__}.charge"


def test_a_raising_receiver_leaves_the_functions_own_exception(
    app: Flask, registry: CollectorRegistry
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    with function_failed.connected_to(broken), app.app_context():
        with pytest.raises(PaymentDeclined, match="cannot charge -1"):
            charge(-1)
        assert charge(1) == 1
    assert signal_errors(registry) == 1.0


def test_function_failed_in_a_request_is_sent_by_that_app(
    traced_app: Flask, registry: CollectorRegistry
) -> None:
    @traced_app.get("/charge")
    def charge_view() -> str:
        try:
            charge(-1)
        except PaymentDeclined:
            return "declined", 402  # type: ignore[return-value]
        return "charged"

    recorder = Recorder()
    with function_failed.connected_to(recorder, traced_app):
        assert traced_app.test_client().get("/charge").status_code == 402
    ((sender, kwargs),) = recorder.received
    assert sender is traced_app
    assert isinstance(kwargs["exception"], PaymentDeclined)


def test_the_exception_still_pickles_after_the_signal() -> None:
    @timed(name="local")
    def local() -> None:
        raise PaymentDeclined("declined")

    recorder = Recorder()
    with function_failed.connected_to(recorder), pytest.raises(PaymentDeclined) as raised:
        local()
    assert len(recorder.received) == 1
    again = pickle.loads(pickle.dumps(raised.value))
    assert str(again) == "declined"
