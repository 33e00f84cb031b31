"""One fixed set of requests and scrapes, to compare one process with multiprocess mode.

:func:`run` serves it in the calling process. :func:`main`, called in a process started
with ``PROMETHEUS_MULTIPROC_DIR`` set, serves it where prometheus_client chose its
multiprocess files when first imported, and prints the scrapes as JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
from typing import Optional

import httpx
import requests
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine
from sqlalchemy.pool import QueuePool

from flask_observe import Observe, counted, timed

from .conftest import make_app

OPENMETRICS = "application/openmetrics-text; version=1.0.0"

#: Where the outgoing calls go: a port nothing listens on, refused at once, and the same in
#: every process (a server's port would differ, and with it the ``peer`` label).
REFUSED = "http://127.0.0.1:1/stock"

#: Every kind of request the HTTP metrics tell apart: statuses, an exception, no route, a
#: method the route does not take, a method nobody knows, a request body, a streamed
#: response. (Multiprocess mode labels a request before Flask routes it: the labels must
#: come out the same.)
REQUESTS = (
    ("GET", "/orders/1", None),
    ("GET", "/orders/2", None),
    ("GET", "/orders/0", None),
    ("DELETE", "/orders/1", None),
    ("BREW", "/orders/1", None),
    ("HEAD", "/orders/3", None),
    ("POST", "/orders", b'{"sku": "MUG-0042"}' * 20),
    ("GET", "/boom", None),
    ("GET", "/no/such/path", None),
    ("GET", "/stream", None),
)


@timed
def price_order() -> int:
    return 42


@counted
def reserve_stock() -> None:
    raise LookupError("out of stock")


def _broken_depth() -> int:
    raise ConnectionError("the broker is down")


def run(registry: Optional[CollectorRegistry], folder: str) -> dict[str, str]:
    """Serve the scenario on a fresh app; return its scrapes, by format. *folder* holds the
    SQLite database of the tracked pool."""
    observe = Observe(registry=registry)
    observe.add_health_check("database", lambda: True)
    engine = create_engine(
        f"sqlite:///{os.path.join(folder, 'scenario.sqlite3')}",
        poolclass=QueuePool,
        pool_size=2,
        max_overflow=1,
    )
    observe.track_pool(engine, "orders")
    jobs: queue.Queue[int] = queue.Queue()
    for job in range(3):
        jobs.put(job)
    observe.track_queue("jobs", jobs.qsize)
    observe.track_queue("broker", _broken_depth)
    app = make_app(registry, observe=observe)
    client = app.test_client()
    for method, path, body in REQUESTS:
        client.open(path, method=method, data=body).close()
    with app.app_context():
        price_order()
        with contextlib.suppress(LookupError):
            reserve_stock()
        with contextlib.suppress(requests.ConnectionError):
            requests.get(REFUSED, timeout=5)
        with contextlib.suppress(httpx.ConnectError):
            httpx.post(REFUSED, timeout=5)
    client.get("/healthz/ready").close()
    scrapes = {}
    try:
        with engine.connect(), engine.connect():  # two of three in use while scraped
            engine.connect().close()  # and one that came back
            for name, accept in (("text", "text/plain"), ("openmetrics", OPENMETRICS)):
                response = client.get("/metrics", headers={"Accept": accept})
                scrapes[name] = response.get_data(as_text=True)
                response.close()
    finally:
        engine.dispose()
    return scrapes


def main(folder: str) -> None:
    """Print :func:`run`'s scrapes as JSON, for a test that started this process."""
    print(json.dumps(run(None, folder)))
