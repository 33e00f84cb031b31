"""@timed and @counted: every kind of function, bare or with arguments, any registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Optional

import pytest
from flask import Flask
from prometheus_client import REGISTRY, CollectorRegistry

from flask_observe import counted, timed

MODULE = __name__


def _duration_count(
    registry: CollectorRegistry, function: str, outcome: str = "success"
) -> Optional[float]:
    return registry.get_sample_value(
        "app_function_duration_seconds_count", {"function": function, "outcome": outcome}
    )


def _bucket(registry: CollectorRegistry, function: str, le: str) -> Optional[float]:
    return registry.get_sample_value(
        "app_function_duration_seconds_bucket",
        {"function": function, "outcome": "success", "le": le},
    )


def _calls(registry: CollectorRegistry, function: str, outcome: str = "success") -> Optional[float]:
    return registry.get_sample_value(
        "app_function_calls_total", {"function": function, "outcome": outcome}
    )


@timed
def process_order(order_id: int) -> int:
    """Charge and ship an order."""
    if order_id < 0:
        raise ValueError("no such order")
    return order_id * 2


@counted
def send_email(to: str) -> str:
    return to


def test_bare_timed_keeps_the_function_and_times_it(
    app: Flask, registry: CollectorRegistry
) -> None:
    assert process_order.__name__ == "process_order"
    assert process_order.__doc__ == "Charge and ship an order."
    name = f"{MODULE}.process_order"
    with app.app_context():
        assert process_order(21) == 42
        with pytest.raises(ValueError, match="no such order"):
            process_order(-1)
    assert _duration_count(registry, name) == 1.0
    assert _duration_count(registry, name, "error") == 1.0


def test_timed_inside_a_request_records_into_that_apps_registry(
    app: Flask, registry: CollectorRegistry
) -> None:
    @app.get("/checkout")
    def checkout() -> str:
        return str(process_order(1))

    before = _duration_count(REGISTRY, f"{MODULE}.process_order") or 0.0
    app.test_client().get("/checkout")
    assert _duration_count(registry, f"{MODULE}.process_order") == 1.0
    assert (_duration_count(REGISTRY, f"{MODULE}.process_order") or 0.0) == before


def test_outside_any_app_context_the_default_registry_is_used() -> None:
    name = f"{MODULE}.send_email"
    before = _calls(REGISTRY, name) or 0.0
    send_email("a@example.com")
    assert _calls(REGISTRY, name) == before + 1


def test_timed_with_name_and_buckets(app: Flask, registry: CollectorRegistry) -> None:
    @timed(name="checkout.charge", buckets=(0.001, 0.5, 5.0))
    def charge() -> None:
        time.sleep(0.002)

    with app.app_context():
        charge()
    assert _bucket(registry, "checkout.charge", "0.001") == 0.0
    assert _bucket(registry, "checkout.charge", "0.5") == 1.0
    labels = {"function": "checkout.charge", "outcome": "success"}
    assert registry.get_sample_value("app_function_duration_seconds_sum", labels) >= 0.002


def test_functions_with_different_buckets_share_one_family(
    app: Flask, registry: CollectorRegistry
) -> None:
    @timed(name="fast", buckets=(0.001, 0.002))
    def fast() -> None:
        pass

    @timed(name="slow", buckets=(1.0, 10.0))
    def slow() -> None:
        pass

    with app.app_context():
        fast()
        slow()
    families = [m for m in registry.collect() if m.name == "app_function_duration_seconds"]
    assert len(families) == 1
    assert families[0].type == "histogram"
    le = {(s.labels["function"], s.labels["le"]) for s in families[0].samples if "le" in s.labels}
    assert ("fast", "0.002") in le
    assert ("slow", "10.0") in le


def test_one_label_cannot_have_two_bucket_layouts() -> None:
    @timed(name="unique.layout", buckets=(0.1, 1.0))
    def first() -> None:
        pass

    with pytest.raises(ValueError, match=r"unique\.layout"):

        @timed(name="unique.layout", buckets=(0.5,))
        def second() -> None:
            pass


def test_bad_buckets_fail_at_decoration() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        timed(buckets=(1.0, 0.5))


def test_async_function(app: Flask, registry: CollectorRegistry) -> None:
    @timed
    @counted
    async def check_inventory(sku: str) -> str:
        await asyncio.sleep(0.001)
        if sku == "gone":
            raise LookupError(sku)
        return sku

    assert asyncio.iscoroutinefunction(check_inventory)

    async def run() -> None:
        assert await check_inventory("book") == "book"
        with pytest.raises(LookupError):
            await check_inventory("gone")

    with app.app_context():
        asyncio.run(run())
    name = f"{MODULE}.test_async_function.<locals>.check_inventory"
    assert _duration_count(registry, name) == 1.0
    assert _duration_count(registry, name, "error") == 1.0
    assert _calls(registry, name) == 1.0
    assert _calls(registry, name, "error") == 1.0


def test_generator_is_timed_over_its_whole_iteration(
    app: Flask, registry: CollectorRegistry
) -> None:
    @timed(name="export.rows")
    def rows(n: int) -> Iterator[int]:
        for i in range(n):
            time.sleep(0.002)
            yield i

    with app.app_context():
        assert list(rows(3)) == [0, 1, 2]
        early = rows(10)
        next(early)
        early.close()  # stopping early is not a failure
    labels = {"function": "export.rows", "outcome": "success"}
    assert registry.get_sample_value("app_function_duration_seconds_count", labels) == 2.0
    assert registry.get_sample_value("app_function_duration_seconds_sum", labels) >= 0.006


def test_failing_generator_is_an_error(app: Flask, registry: CollectorRegistry) -> None:
    @counted(name="export.broken")
    def broken() -> Iterator[int]:
        yield 1
        raise OSError("disk full")

    with app.app_context(), pytest.raises(OSError, match="disk full"):
        list(broken())
    assert _calls(registry, "export.broken", "error") == 1.0


def test_async_generator(app: Flask, registry: CollectorRegistry) -> None:
    @timed(name="stream.events")
    async def events() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    async def consume() -> list[int]:
        return [i async for i in events()]

    with app.app_context():
        assert asyncio.run(consume()) == [0, 1, 2]
    assert _duration_count(registry, "stream.events") == 1.0


def test_each_call_gets_a_fresh_timer(app: Flask, registry: CollectorRegistry) -> None:
    @timed(name="nap", buckets=(0.05, 5.0))
    def nap(seconds: float) -> None:
        time.sleep(seconds)

    with app.app_context():
        nap(0.0)
        nap(0.1)
    # Bounds far from both naps, so that a loaded machine cannot move a call across one.
    assert _bucket(registry, "nap", "0.05") == 1.0
    assert _bucket(registry, "nap", "5.0") == 2.0


def test_a_registry_of_another_app_is_not_touched(registry: CollectorRegistry) -> None:
    from .conftest import make_app

    other_registry = CollectorRegistry()
    first, second = make_app(registry), make_app(other_registry)
    with first.app_context():
        process_order(1)
    with second.app_context():
        process_order(1)
        process_order(2)
    assert _duration_count(registry, f"{MODULE}.process_order") == 1.0
    assert _duration_count(other_registry, f"{MODULE}.process_order") == 2.0
