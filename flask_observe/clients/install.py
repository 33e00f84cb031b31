"""Putting the hooks in: each library's send method wrapped once per process, and, in
``contrib`` mode, OpenTelemetry's instrumentations of the libraries.

The libraries are imported here, when an app lists them, never by importing
flask-observe: they are the application's own dependencies, not flask-observe's.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any, Callable

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import TracerProvider

__all__ = ["MARKER", "install_hooks", "use_contrib", "wrap_once"]

#: The attribute that marks a function as flask-observe's wrapper of the one it wraps.
MARKER = "_flask_observe_wraps"

_log = logging.getLogger("flask_observe")
_lock = threading.Lock()

#: Each library's hook module, by the name ``OBSERVE_HTTP_CLIENTS`` gives it.
_HOOKS = {"requests": "._requests", "httpx": "._httpx"}
#: OpenTelemetry's instrumentation of each library: its module and instrumentor class.
_CONTRIB = {
    "requests": ("opentelemetry.instrumentation.requests", "RequestsInstrumentor"),
    "httpx": ("opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
}


def _wrapped_by_us(function: Any) -> bool:
    """Whether *function*, or a function it wraps, is a wrapper of ours: another
    instrumentation may have wrapped ours since (``__wrapped__``, as functools and wrapt
    set it)."""
    for _ in range(32):  # a chain of wrappers is short; a cycle must not hang start-up
        if function is None:
            return False
        if getattr(function, MARKER, False):
            return True
        function = getattr(function, "__wrapped__", None)
    return False


def wrap_once(owner: type, name: str, wrap: Callable[[Any], Any]) -> bool:
    """Replace ``owner.name`` with ``wrap(owner.name)``, unless a wrapper of ours is
    there already; whether it was replaced now."""
    with _lock:
        original = getattr(owner, name)
        if _wrapped_by_us(original):
            return False
        wrapper = wrap(original)
        setattr(wrapper, MARKER, True)
        setattr(owner, name, wrapper)
        return True


def install_hooks(library: str) -> None:
    """Observe the outgoing calls of *library* (``"requests"`` or ``"httpx"``) from now
    on, in this process; doing it again changes nothing."""
    hooks: Any = importlib.import_module(_HOOKS[library], __package__)
    hooks.install()


def use_contrib(library: str, provider: TracerProvider) -> bool:
    """Have OpenTelemetry's instrumentation of *library* make the spans of its calls, with
    *provider*, unless it does already. ``False`` if it is not installed."""
    module_name, class_name = _CONTRIB[library]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        _log.info(
            "OBSERVE_TRACING_INSTRUMENTATION is 'contrib' but %s is not installed: "
            "flask-observe makes the spans of %s's calls itself.",
            module_name.replace(".", "-").replace("_", "-"),
            library,
        )
        return False
    instrumentor = getattr(module, class_name)()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider, meter_provider=NoOpMeterProvider())
    return True
