"""The console's blueprint: its pages, its JSON API, its login form and its static files.

Pages are rendered by a Jinja environment of the console's own, over its own templates
only: autoescaping is always on whatever the app configures, and no template of the app's
(a ``console/layout.html`` of its own) can take the place of one of these. Nothing the
request carries is marked safe; charts and waterfall bars are SVG drawn from numbers.
"""

from __future__ import annotations

import hmac
import math
from pathlib import Path
from typing import Any, Optional

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    request,
    url_for,
)
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .._version import __version__
from ..config import Settings
from .access import COOKIE, cookie_value, secure, verdict
from .api import LEVELS, logs_data, routes_data, trace_data, traces_data
from .install import Console

__all__ = ["console_blueprint"]

_HERE = Path(__file__).resolve().parent
#: The name of the blueprint, and the prefix of its endpoints.
NAME = "flask_observe_console"
#: The refresh periods the routes page offers, in seconds.
REFRESH = (5, 10, 30)

_env: Optional[Environment] = None


def _environment() -> Environment:
    global _env
    if _env is None:
        env = Environment(
            loader=FileSystemLoader(str(_HERE / "templates")),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(seconds=_seconds, percent=_percent, number=_number, quantity=_quantity)
        _env = env
    return _env


def _seconds(value: Optional[float]) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if value < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s"


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2%}"


def _number(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _quantity(value: float, unit: str) -> str:
    if unit == "bytes":
        for size, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if value >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} B"
    return f"{_number(value)} {unit}".strip()


def _console() -> Console:
    console: Console = current_app.extensions["observe"].console
    return console


def _render(template: str, status: int = 200, **context: Any) -> Response:
    console = _console()
    html = (
        _environment()
        .get_template(f"console/{template}")
        .render(
            url_for=url_for,
            version=__version__,
            service=console.settings.service_name,
            token_set=console.settings.console_token is not None,
            **context,
        )
    )
    return Response(html, status, mimetype="text/html")


def _api() -> bool:
    return request.blueprint == NAME and (request.endpoint or "").startswith(NAME + ".api_")


def _guard() -> Optional[Response]:
    """Each request of the blueprint but its static files and login form: allowed, or
    answered here (see :mod:`.access`)."""
    endpoint = request.endpoint or ""
    if endpoint in (f"{NAME}.static", f"{NAME}.login", f"{NAME}.logout"):
        return None
    why = verdict(request, _console().settings.console_token)
    if why is None:
        return None
    if why == "hidden":
        abort(404)
    if _api():
        response = jsonify(error="a bearer token is required (OBSERVE_CONSOLE_TOKEN)")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return _render("login.html", 401, failed=False, page=None)


def _headers(response: Response) -> Response:
    return secure(response)


def _filter(name: str) -> Optional[str]:
    """A query parameter, clipped: filters are compared, never shown unescaped."""
    value = request.args.get(name, "").strip()
    return value[:256] or None


# -- pages --


def routes_page() -> Response:
    state = current_app.extensions["observe"]
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    data = routes_data(_console(), app, state)
    refresh = request.args.get("refresh", type=int)
    return _render(
        "routes.html",
        data=data,
        refresh=refresh if refresh in REFRESH else None,
        refresh_choices=REFRESH,
        page="routes",
    )


def traces_page() -> Response:
    data = traces_data(_console(), route=_filter("route"), status=_filter("status"))
    return _render("traces.html", data=data, page="traces")


def trace_page(trace_id: str) -> Response:
    data = trace_data(_console(), trace_id)
    if data is None:
        return _render(
            "missing.html",
            404,
            trace_id=trace_id[:64],
            size=_console().spans.size,
            page="traces",
        )
    return _render("trace.html", data=data, page="traces")


def logs_page() -> Response:
    data = logs_data(
        _console(),
        level=_filter("level"),
        request_id=_filter("request_id"),
        trace_id=_filter("trace_id"),
    )
    return _render("logs.html", data=data, levels=LEVELS, page="logs")


def login() -> Response:
    """The login form (GET) and its answer (POST): a right token sets the cookie."""
    token = _console().settings.console_token
    if token is None:
        return redirect(url_for(f"{NAME}.routes"), 303)  # type: ignore[return-value]
    if request.method == "GET":
        return _render("login.html", failed=False, page=None)
    given = request.form.get("token", "")
    if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8")):
        return _render("login.html", 401, failed=True, page=None)
    response: Response = redirect(url_for(f"{NAME}.routes"), 303)  # type: ignore[assignment]
    response.set_cookie(COOKIE, cookie_value(token), **_cookie_options())
    return response


def logout() -> Response:
    """Forget the login cookie."""
    response: Response = redirect(url_for(f"{NAME}.login"), 303)  # type: ignore[assignment]
    response.delete_cookie(COOKIE, **_cookie_options())
    return response


def _cookie_options() -> dict[str, Any]:
    """The login cookie's attributes; deleting it takes the same ones as setting it."""
    return {
        "path": _console().settings.console_path + "/",
        "httponly": True,
        "samesite": "Strict",
        "secure": request.is_secure,
    }


# -- the JSON API --


def api_routes() -> Response:
    state = current_app.extensions["observe"]
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return jsonify(routes_data(_console(), app, state))


def api_traces() -> Response:
    return jsonify(traces_data(_console(), route=_filter("route"), status=_filter("status")))


def api_trace(trace_id: str) -> Response:
    data = trace_data(_console(), trace_id)
    if data is None:
        response = jsonify(error="no span of this trace is kept by this process")
        response.status_code = 404
        return response
    return jsonify(data)


def api_logs() -> Response:
    return jsonify(
        logs_data(
            _console(),
            level=_filter("level"),
            request_id=_filter("request_id"),
            trace_id=_filter("trace_id"),
        )
    )


def console_blueprint(settings: Settings) -> Blueprint:
    """The console at :data:`OBSERVE_CONSOLE_PATH`: pages, ``api/``, ``static/``."""
    blueprint = Blueprint(
        NAME,
        __name__,
        url_prefix=settings.console_path,
        static_folder="static",
        static_url_path="/static",
    )
    blueprint.before_request(_guard)
    blueprint.after_request(_headers)
    for rule, endpoint, view in (
        ("/", "routes", routes_page),
        ("/traces", "traces", traces_page),
        ("/traces/<trace_id>", "trace", trace_page),
        ("/logs", "logs", logs_page),
        ("/api/routes", "api_routes", api_routes),
        ("/api/traces", "api_traces", api_traces),
        ("/api/traces/<trace_id>", "api_trace", api_trace),
        ("/api/logs", "api_logs", api_logs),
    ):
        blueprint.add_url_rule(rule, endpoint, view, methods=["GET"])
    blueprint.add_url_rule("/login", "login", login, methods=["GET", "POST"])
    blueprint.add_url_rule("/logout", "logout", logout, methods=["POST"])
    return blueprint
