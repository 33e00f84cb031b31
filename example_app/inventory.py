"""The inventory service: a second, small Flask app the order service calls over HTTP.

``POST /reservations`` reserves the items of an order, ``{"items": [{"sku": ..., "quantity":
...}]}``: it takes the inventory step's time (``EXAMPLE_CHECK_INVENTORY_DELAY``, give or take
half) and refuses at its failure rate with a 409. It is set up with flask-observe as the
service ``inventory``, so a slow order's trace continues here, under the order service's
call, and this service's log lines carry the same ``trace_id``.

``python -m example_app`` serves it next to the order service and points the checkout at
it; ``flask --app example_app.inventory:create_inventory_app run --port 5001`` serves it
alone.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping
from typing import Any, Optional

from flask import Flask, current_app, jsonify, request
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from flask_observe import Observe, get_logger

from .settings import Step, load_settings

__all__ = ["SERVICE_NAME", "create_inventory_app"]

#: The ``service`` of the inventory's metrics, spans and log lines.
SERVICE_NAME = "inventory"

_log = get_logger(__name__)


def create_inventory_app(
    config: Optional[Mapping[str, Any]] = None,
    *,
    registry: Optional[CollectorRegistry] = None,
    tracer_provider: Optional[TracerProvider] = None,
) -> Flask:
    """Make the inventory service.

    :param config: config keys that take precedence over the defaults and the environment:
        ``EXAMPLE_CHECK_INVENTORY_*`` and ``OBSERVE_*`` settings.
    :param registry: where the metrics go; default prometheus_client's global registry.
    :param tracer_provider: where the spans go; default a provider of its own (see below).
    :raises ValueError: if a setting is invalid, naming it.
    """
    app = Flask(__name__)
    app.config["OBSERVE_SERVICE_NAME"] = SERVICE_NAME
    # A provider of its own, so that its spans name this service even in the process of
    # the order service, which has set the global one.
    app.config["OBSERVE_TRACING_SETUP"] = "always"
    if config:
        app.config.update(config)
    step = load_settings(app.config, os.environ, instance_path=app.instance_path).checkout
    app.extensions["example_inventory"] = step.check_inventory
    Observe(app, registry=registry, tracer_provider=tracer_provider)

    @app.post("/reservations")
    def reserve() -> Any:
        """Reserve the items: 200, or 409 for an item out of stock."""
        items = (request.get_json(silent=True) or {}).get("items") or []
        step: Step = current_app.extensions["example_inventory"]
        start = time.perf_counter()
        if step.delay > 0:
            time.sleep(step.delay * random.uniform(0.5, 1.5))
        failed = step.failure_rate > 0 and random.random() < step.failure_rate
        # Inside this request's span, a child of the order service's call: the line
        # carries the order's trace_id.
        _log.info(
            "inventory_reserved",
            items=len(items),
            duration_ms=round((time.perf_counter() - start) * 1000, 3),
            failed=failed,
        )
        if failed:
            sku = random.choice(items).get("sku") if items else None
            return jsonify(error="out_of_stock", sku=sku), 409
        return jsonify(reserved=len(items))

    return app
