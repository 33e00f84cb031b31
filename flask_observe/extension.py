"""``Observe``: the extension object. ``init_app`` wires the parts from the app's config."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Callable, Optional, TypeVar

from flask import Flask
from opentelemetry.trace import Tracer, TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry

from .cli import observe_cli
from .clients.calls import LOGGER as CLIENT_LOGGER
from .clients.calls import ClientState, HostPatterns, set_default
from .clients.install import install_hooks, use_contrib
from .clients.metrics import client_metrics
from .config import ConfigError, Settings, load_settings, set_defaults
from .export.span import LeanTracer
from .exposition import metrics_blueprint
from .functions import FunctionMetrics
from .health import HealthChecks, HealthMetrics, HealthMonitor, health_blueprint, make_check
from .logs import LogSink, install_logging
from .logs.handler import LOST_REASONS
from .metrics import HttpMetrics, HttpRecorder
from .multiprocess import MultiprocessRecorder, multiprocess_dir, registry_for_families
from .observation import Sink
from .paths import route_collisions
from .pipeline import RequestPipeline
from .saturation import (
    ProcessFiguresSink,
    Saturation,
    SaturationMetrics,
    track_flask_sqlalchemy,
)
from .signals import SignalSink
from .tracing import DROP_REASONS, TraceSink, instrument_contrib, is_instrumented, tracer_for

__all__ = ["Observe"]

_log = logging.getLogger("flask_observe")

C = TypeVar("C", bound=Callable[[], object])

#: The sinks whose failures are counted, made visible at 0 from the start so that
#: ``rate(flask_observe_errors_total[5m])`` has a series to work on before anything fails.
_SINK_NAMES = ("pipeline", "tracing", "logs", "metrics", "signals", "saturation", "clients")


class _State:
    """What one app needs at run time, in ``app.extensions["observe"]``."""

    __slots__ = (
        "clients",
        "console",
        "function_metrics",
        "health",
        "http_metrics",
        "multiprocess_dir",
        "pipeline",
        "registry",
        "saturation",
        "saturation_metrics",
        "settings",
        "shared_saturation",
        "tracer",
        "tracer_provider",
    )

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry,
        multiprocess_dir: Optional[str],
        http_metrics: HttpMetrics,
        function_metrics: FunctionMetrics,
        pipeline: RequestPipeline,
        tracer_provider: TracerProvider,
        tracer: Tracer,
        health: Optional[HealthMonitor],
        saturation: Saturation,
        shared_saturation: Saturation,
        saturation_metrics: SaturationMetrics,
        *,
        clients: Optional[ClientState] = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        #: prometheus_client's multiprocess directory, which ``/metrics`` then serves
        #: instead of the registry; ``None`` in a single process.
        self.multiprocess_dir = multiprocess_dir
        self.http_metrics = http_metrics
        self.function_metrics = function_metrics
        self.pipeline = pipeline
        self.tracer_provider = tracer_provider
        self.tracer = tracer
        #: ``None`` when :data:`OBSERVE_HEALTH_ENABLED` is ``False``.
        self.health = health
        #: The pools and queues tracked for this app alone.
        self.saturation = saturation
        #: Those of the ``Observe`` object, for every app it serves; held here so that they
        #: stay exported while the app lives, whether or not the object is kept.
        self.shared_saturation = shared_saturation
        #: The registry's saturation families; in multiprocess mode, ``/metrics`` has them
        #: write what a scrape reads to the files first.
        self.saturation_metrics = saturation_metrics
        #: How the app's outgoing calls are observed; ``None`` when
        #: :data:`OBSERVE_HTTP_CLIENTS` names no library.
        self.clients = clients
        #: The console (:mod:`flask_observe.console`); ``None`` when it is off.
        self.console: Any = None


def _make_clients(
    settings: Settings,
    families: CollectorRegistry,
    multiprocess: bool,
    http_metrics: HttpMetrics,
    provider: TracerProvider,
    tracer: Tracer,
) -> Optional[ClientState]:
    """Observe the outgoing calls of the libraries :data:`OBSERVE_HTTP_CLIENTS` names: their
    hooks put in (once per process), and the app's way of recording its calls."""
    if not settings.http_clients:
        return None
    mode = settings.tracing_instrumentation
    # Asked for by the setting, not by an app that contrib instruments already: a user's
    # instrumentation of the server says nothing of the clients.
    contrib = frozenset(
        library
        for library in settings.http_clients
        if mode == "contrib" and use_contrib(library, provider)
    )
    metrics = None
    if settings.metrics_enabled:
        metrics = client_metrics(families, settings.buckets, multiprocess=multiprocess)
    state = ClientState(
        libraries=frozenset(settings.http_clients),
        contrib=contrib,
        spans=mode != "off",
        tracer=tracer,
        metrics=metrics,
        hosts=HostPatterns(settings.propagate_hosts),
        max_peers=settings.http_client_max_peers,
        request_id_header=settings.request_id_header,
        log=settings.http_client_log,
        on_error=lambda: http_metrics.errors.labels("clients").inc(),
    )
    for library in settings.http_clients:
        install_hooks(library)
    if settings.http_client_log:
        logger = logging.getLogger(CLIENT_LOGGER)
        if logger.level == logging.NOTSET:  # the key asks for the lines: let them through
            logger.setLevel(logging.DEBUG)
    return state


class Observe:
    """Metrics, structured logs, traces and health checks for a Flask app, in one line:
    ``Observe(app)``.

    Records the golden signals of every request and serves them at ``/metrics``, writes
    JSON log lines that carry each request's IDs, traces each request in a span, and serves
    the health checks registered with :meth:`health_check` at ``/healthz``, exports the
    saturation of the pools and queues given to :meth:`track_pool` and :meth:`track_queue`,
    and sends the signals of :mod:`flask_observe.signals`. In an app factory, make it once
    and call :meth:`init_app` for each app; one ``Observe`` may serve several apps, each
    with its own settings, and its health checks, pools and queues are those of each.

    :param app: the app to set up now; or call :meth:`init_app` later.
    :param registry: where metrics go; default prometheus_client's global ``REGISTRY``, so a
        module-level ``Counter(...)`` of your own shows up at ``/metrics`` too. Pass a fresh
        :class:`~prometheus_client.CollectorRegistry` to keep the app's metrics apart.
    :param service_name: overrides :data:`OBSERVE_SERVICE_NAME`.
    :param group_by: overrides :data:`OBSERVE_GROUP_BY`.
    :param buckets: overrides :data:`OBSERVE_BUCKETS`.
    :param exclude_paths: overrides :data:`OBSERVE_EXCLUDE_PATHS`.
    :param tracer_provider: the OpenTelemetry tracer provider of the app's spans, used as
        it is: :data:`OBSERVE_TRACING_SETUP` then has no effect. Tests pass one with an
        in-memory exporter.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        app: Optional[Flask] = None,
        *,
        registry: Optional[CollectorRegistry] = None,
        service_name: Optional[str] = None,
        group_by: Optional[str] = None,
        buckets: Optional[Sequence[float]] = None,
        exclude_paths: Optional[Sequence[str]] = None,
        tracer_provider: Optional[TracerProvider] = None,
    ) -> None:
        self._registry = registry
        self._tracer_provider = tracer_provider
        self._health_checks = HealthChecks()
        self._saturation = Saturation()
        given = {
            "OBSERVE_SERVICE_NAME": service_name,
            "OBSERVE_GROUP_BY": group_by,
            "OBSERVE_BUCKETS": buckets,
            "OBSERVE_EXCLUDE_PATHS": exclude_paths,
        }
        self._overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Set up *app*: validate its ``OBSERVE_*`` config, register hooks, ``/metrics``,
        ``/healthz`` and the ``flask observe`` commands (see :ref:`api-cli`).

        :raises RuntimeError: if flask-observe is already set up on *app*.
        :raises ConfigError: if an ``OBSERVE_*`` value is invalid, naming the key.
        """
        if "observe" in app.extensions:
            raise RuntimeError(
                f"flask-observe is already set up on the app {app.name!r}; "
                "call Observe(app) or init_app(app) once per app."
            )
        set_defaults(app.config)
        settings = load_settings(app.config, app_name=app.name, overrides=self._overrides)
        files = multiprocess_dir()
        registry = self._registry if self._registry is not None else REGISTRY
        # Where flask-observe's own families go; in multiprocess mode one set per process.
        families = registry if files is None else registry_for_families(registry)

        http_metrics = HttpMetrics.for_registry(
            families, settings.buckets, settings.size_buckets, multiprocess=files is not None
        )
        http_metrics.set_info(settings.service_name)
        for name in _SINK_NAMES:
            http_metrics.errors.labels(name)
        for reason in DROP_REASONS:
            http_metrics.spans_dropped.labels(reason)
        for reason in LOST_REASONS:
            http_metrics.log_lines_lost.labels(reason)
        function_metrics = FunctionMetrics.for_registry(families)
        saturation_metrics = SaturationMetrics.for_registry(families)
        saturation = Saturation()
        saturation_metrics.watch(self._saturation)
        saturation_metrics.watch(saturation)
        if settings.process_metrics:
            saturation_metrics.add_process_figures()

        provider, tracer = tracer_for(
            settings, self._tracer_provider, on_drop=http_metrics.spans_dropped_by
        )
        mode = settings.tracing_instrumentation
        if mode == "native" and is_instrumented(app):
            _log.info(
                "The app %r is already instrumented by opentelemetry-instrumentation-flask: "
                "flask-observe reads its spans rather than making its own.",
                app.name,
            )
            mode = "contrib"
        if settings.log_json:
            install_logging(app.name, settings, on_lost=http_metrics.log_line_lost)
        sinks: list[Sink] = []
        if mode == "native":
            sinks.append(TraceSink(tracer))
        if settings.log_json or settings.access_log:
            sinks.append(LogSink(settings))
        if settings.metrics_enabled:
            sinks.append(
                HttpRecorder(http_metrics)
                if files is None
                else MultiprocessRecorder(families, settings.buckets, settings.size_buckets)
            )
        if settings.signals_enabled:
            # Last, so it finishes first: receivers run while the request's span is current
            # and its log context set.
            sinks.append(SignalSink(app, settings.slow_request_seconds))
        if saturation_metrics.process_files is not None:
            sinks.append(ProcessFiguresSink(saturation_metrics.process_files))
        pipeline = RequestPipeline(
            settings, sinks, on_sink_error=lambda name: http_metrics.errors.labels(name).inc()
        )
        pipeline.install(app)
        if mode == "contrib":
            # After the pipeline's wrapper, so that the instrumentation's wraps it.
            pipeline.add_sink(instrument_contrib(app, settings, provider))
        if settings.metrics_enabled:
            http_metrics.watch(pipeline)
        if settings.metrics_enabled and settings.metrics_path is not None:
            app.register_blueprint(metrics_blueprint(settings.metrics_path))
        health = None
        if settings.health_enabled:
            health_metrics = HealthMetrics.for_registry(families)
            health = HealthMonitor(settings, self._health_checks, health_metrics)
            app.register_blueprint(health_blueprint(settings.health_path))
        for key, path, endpoint in route_collisions(app, settings):
            raise ConfigError(
                key,
                path,
                f"a path no route of the app has: the view {endpoint!r} answers at {path} "
                "too, and Flask gives each method to only one of them",
            )
        app.cli.add_command(observe_cli)
        clients = _make_clients(
            settings, families, files is not None, http_metrics, provider, tracer
        )
        app.extensions["observe"] = _State(
            settings,
            registry,
            files,
            http_metrics,
            function_metrics,
            pipeline,
            provider,
            tracer,
            health,
            saturation,
            self._saturation,
            saturation_metrics,
            clients=clients,
        )
        if clients is not None:
            set_default(clients)
        if settings.console_enabled:
            from .console.install import install_console  # only for an app that has it

            app.extensions["observe"].console = install_console(
                app,
                settings,
                provider=provider,
                own_provider=isinstance(tracer, LeanTracer)
                or (self._tracer_provider is not None and provider is self._tracer_provider),
                multiprocess=files is not None,
            )
        if settings.track_sqlalchemy:
            track_flask_sqlalchemy(app, saturation)

    def add_health_check(
        self,
        name: str,
        check: Callable[[], object],
        *,
        critical: bool = True,
        timeout: Optional[float] = None,
        component_type: Optional[str] = None,
    ) -> None:
        """Register *check* as the health check *name*, for every app this object serves.

        The check is called without arguments, inside the app's context, in a thread of the
        app's health pool; it fails when it raises or returns ``False`` (any other value
        passes). It may be an ``async def`` function, run as Flask runs async views. Checks
        added before or after :meth:`init_app` alike run from the next probe on.

        :param name: the check's name in the health body (``name:responseTime``), in
            ``?exclude=name`` and in the ``check`` label of the metrics: letters, digits,
            ``_``, ``.`` and ``-``.
        :param check: the function to call, such as one made by :func:`url_check`.
        :param critical: whether a failure makes the app unready (``fail``, 503). A
            failing check that is not critical makes the status ``warn``, still 200.
        :param timeout: seconds a run may take before it counts as failed with
            ``timeout``; default :data:`OBSERVE_HEALTH_TIMEOUT`.
        :param component_type: the ``componentType`` in the health body, such as
            ``"datastore"``; default the check's own ``component_type`` attribute (the
            built-in checks have one), else ``"component"``.
        :raises ValueError: if the name is not allowed or already registered, or the
            timeout is not a positive number.
        :raises TypeError: if *check* is not callable.

        .. versionadded:: 0.1
        """
        self._health_checks.add(make_check(name, check, critical, timeout, component_type))

    def health_check(
        self,
        name: str,
        *,
        critical: bool = True,
        timeout: Optional[float] = None,
        component_type: Optional[str] = None,
    ) -> Callable[[C], C]:
        """Decorate a function to register it as a health check; see
        :meth:`add_health_check` for the arguments. The function is returned as it is.

        .. code-block:: python

            @observe.health_check("database", timeout=2.0)
            def database():
                db.session.execute(text("SELECT 1"))  # raise or return False to fail

        .. versionadded:: 0.1
        """

        def register(fn: C) -> C:
            self.add_health_check(
                name, fn, critical=critical, timeout=timeout, component_type=component_type
            )
            return fn

        return register

    def track_pool(
        self, engine: Any, name: str = "default", *, app: Optional[Flask] = None
    ) -> None:
        """Export the saturation of an SQLAlchemy engine's connection pool as
        ``db_pool_connections_in_use{pool}``, ``db_pool_connections_max{pool}``,
        ``db_pool_wait_seconds{pool}`` and ``db_pool_checkout_failures_total{pool, reason}``
        (see :doc:`/saturation`).

        .. code-block:: python

            observe.track_pool(db.engine)  # Flask-SQLAlchemy's, or any create_engine()

        The pool's events are listened to from now on, and its ``connect()`` is timed; both
        carry over to the new pool ``engine.dispose()`` makes. The engine is held weakly:
        its series go away with it.

        :param engine: an SQLAlchemy :class:`~sqlalchemy.engine.Engine`, or an
            ``AsyncEngine``.
        :param name: the ``pool`` label: a non-empty string of at most 100 characters.
        :param app: track it for this app alone (an app factory that makes an engine per
            app); by default for every app this object serves, as health checks are, whether
            they were set up before or after this call. The app must be set up already.
        :raises ValueError: if the name is not allowed, or already tracked.
        :raises TypeError: if *engine* is not an SQLAlchemy engine.
        :raises RuntimeError: if *app* is not set up with flask-observe.

        .. versionadded:: 0.1
        """
        self._saturation_for(app).add_pool(engine, name)

    def track_queue(
        self, name: str, depth_fn: Callable[[], float], *, app: Optional[Flask] = None
    ) -> None:
        """Export ``app_queue_depth{queue=name}``: the value of *depth_fn* at each scrape.

        .. code-block:: python

            jobs = queue.Queue()
            observe.track_queue("jobs", jobs.qsize)

        *depth_fn* is called without arguments from the thread serving ``/metrics``, inside
        the app context; it must be quick. One that raises or returns no number leaves the
        queue out of that scrape and is counted in ``app_queue_depth_errors_total{queue}``;
        the scrape goes on.

        :param name: the ``queue`` label: a non-empty string of at most 100 characters.
        :param depth_fn: returns the number of items waiting.
        :param app: as for :meth:`track_pool`.
        :raises ValueError: if the name is not allowed, or already tracked.
        :raises TypeError: if *depth_fn* is not callable.
        :raises RuntimeError: if *app* is not set up with flask-observe.

        .. versionadded:: 0.1
        """
        self._saturation_for(app).add_queue(name, depth_fn)

    def _saturation_for(self, app: Optional[Flask]) -> Saturation:
        if app is None:
            return self._saturation
        state = app.extensions.get("observe")
        if state is None:
            raise RuntimeError(
                f"flask-observe is not set up on the app {app.name!r}: call init_app(app) "
                "before tracking a pool or queue for it alone."
            )
        saturation: Saturation = state.saturation
        return saturation
