"""The console in a real browser: headless Chromium (Debian's ``chromium``, driven by
Playwright) against the example order service on a real server on 127.0.0.1.

The routes page shows each route with p50/p95/p99 and the health checks; the page of a
trace reached from a response's ``traceresponse`` ID shows its spans and log lines; no
request leaves the app's origin; no script error. The suite takes the screenshot of the
docs each run (into the test's temporary directory); with ``FLASK_OBSERVE_SCREENSHOTS=1``
it also writes it to ``docs/_static``.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from example_app import create_app
from example_app.settings import STEPS, delay_name, failure_rate_name

from ..conftest import Spans, require_binary, require_module, serving

ROOT = Path(__file__).resolve().parents[2]
#: Where the docs' screenshots go when FLASK_OBSERVE_SCREENSHOTS=1.
DOCS_STATIC = ROOT / "docs" / "_static"
#: Chromium without anything that talks to the network on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Milliseconds any one browser step may take.
STEP_MS = 15_000

ORDER = {
    "user_id": 7,
    "items": [{"sku": "MUG-0042", "quantity": 2}, {"sku": "PEN-0007", "quantity": 1}],
    "total_cents": 2550,
}
#: Short steps that never fail: a few seconds of traffic, the same pages every run.
QUIET = {
    **{delay_name(step): 0.004 for step in STEPS},
    **{failure_rate_name(step): 0 for step in STEPS},
    "EXAMPLE_BUG_RATE": 0,
    "EXAMPLE_WAREHOUSE_DELAY": 0,
}


@pytest.fixture
def shop(tmp_path: Path, spans: Spans) -> Iterator[Flask]:
    """The example service with its console on, on a fresh database and registry."""
    config = {
        **QUIET,
        "EXAMPLE_DATABASE_URL": f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        "OBSERVE_CONSOLE_ENABLED": True,
    }
    app = create_app(config, registry=CollectorRegistry(), tracer_provider=spans.provider)
    yield app
    app.extensions["example_app"].jobs.stop()
    app.extensions["example_app"].database.dispose()


def _send(port: int, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"} if data else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.headers
    except urllib.error.HTTPError as error:
        error.read()
        headers = error.headers
        error.close()
        return headers


def _traffic(port: int) -> str:
    """Requests to every route; the trace ID of an order's creation."""
    created = _send(port, "POST", "/orders", ORDER)
    for _ in range(12):
        _send(port, "POST", "/orders", ORDER)
    for order_id in range(1, 9):
        _send(port, "GET", f"/orders/{order_id}")
    _send(port, "GET", "/orders/999999")  # a 404
    _send(port, "POST", "/orders", {"user_id": "seven"})  # a 400
    _send(port, "GET", "/orders")
    _send(port, "GET", "/healthz/ready")
    return str(created["traceresponse"].split("-")[1])


def test_the_console_in_a_browser(shop: Flask, tmp_path: Path) -> None:
    chromium = require_binary("chromium", package="chromium")
    sync_api = require_module("playwright.sync_api")
    with serving(shop) as port:
        trace_id = _traffic(port)
        origin = f"http://127.0.0.1:{port}"
        requested: list[str] = []
        errors: list[str] = []
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(STEP_MS)
                page.on("request", lambda request: requested.append(request.url))
                page.on(
                    "console",
                    lambda message: (
                        errors.append(message.text) if message.type == "error" else None
                    ),
                )
                page.on("pageerror", lambda error: errors.append(str(error)))

                page.goto(f"{origin}/observe/")
                routes = page.locator("#routes tbody tr")
                rows = {
                    " ".join(routes.nth(i).locator("td").nth(j).inner_text() for j in (0, 1)): [
                        routes.nth(i).locator(f"td.{q}").inner_text() for q in ("p50", "p95", "p99")
                    ]
                    for i in range(routes.count())
                }
                assert set(rows) >= {
                    "POST /orders",
                    "GET /orders/<int:order_id>",
                    "GET /orders",
                }
                for quantiles in rows.values():
                    assert all(q.endswith(("ms", " s")) for q in quantiles), rows
                health = page.locator("#health").inner_text()
                assert "database" in health
                assert "pass" in health
                assert "orders" in page.locator("#saturation").inner_text()
                page.screenshot(path=str(tmp_path / "console-routes.png"), full_page=True)

                page.goto(f"{origin}/observe/traces/{trace_id}")
                spans = page.locator("#spans").inner_text()
                assert "POST /orders" in spans
                assert "process_order" in spans
                lines = page.locator("#lines").inner_text()
                # The order's own lines, not any request's: its checkout steps and its
                # access line, with the route it was created on.
                assert "checkout_step" in lines
                assert "request" in lines
                assert "/orders" in lines
                page.locator("#spans summary").first.click()  # a span's attributes open
                assert "http.route" in page.locator("#spans").inner_text()
                page.screenshot(path=str(tmp_path / "console-trace.png"), full_page=True)

                page.goto(f"{origin}/observe/traces?route=/orders")
                page.locator("#traces a").first.click()
                page.wait_for_url("**/observe/traces/*")
                assert page.locator("#spans").count() == 1

                page.goto(f"{origin}/observe/logs?level=warning")
                page.goto(f"{origin}/observe/logs")
                assert page.locator("#lines tbody tr").count() > 0
            finally:
                browser.close()
    assert errors == []
    strangers = [url for url in requested if not url.startswith(origin + "/")]
    assert strangers == []
    for name in ("console-routes.png", "console-trace.png"):
        shot = (tmp_path / name).read_bytes()
        assert shot.startswith(b"\x89PNG")
        assert len(shot) > 20_000
        if os.environ.get("FLASK_OBSERVE_SCREENSHOTS") == "1":
            DOCS_STATIC.mkdir(exist_ok=True)
            (DOCS_STATIC / name).write_bytes(shot)
