"""What the client tests share: the service called (B), the caller (A), and one call of
each kind the issue names."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Optional

import httpx
import requests
from flask import Flask, Response, redirect, request

from flask_observe import get_logger

from ..conftest import Spans

#: The ways of making a call: requests.get, a requests Session, httpx's sync client, and
#: its async one.
KINDS = ("get", "session", "httpx", "async")
#: Seconds any test call may take.
TIMEOUT = 10.0
#: Seconds B's ``/slow`` takes to answer: longer than a test's short timeout.
SLOW = 0.5

_log = get_logger("shop.calls")


def backend() -> Flask:
    """Service B: answers with the headers it was sent, or with a chosen status."""
    app = Flask("inventory")

    @app.get("/echo")
    def echo() -> dict[str, str]:
        return {name.lower(): value for name, value in request.headers.items()}

    @app.get("/status/<int:code>")
    def status(code: int) -> Response:
        return Response(str(code), status=code)

    @app.get("/moved")
    def moved() -> Response:
        return redirect("/echo")

    @app.get("/slow")
    def slow() -> str:
        time.sleep(SLOW)
        return "late"

    return app


def call(kind: str, url: str, method: str = "GET", **kwargs: Any) -> tuple[int, Any]:
    """Make one call of *kind*; its status and its JSON body (``None`` if not JSON)."""
    kwargs.setdefault("timeout", TIMEOUT)
    if kind == "get":
        response: Any = requests.request(method, url, **kwargs)
    elif kind == "session":
        with requests.Session() as session:
            response = session.request(method, url, **kwargs)
    elif kind == "httpx":
        with httpx.Client() as client:
            response = client.request(method, url, **kwargs)
    elif kind == "async":
        return asyncio.run(call_async(url, method, **kwargs))
    else:
        raise ValueError(kind)
    return response.status_code, _json(response)


async def call_async(url: str, method: str = "GET", **kwargs: Any) -> tuple[int, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.request(method, url, **kwargs)
    return response.status_code, _json(response)


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def caller(spans: Optional[Spans], registry: Any, **config: Any) -> Flask:
    """App A, set up with flask-observe: ``GET /call/<kind>?url=...`` calls *url* and
    answers with B's status and body; ``/call-async`` does it from an ``async`` view."""
    app = Flask("shop")
    app.config.update(config)

    @app.get("/call/<kind>")
    def call_view(kind: str) -> Any:
        status, body = call(kind, request.args["url"], request.args.get("method", "GET"))
        return {"status": status, "body": body}

    @app.get("/call-async")
    async def call_async_view() -> Any:
        _log.info("calling")
        status, body = await call_async(request.args["url"])
        return {"status": status, "body": body}

    @app.get("/hooked")
    def hooked() -> Any:
        """A call whose response hook logs while the call is being made."""

        def hook(response: Any, *args: Any, **kwargs: Any) -> None:
            _log.info("inventory_answered", status=response.status_code)

        response = requests.get(request.args["url"], hooks={"response": hook}, timeout=TIMEOUT)
        return {"status": response.status_code}

    if spans is None:
        from flask_observe import Observe

        Observe(app, registry=registry)
    else:
        spans.observe(app, registry=registry)
    return app
