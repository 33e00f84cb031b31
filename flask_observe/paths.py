"""The fixed paths flask-observe answers at, and the app's own routes that would take them.

``/metrics``, the health endpoints and the console are blueprints of the app. A route of the
app's own at one of their paths (or below the console's) would share it with them: Flask
answers each method with whichever was registered first, so one of the two silently loses
some of its requests. ``init_app``
refuses the routes already there; ``flask observe check`` lists any, however late they
were added.
"""

from __future__ import annotations

from flask import Flask

from .config import Settings, health_paths

__all__ = ["fixed_paths", "fixed_prefixes", "route_collisions"]

#: The blueprints whose views answer at the fixed paths.
_OURS = ("flask_observe_metrics.", "flask_observe_health.", "flask_observe_console.")


def fixed_paths(settings: Settings) -> dict[str, str]:
    """Each path flask-observe answers at, with the config key it comes from."""
    paths: dict[str, str] = {}
    if settings.metrics_enabled and settings.metrics_path is not None:
        paths[settings.metrics_path] = "OBSERVE_METRICS_PATH"
    if settings.health_enabled:
        for path in health_paths(settings.health_path):
            paths[path] = "OBSERVE_HEALTH_PATH"
    return paths


def fixed_prefixes(settings: Settings) -> dict[str, str]:
    """Each path flask-observe answers at and below (the console's), with its config key."""
    if settings.console_enabled:
        return {settings.console_path: "OBSERVE_CONSOLE_PATH"}
    return {}


def route_collisions(app: Flask, settings: Settings) -> list[tuple[str, str, str]]:
    """``(config key, path, endpoint)`` of each route of the app's own at a fixed path, or
    at or below a fixed prefix."""
    paths = fixed_paths(settings)
    prefixes = fixed_prefixes(settings)
    found = []
    for rule in app.url_map.iter_rules():
        path = rule.rule.rstrip("/") or "/"
        key = paths.get(path)
        for prefix, prefix_key in prefixes.items():
            if key is None and (path + "/").startswith(prefix + "/"):
                key, path = prefix_key, rule.rule
        if key is not None and not rule.endpoint.startswith(_OURS):
            found.append((key, path, rule.endpoint))
    return found
