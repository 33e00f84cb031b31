"""An order service that shows every signal of flask-observe moving.

Orders go through a simulated checkout whose steps have their own latency and failure rate,
stored in SQLite through SQLAlchemy. Run it with ``python -m example_app`` and send it traffic
with ``python -m example_app.load``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Optional

from flask import Flask, current_app
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from flask_observe import Observe, get_logger, sqlalchemy_check
from flask_observe.signals import slow_request

from .jobs import JobQueue
from .models import Database
from .orders import bp
from .settings import Settings, default_database_url, load_settings

__all__ = ["SERVICE_NAME", "add_health_checks", "create_app", "log_slow_request", "observe"]

_log = get_logger(__name__)

#: The ``service`` the metrics are labelled with, unless the config says otherwise.
SERVICE_NAME = "shop"

#: The extension, made once and set up on each app by :func:`create_app`.
observe = Observe()


def _engine() -> Engine:
    """The engine of the app whose health is being checked."""
    engine: Engine = current_app.extensions["example_app"].database.engine
    return engine


def add_health_checks(extension: Observe) -> None:
    """Readiness: the app's own database answers ``SELECT 1`` within 2 seconds. The check
    finds the engine through the app context, so one registration serves every app."""
    extension.add_health_check("database", sqlalchemy_check(_engine), timeout=2.0)


add_health_checks(observe)


def log_slow_request(sender: Flask, **facts: Any) -> None:
    """Warn about a request slower than ``OBSERVE_SLOW_REQUEST_SECONDS``.

    A receiver of :data:`flask_observe.signals.slow_request`. It runs while the request's
    span is current, so the line carries the request's ``trace_id`` (and ``request_id``):
    the trace that shows where the time went is one search away.
    """
    _log.warning(
        "slow_request",
        route=facts["route"],
        status=facts["status"],
        duration_ms=round(facts["duration"] * 1000, 1),
    )


class ExampleState:
    """What the routes need at run time, in ``app.extensions["example_app"]``."""

    __slots__ = ("database", "jobs", "settings")

    def __init__(self, settings: Settings, database: Database, jobs: JobQueue) -> None:
        self.settings = settings
        self.database = database
        #: Background jobs; :meth:`JobQueue.stop` ends its worker.
        self.jobs = jobs


def create_app(
    config: Optional[Mapping[str, Any]] = None,
    *,
    registry: Optional[CollectorRegistry] = None,
    tracer_provider: Optional[TracerProvider] = None,
) -> Flask:
    """Make the order service.

    :param config: config keys that take precedence over the defaults and the environment:
        ``EXAMPLE_*`` settings (see :doc:`/example`), ``OBSERVE_*`` settings, and Flask's own.
    :param registry: where the metrics go; default prometheus_client's global registry. Tests
        pass a fresh :class:`~prometheus_client.CollectorRegistry`.
    :param tracer_provider: where the spans go; default as ``OBSERVE_TRACING_SETUP`` says.
        Tests pass one with an in-memory exporter.
    :raises ValueError: if a setting is invalid, naming it.
    """
    app = Flask(__name__)
    app.config["OBSERVE_SERVICE_NAME"] = SERVICE_NAME
    # A demo on this machine: /healthz shows each check. A real service keeps the default,
    # or sets OBSERVE_HEALTH_TOKEN, since the details name its dependencies.
    app.config["OBSERVE_HEALTH_DETAILS"] = "always"
    # Slow for this service, whose checkout takes about 60 ms: slow_request is sent above it.
    app.config["OBSERVE_SLOW_REQUEST_SECONDS"] = 0.5
    # A demo: the console at /observe, for this machine only (no token is set).
    app.config["OBSERVE_CONSOLE_ENABLED"] = True
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if config:
        app.config.update(config)
    settings = load_settings(app.config, os.environ, instance_path=app.instance_path)

    if registry is None and tracer_provider is None:
        extension = observe
    else:
        extension = Observe(registry=registry, tracer_provider=tracer_provider)
        add_health_checks(extension)
    extension.init_app(app)

    if settings.database_url == default_database_url(app.instance_path):
        os.makedirs(app.instance_path, exist_ok=True)
    database = Database(settings.database_url)
    database.create_tables()
    jobs = JobQueue()
    app.extensions["example_app"] = ExampleState(settings, database, jobs)
    # For this app alone: each app made by the factory has an engine and a queue of its own.
    extension.track_pool(database.engine, "orders", app=app)
    extension.track_queue("jobs", jobs.depth, app=app)
    slow_request.connect(log_slow_request, app)
    app.teardown_appcontext(database.remove_session)
    app.register_blueprint(bp)
    return app
