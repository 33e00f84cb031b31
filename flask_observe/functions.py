"""Business function metrics: the ``@timed`` and ``@counted`` decorators.

They record into ``app_function_duration_seconds`` and ``app_function_calls_total`` through
prometheus_client's own metric types: unlike the HTTP metrics, they are not on every
request's path, and the user chooses where they go.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional, TypeVar, overload

from flask import current_app, has_app_context
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .config import validate_buckets
from .multiprocess import registry_for_families, values_in_files
from .registries import PerRegistry
from .signals import announce_failure

__all__ = ["FunctionMetrics", "counted", "timed"]

F = TypeVar("F", bound=Callable[..., Any])
_Record = Callable[[str, float], None]

_FUNCTION_LABELS = ("function", "outcome")
#: The buckets of ``app_function_duration_seconds`` unless ``@timed(buckets=...)`` says else.
FUNCTION_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

_function_families: PerRegistry[FunctionMetrics] = PerRegistry()


class _PerBucketsHistogram(Collector):
    """One histogram family whose buckets may differ per function.

    prometheus_client fixes buckets per family; ``@timed(buckets=...)`` needs them per
    function. Each bucket layout gets an unregistered :class:`~prometheus_client.Histogram`
    (so prometheus_client still does the counting, and multiprocess files work), and
    collection merges their samples under one name. Prometheus accepts differing ``le`` sets
    across the series of one family.
    """

    def __init__(self, name: str, documentation: str) -> None:
        self._name = name
        self._documentation = documentation
        self._histograms: dict[tuple[float, ...], Histogram] = {}
        self._lock = threading.Lock()

    def histogram(self, buckets: tuple[float, ...]) -> Histogram:
        histogram = self._histograms.get(buckets)
        if histogram is None:
            with self._lock:
                histogram = self._histograms.get(buckets)
                if histogram is None:
                    histogram = Histogram(
                        self._name,
                        self._documentation,
                        _FUNCTION_LABELS,
                        buckets=buckets,
                        registry=None,
                    )
                    self._histograms[buckets] = histogram
        return histogram

    def describe(self) -> list[Metric]:
        return [Metric(self._name, self._documentation, "histogram")]

    def collect(self) -> Iterator[Metric]:
        merged = Metric(self._name, self._documentation, "histogram")
        for histogram in list(self._histograms.values()):
            for metric in histogram.collect():
                merged.samples.extend(metric.samples)
        yield merged


class FunctionMetrics:
    """``app_function_duration_seconds`` and ``app_function_calls_total`` on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = _PerBucketsHistogram(
            "app_function_duration_seconds",
            "Duration of functions decorated with @timed, in seconds, by outcome.",
        )
        registry.register(self.duration)
        #: One record function per decorated function, keyed by that decoration's token.
        self.records: dict[object, _Record] = {}
        self.calls = Counter(
            "app_function_calls",
            "Calls of functions decorated with @counted, by outcome.",
            _FUNCTION_LABELS,
            registry=registry,
        )

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> FunctionMetrics:
        """The registry's function families, made on first use."""
        return _function_families.get(registry, lambda: cls(registry))


def _current_function_metrics() -> FunctionMetrics:
    """The app's families inside an app context with Observe; else the default registry's,
    or in multiprocess mode the process's one set (shared with its apps)."""
    if has_app_context():
        state = current_app.extensions.get("observe")
        if state is not None:
            families: FunctionMetrics = state.function_metrics
            return families
    if not values_in_files():
        return FunctionMetrics.for_registry(REGISTRY)
    # A second family of the same name would keep counts of its own in this process and
    # write them over the app's in the files.
    return FunctionMetrics.for_registry(registry_for_families(REGISTRY))


_seen_buckets: dict[str, tuple[float, ...]] = {}


def _instrument(fn: F, label: str, make_record: Callable[[FunctionMetrics], _Record]) -> F:
    """Wrap *fn* (sync, async, generator or async generator) to record each call.

    ``make_record(families)`` gives the function that records one call's outcome and duration
    into those families; it is made once per registry and cached, so a call costs a context
    check and a dict lookup on top of the metric update. A call that raises an
    :class:`Exception` sends ``function_failed`` under *label*, in the error path only.
    """
    token = object()
    base = inspect.unwrap(fn)

    def record(outcome: str, duration: float) -> None:
        families = _current_function_metrics()
        rec = families.records.get(token)
        if rec is None:
            rec = families.records.setdefault(token, make_record(families))
        rec(outcome, duration)

    wrapper: Callable[..., Any]
    if inspect.isasyncgenfunction(fn):

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            start, outcome = time.perf_counter(), "error"
            try:
                async for item in fn(*args, **kwargs):
                    yield item
                outcome = "success"
            except GeneratorExit:
                outcome = "success"
                raise
            except Exception as exc:
                announce_failure(base, label, exc)
                raise
            finally:
                record(outcome, time.perf_counter() - start)

    elif inspect.iscoroutinefunction(fn):

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            start, outcome = time.perf_counter(), "error"
            try:
                result = await fn(*args, **kwargs)
                outcome = "success"
                return result
            except Exception as exc:
                announce_failure(base, label, exc)
                raise
            finally:
                record(outcome, time.perf_counter() - start)

    elif inspect.isgeneratorfunction(fn):

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start, outcome = time.perf_counter(), "error"
            try:
                result = yield from fn(*args, **kwargs)
                outcome = "success"
                return result
            except GeneratorExit:
                # The consumer stopped early: the function did not fail.
                outcome = "success"
                raise
            except Exception as exc:
                announce_failure(base, label, exc)
                raise
            finally:
                record(outcome, time.perf_counter() - start)

    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start, outcome = time.perf_counter(), "error"
            try:
                result = fn(*args, **kwargs)
                outcome = "success"
                return result
            except Exception as exc:
                announce_failure(base, label, exc)
                raise
            finally:
                record(outcome, time.perf_counter() - start)

    return functools.wraps(fn)(wrapper)  # type: ignore[return-value]


def _function_name(fn: Callable[..., Any], name: Optional[str]) -> str:
    if name is not None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string, not {name!r}")
        return name
    return f"{fn.__module__}.{fn.__qualname__}"


@overload
def timed(fn: F, /) -> F: ...
@overload
def timed(
    *, name: Optional[str] = None, buckets: Optional[tuple[float, ...]] = None
) -> Callable[[F], F]: ...


def timed(
    fn: Optional[F] = None,
    /,
    *,
    name: Optional[str] = None,
    buckets: Optional[tuple[float, ...]] = None,
) -> Any:
    """Record each call's duration in ``app_function_duration_seconds{function, outcome}``.

    Use it bare (``@timed``) or with arguments (``@timed(name="checkout", buckets=(...))``) on
    a plain, ``async``, generator or async generator function. ``function`` is the
    module-qualified name unless *name* is given; ``outcome`` is ``success``, or ``error``
    when the call raised (the exception still propagates, after
    :data:`~flask_observe.signals.function_failed` is sent). A generator is timed from its
    first step to its end; one closed early counts as a success.

    Inside an app context of an app with :class:`~flask_observe.Observe` the sample goes to
    that app's registry; elsewhere to prometheus_client's default registry.

    :param name: the ``function`` label; default ``module.qualname``.
    :param buckets: upper bounds for this function's histogram, strictly increasing; default
        ``0.005`` to ``5`` seconds.

    .. versionadded:: 0.1
    """
    bounds = FUNCTION_BUCKETS if buckets is None else validate_buckets("buckets", buckets)

    def decorate(f: F) -> F:
        label = _function_name(f, name)
        known = _seen_buckets.setdefault(label, bounds)
        if known != bounds:
            raise ValueError(
                f"@timed function {label!r} already records with buckets {known}; "
                f"one function label cannot have two bucket layouts ({bounds})"
            )

        def make_record(families: FunctionMetrics) -> _Record:
            histogram = families.duration.histogram(bounds)
            children = {o: histogram.labels(label, o).observe for o in ("success", "error")}
            return lambda outcome, duration: children[outcome](duration)

        return _instrument(f, label, make_record)

    return decorate if fn is None else decorate(fn)


@overload
def counted(fn: F, /) -> F: ...
@overload
def counted(*, name: Optional[str] = None) -> Callable[[F], F]: ...


def counted(fn: Optional[F] = None, /, *, name: Optional[str] = None) -> Any:
    """Count each call in ``app_function_calls_total{function, outcome}``.

    The same rules as :func:`timed`: bare or with ``name=``; sync, async and generator
    functions; ``outcome`` is ``success`` or ``error``; the registry follows the app context.

    .. versionadded:: 0.1
    """

    def decorate(f: F) -> F:
        label = _function_name(f, name)

        def make_record(families: FunctionMetrics) -> _Record:
            children = {o: families.calls.labels(label, o).inc for o in ("success", "error")}
            return lambda outcome, _duration: children[outcome]()

        return _instrument(f, label, make_record)

    return decorate if fn is None else decorate(fn)
