"""The app the end-to-end tests serve with gunicorn: routes whose status is known in advance.

Every response names the worker process that served it in ``X-Worker-Pid``, so a test can
tell which worker it is about to kill.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from typing import Any, Optional

from flask import Flask, Response, abort, request

from flask_observe import Observe


def create_app(config: Optional[Mapping[str, Any]] = None) -> Flask:
    """The app; *config* is set before ``Observe(app)`` (gunicorn passes none)."""
    app = Flask("e2e")
    app.config.update(config or {})

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    @app.get("/items/<int:item_id>")
    def get_item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            abort(404)
        return {"id": item_id}

    @app.post("/items")
    def create_item() -> Any:
        return {"id": 1}, 201

    @app.get("/fail")
    def fail() -> str:
        raise RuntimeError("the e2e app fails here on purpose")

    @app.get("/slow")
    def slow() -> Response:
        """A first chunk at once (the headers go with it), the rest after ``seconds``: the
        request stays in progress, on a known worker, for that long."""
        seconds = float(request.args.get("seconds", "1"))

        def body() -> Iterator[bytes]:
            yield b"started\n"
            time.sleep(seconds)
            yield b"done\n"

        return Response(body(), mimetype="text/plain")

    @app.after_request
    def name_the_worker(response: Response) -> Response:
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response

    Observe(app)
    return app
