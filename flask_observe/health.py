"""Health checks: the check registry, the runner behind ``/healthz``, and its blueprint.

A probe must stay cheap and quick whatever the dependencies do, since Kubernetes and load
balancers send them all the time and act on a late answer as on a failure. So each check
runs in a small pool of daemon threads with its own deadline, and a probe waits for a check
no longer than that deadline; a check whose run is still going (it hangs) is reported as a
timeout and not started again until that run ends, so a hung dependency ties up one thread,
not one per probe. A result is kept for ``OBSERVE_HEALTH_CACHE_SECONDS``, and probes that
arrive while a check runs wait for that run rather than starting their own, so a storm of
probes runs each check once per window.

The body is the ``application/health+json`` format of the IETF draft "Health Check Response
Format for HTTP APIs" (draft-inadarei-api-health-check-06).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, Gauge

from .config import Settings
from .exposition import bearer_matches
from .registries import PerRegistry
from .signals import health_changed, notify

__all__ = [
    "HealthCheck",
    "HealthCheckError",
    "HealthChecks",
    "HealthMetrics",
    "HealthMonitor",
    "health_blueprint",
]

_log = logging.getLogger("flask_observe")

CONTENT_TYPE = "application/health+json"

#: A name is the first part of a ``name:measurement`` key, which the draft says must not
#: hold a colon; it is also a ``?exclude=`` value and a label value, so it stays plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: The longest ``output`` shown: the reason a check failed, not a dump.
_MAX_OUTPUT = 300
#: How long an idle worker thread waits for work before it ends.
_IDLE_SECONDS = 30.0


class HealthCheckError(Exception):
    """Raise it from a health check to fail with a message of your own: the check's
    ``output`` is then the message alone, without the exception's class name.

    .. versionadded:: 0.1
    """


@dataclass(frozen=True)
class HealthCheck:
    """One registered check: what :meth:`~flask_observe.Observe.add_health_check` was given."""

    name: str
    fn: Callable[[], object]
    critical: bool
    #: Seconds; ``None`` for the app's ``OBSERVE_HEALTH_TIMEOUT``.
    timeout: Optional[float]
    component_type: str


def make_check(
    name: str,
    fn: Callable[[], object],
    critical: bool,
    timeout: Optional[float],
    component_type: Optional[str],
) -> HealthCheck:
    """A :class:`HealthCheck` from the user's arguments, each one checked (they come from
    untyped code too)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            "a health check name is letters, digits, '_', '.' and '-', starting with a "
            f"letter or digit; not {name!r}"
        )
    if not callable(fn):
        raise TypeError(f"the health check {name!r} must be callable, not {fn!r}")
    if not isinstance(critical, bool):
        raise TypeError(f"critical must be True or False, not {critical!r}")
    if timeout is not None:
        number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
        if not (number and 0 < timeout < float("inf")):
            raise ValueError(
                f"timeout must be a positive number of seconds or None, not {timeout!r}"
            )
        timeout = float(timeout)
    kind = component_type or getattr(fn, "component_type", None) or "component"
    return HealthCheck(name, fn, critical, timeout, str(kind))


class HealthChecks:
    """The checks of one :class:`~flask_observe.Observe`, shared by every app it serves.

    Each app's :class:`HealthMonitor` reads them at every probe, so a check added after
    ``init_app`` runs from the next probe on.
    """

    def __init__(self) -> None:
        self._checks: dict[str, HealthCheck] = {}
        self._lock = threading.Lock()

    def add(self, check: HealthCheck) -> None:
        with self._lock:
            if check.name in self._checks:
                raise ValueError(f"a health check named {check.name!r} is already registered")
            self._checks[check.name] = check

    def snapshot(self) -> tuple[HealthCheck, ...]:
        with self._lock:
            return tuple(self._checks.values())


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check at one time."""

    status: str  # "pass" or "fail"
    #: Seconds the check took, or had taken when it timed out.
    duration: float
    #: When the result was read, seconds since the epoch.
    time: float
    output: Optional[str] = None


def describe(exc: BaseException) -> str:
    """Why a check failed, in one line: ``Class: message``, clipped, never a traceback; an
    exception that cannot say what it is (its ``__str__`` raises) is named by its class."""
    try:
        text = str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"
    message = " ".join(text.split())
    if not isinstance(exc, HealthCheckError):
        message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(message) > _MAX_OUTPUT:
        message = message[: _MAX_OUTPUT - 3] + "..."
    return message or "failed"


class _Run:
    """One execution of a check, from its submission to the pool to its end."""

    __slots__ = ("began", "check", "deadline", "done", "result", "settled", "started")

    def __init__(self, check: HealthCheck, timeout: float) -> None:
        self.check = check
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        #: When a worker took it up; ``None`` while it waits for one.
        self.began: Optional[float] = None
        self.done = threading.Event()
        self.result: Optional[CheckResult] = None
        #: Whether a probe has recorded this run's result, or its timeout.
        self.settled = False

    def execute(self, app: Flask) -> None:
        self.began = time.monotonic()
        start = time.perf_counter()
        status: str
        output: Optional[str]
        status, output = "fail", "failed"
        try:
            with app.app_context():
                value = app.ensure_sync(self.check.fn)()
            if value is False:
                output = "returned False"
            else:
                status, output = "pass", None
        except BaseException as exc:  # SystemExit too: it would end the pool's thread
            output = describe(exc)
        finally:
            self.result = CheckResult(status, time.perf_counter() - start, time.time(), output)
            self.done.set()


class _Workers:
    """A pool of daemon threads, started when needed, ended after idling.

    At most *size* threads run jobs that are still within their deadlines. A thread whose
    job has overrun its deadline (a hung check) no longer counts: another is started in its
    place, so hung checks never keep the others from running in time. Each check has at
    most one run at a time, so the threads stay fewer than *size* plus the checks. A free
    thread takes the oldest job that can still make its deadline before any that cannot.

    Not :class:`concurrent.futures.ThreadPoolExecutor`: its threads are joined when the
    interpreter exits, so one hung check would keep the process from ever stopping.
    """

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self._name = name
        self._jobs: list[tuple[Callable[[], None], float]] = []
        self._cond = threading.Condition(threading.Lock())
        self._threads = 0
        self._waiting = 0
        self._starting = 0
        self._made = 0
        #: The deadline of the job each busy thread runs, by thread.
        self._running: dict[int, float] = {}

    def submit(self, job: Callable[[], None], deadline: float) -> None:
        """Run *job*, which should be done by *deadline* (``time.monotonic()``)."""
        with self._cond:
            self._jobs.append((job, deadline))
            self._staff()

    def kick(self) -> Optional[float]:
        """Start threads for waiting jobs if busy ones have overrun since; return when the
        next busy thread will overrun (``None`` if none will), for the caller to kick again
        then."""
        with self._cond:
            if self._jobs:
                self._staff()
            now = time.monotonic()
            later = [deadline for deadline in self._running.values() if deadline > now]
            return min(later) if later else None

    def _staff(self) -> None:
        """Wake idle threads for the waiting jobs, and start more while the pool may grow.
        Holds the lock."""
        if self._waiting:
            self._cond.notify(min(self._waiting, len(self._jobs)))
        # Threads idle, or started and not yet at work, will take a job each.
        needed = len(self._jobs) - self._waiting - self._starting
        while needed > 0 and self._threads - self._overrun() < self.size:
            self._threads += 1
            self._starting += 1
            self._made += 1
            name = f"{self._name}-{self._made}"
            threading.Thread(target=self._work, name=name, daemon=True).start()
            needed -= 1

    def _overrun(self) -> int:
        """Busy threads whose job is past its deadline. Holds the lock."""
        now = time.monotonic()
        return sum(1 for deadline in self._running.values() if deadline < now)

    def _take(self) -> tuple[Callable[[], None], float]:
        """The oldest job that can still make its deadline, else the oldest. Holds the lock."""
        now = time.monotonic()
        for index, (_job, deadline) in enumerate(self._jobs):
            if deadline > now:
                return self._jobs.pop(index)
        return self._jobs.pop(0)

    def _work(self) -> None:
        me = threading.get_ident()
        with self._cond:
            self._starting -= 1
            while True:
                if self._jobs:
                    job, deadline = self._take()
                    self._running[me] = deadline
                    self._cond.release()
                    try:
                        job()
                    except BaseException:  # a job never ends the thread, and the count holds
                        _log.debug("A health check job failed", exc_info=True)
                    finally:
                        self._cond.acquire()
                        del self._running[me]
                    continue
                self._waiting += 1
                woken = self._cond.wait(_IDLE_SECONDS)
                self._waiting -= 1
                if not woken and not self._jobs:
                    self._threads -= 1
                    return


_families: PerRegistry[HealthMetrics] = PerRegistry()


class HealthMetrics:
    """``health_check_status`` and ``health_check_duration_seconds`` on one registry.

    Under prometheus_client's multiprocess mode each worker runs the checks its own probes
    ask for; ``livemostrecent`` exports the latest result of any live worker, as one process
    would, without a ``pid`` label.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.status = Gauge(
            "health_check_status",
            "The last result of each health check: 1 pass, 0 fail.",
            ("check",),
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.duration = Gauge(
            "health_check_duration_seconds",
            "How long the last run of each health check took, in seconds.",
            ("check",),
            multiprocess_mode="livemostrecent",
            registry=registry,
        )

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> HealthMetrics:
        """The registry's health families, made on first use."""
        return _families.get(registry, lambda: cls(registry))

    def record(self, name: str, result: CheckResult) -> None:
        self.status.labels(name).set(1 if result.status == "pass" else 0)
        self.duration.labels(name).set(result.duration)


class _Slot:
    """What one app knows of one check: its last result, its last failure and its latest
    run."""

    __slots__ = ("failure", "fresh_until", "result", "run")

    def __init__(self) -> None:
        self.result: Optional[CheckResult] = None
        self.failure: Optional[CheckResult] = None
        self.fresh_until = 0.0
        self.run: Optional[_Run] = None


_Change = tuple[str, str, str, Optional[str]]


class HealthMonitor:
    """One app's view of the checks: runs them, caches them, and sums them up."""

    def __init__(self, settings: Settings, checks: HealthChecks, metrics: HealthMetrics) -> None:
        self.settings = settings
        self._checks = checks
        self._metrics = metrics
        self._workers = _Workers(settings.health_max_workers, "flask-observe-health")
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._grace_until = time.monotonic() + settings.health_startup_grace
        self._starting = settings.health_startup_grace > 0

    @property
    def max_workers(self) -> int:
        """The most threads this app's checks run in at once."""
        return self._workers.size

    def results(
        self, app: Flask, exclude: Iterable[str] = ()
    ) -> list[tuple[HealthCheck, CheckResult]]:
        """Each check but those in *exclude*, with its result: fresh from the cache, from a
        run another probe started, or from a run started now. Returns within the longest
        timeout of the checks, whatever they do."""
        skip = set(exclude)
        checks = [c for c in self._checks.snapshot() if c.name not in skip]
        self._workers.kick()
        changes: list[_Change] = []
        waiting: list[tuple[HealthCheck, _Run]] = []
        with self._lock:
            now = time.monotonic()
            for check in checks:
                slot = self._slots.get(check.name)
                if slot is None:
                    slot = self._slots[check.name] = _Slot()
                run = slot.run
                if slot.result is not None and now < slot.fresh_until:
                    continue
                if run is None or (run.settled and run.done.is_set()):
                    run = slot.run = _Run(check, check.timeout or self.settings.health_timeout)
                    self._workers.submit(functools.partial(run.execute, app), run.deadline)
                    waiting.append((check, run))
                elif run.settled:
                    # It timed out for an earlier probe and still runs (or still waits for
                    # a thread): not started again.
                    doing = (
                        "still running" if run.began is not None else "still waiting for a thread"
                    )
                    still = CheckResult(
                        "fail",
                        now - run.started,
                        time.time(),
                        f"timeout: {doing} after {now - run.started:.1f} s",
                    )
                    self._record(check.name, slot, still, changes)
                else:
                    waiting.append((check, run))
        self._wait(waiting)
        with self._lock:
            for check, run in waiting:
                if not run.settled:
                    run.settled = True
                    slot = self._slots[check.name]
                    self._record(check.name, slot, run.result or self._timeout(run), changes)
                    if run.done.is_set():
                        slot.run = None
            found = [(check, self._slots[check.name].result) for check in checks]
        self._announce(app, changes)
        return [(check, result) for check, result in found if result is not None]

    def last_failures(self) -> dict[str, CheckResult]:
        """The last failed result of each check that has failed since the app started,
        whichever probe ran it, by check name."""
        with self._lock:
            return {
                name: slot.failure for name, slot in self._slots.items() if slot.failure is not None
            }

    def _wait(self, waiting: Sequence[tuple[HealthCheck, _Run]]) -> None:
        """Wait for each run until it ends or its deadline; whenever a busy thread overruns
        meanwhile, let the pool start another for the runs still waiting for one."""
        pending = [run for _check, run in waiting]
        while True:
            now = time.monotonic()
            pending = [run for run in pending if not run.done.is_set() and run.deadline > now]
            if not pending:
                return
            wake = min(run.deadline for run in pending)
            overrun = self._workers.kick()
            if overrun is not None:
                wake = min(wake, overrun)
            pending[0].done.wait(max(0.0, wake - now))

    @staticmethod
    def _timeout(run: _Run) -> CheckResult:
        seconds = run.deadline - run.started
        if run.began is None:  # it never got a thread: say so, it did not run slowly
            output = f"timeout after {seconds:g} s waiting for a thread"
        else:
            output = f"timeout after {seconds:g} s"
        return CheckResult("fail", seconds, time.time(), output)

    def _record(self, name: str, slot: _Slot, result: CheckResult, changes: list[_Change]) -> None:
        """Keep *result* for the cache window; note a change of status. Holds the lock."""
        old = slot.result
        slot.result = result
        if result.status == "fail":
            slot.failure = result
        slot.fresh_until = time.monotonic() + self.settings.health_cache_seconds
        self._metrics.record(name, result)
        if old is not None and old.status != result.status:
            changes.append((name, old.status, result.status, result.output))

    @staticmethod
    def _announce(app: Flask, changes: Sequence[_Change]) -> None:
        for name, old, new, output in changes:
            if new == "fail":
                _log.warning("Health check %s is failing: %s", name, output)
            else:
                _log.info("Health check %s passes again", name)
            notify(health_changed, app, check=name, old_status=old, new_status=new, output=output)

    def status(
        self, results: Sequence[tuple[HealthCheck, CheckResult]]
    ) -> tuple[str, Optional[str]]:
        """The overall status and its ``output``: ``fail`` if a critical check fails,
        ``warn`` if only others do, else ``pass``; ``fail`` with ``starting`` during the
        startup grace, until every check passes."""
        failed = [check for check, result in results if result.status == "fail"]
        if self._starting:
            if not failed or time.monotonic() >= self._grace_until:
                self._starting = False
            else:
                return "fail", "starting"
        if any(check.critical for check in failed):
            return "fail", None
        return ("warn" if failed else "pass"), None


def _rfc3339(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_entry(check: HealthCheck, result: CheckResult) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "componentType": check.component_type,
        "status": result.status,
        "observedValue": round(result.duration * 1000, 3),
        "observedUnit": "ms",
        "time": _rfc3339(result.time),
    }
    if result.output is not None:
        entry["output"] = result.output
    return entry


def _details_allowed(settings: Settings) -> Optional[bool]:
    """Whether this request may see the details; ``None`` for a wrong token."""
    if settings.health_details == "token":
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return False
        return True if bearer_matches(authorization, settings.health_token or "") else None
    return settings.health_details == "always"


def _answer(
    settings: Settings,
    status: str,
    output: Optional[str] = None,
    results: Sequence[tuple[HealthCheck, CheckResult]] = (),
    *,
    checks: bool = True,
    max_age: Optional[int] = None,
) -> Response:
    details = _details_allowed(settings)
    if details is None:
        return Response(
            "Unauthorized: the bearer token is wrong; send the right one, or none for the "
            "status alone.\n",
            401,
            mimetype="text/plain",
            headers={"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"},
        )
    body: dict[str, Any] = {"status": status}
    if details:
        if settings.service_version is not None:
            body["version"] = settings.service_version
        body["serviceId"] = settings.service_name
        if output is not None:
            body["output"] = output
        if checks:
            body["checks"] = {
                f"{check.name}:responseTime": [_check_entry(check, result)]
                for check, result in results
            }
    if max_age is None:
        cache = "no-store"
    else:  # a shared cache must not hand the details on to those not allowed them
        cache = f"private, max-age={max_age}" if details else f"max-age={max_age}"
    headers = {"Cache-Control": cache}
    if settings.health_details == "token":
        headers["Vary"] = "Authorization"
    return Response(
        json.dumps(body),
        503 if status == "fail" else 200,
        mimetype=CONTENT_TYPE,
        headers=headers,
    )


def _monitor() -> HealthMonitor:
    monitor: HealthMonitor = current_app.extensions["observe"].health
    return monitor


def live_view() -> Response:
    """The process answers: no dependency is checked."""
    return _answer(_monitor().settings, "pass", checks=False)


def ready_view() -> Response:
    """Run the checks (less ``?exclude=``) and sum them up: 200 unless a critical one fails."""
    monitor = _monitor()
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    results = monitor.results(app, request.args.getlist("exclude"))
    status, output = monitor.status(results)
    max_age = int(monitor.settings.health_cache_seconds)
    return _answer(monitor.settings, status, output, results, max_age=max_age)


def health_blueprint(path: str) -> Blueprint:
    """A blueprint serving *path*, *path*/ready and *path*/live (GET, and HEAD with it)."""
    blueprint = Blueprint("flask_observe_health", __name__)
    blueprint.add_url_rule(path, "health", ready_view, methods=["GET"])
    blueprint.add_url_rule(f"{path}/ready", "ready", ready_view, methods=["GET"])
    blueprint.add_url_rule(f"{path}/live", "live", live_view, methods=["GET"])
    return blueprint
