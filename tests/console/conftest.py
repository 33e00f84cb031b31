"""Fixtures of the console's tests: apps with the console on, each with a registry and a
tracer provider flask-observe made for it (so its spans take the lean path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest
from flask import Flask
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from ..conftest import make_app

ConsoleApp = Callable[..., Flask]


@pytest.fixture
def console_app() -> Iterator[ConsoleApp]:
    """``console_app(**config)``: the suite's test app with the console on, tracing into a
    provider of its own that exports nothing; the providers are shut down after the test."""
    made: list[TracerProvider] = []

    def factory(**config: Any) -> Flask:
        config.setdefault("OBSERVE_CONSOLE_ENABLED", True)
        config.setdefault("OBSERVE_TRACING_SETUP", "always")
        config.setdefault("OBSERVE_TRACING_EXPORTER", "none")
        app = make_app(CollectorRegistry(), **config)
        provider = app.extensions["observe"].tracer_provider
        if isinstance(provider, TracerProvider):
            made.append(provider)
        return app

    yield factory
    for provider in made:
        provider.shutdown()


def trace_id_of(response: Any) -> str:
    """The trace ID of a response's ``traceresponse`` header."""
    return str(response.headers["traceresponse"].split("-")[1])
