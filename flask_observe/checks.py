"""Built-in health checks: small factories that return a check for
:meth:`~flask_observe.Observe.add_health_check`.

Each returned check fails by raising, with a message that says why, and carries the
``componentType`` of the health body as its ``component_type`` attribute. None of them
imports an optional library before it is called: :func:`sqlalchemy_check` needs
SQLAlchemy, and says so when it is missing.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Union

from ._version import __version__
from .health import HealthCheckError

__all__ = ["disk_space_check", "redis_check", "sqlalchemy_check", "url_check"]


class _Check:
    """A check function with the ``componentType`` its results are reported under."""

    __slots__ = ("_fn", "_name", "component_type")

    def __init__(self, name: str, component_type: str, fn: Callable[[], None]) -> None:
        self._name = name
        self._fn = fn
        self.component_type = component_type

    def __call__(self) -> None:
        self._fn()

    def __repr__(self) -> str:
        return f"<{self._name}>"


def sqlalchemy_check(engine: Any) -> Callable[[], None]:
    """A check that runs ``SELECT 1`` on a SQLAlchemy engine.

    It takes a connection from the engine's pool and gives it back, so it also finds a
    pool that is exhausted (the check then waits for the pool's own timeout, or fails at
    the check's timeout, whichever comes first).

    :param engine: a :class:`sqlalchemy.engine.Engine`, or a function without arguments
        that returns one, called at each run inside the app context: with
        Flask-SQLAlchemy, ``sqlalchemy_check(lambda: db.engine)``.
    :raises ImportError: if SQLAlchemy is not installed.

    .. versionadded:: 0.1
    """
    try:
        from sqlalchemy import text
    except ImportError:
        raise ImportError(
            "sqlalchemy_check needs SQLAlchemy: pip install 'flask-observe[sqlalchemy]'"
        ) from None
    select_one = text("SELECT 1")
    get_engine = engine if callable(engine) else lambda: engine

    def check() -> None:
        with get_engine().connect() as connection:
            connection.execute(select_one).scalar()

    return _Check(f"sqlalchemy_check({engine!r})", "datastore", check)


def redis_check(client: Any) -> Callable[[], None]:
    """A check that sends ``PING`` to a Redis server and expects an answer.

    :param client: a client with a ``ping()`` method, such as redis-py's ``redis.Redis``
        (or valkey-py's): this factory imports no Redis library itself. Give the client a
        ``socket_timeout`` no longer than the check's timeout, so a run never outlives it
        by much.
    :raises TypeError: if *client* has no ``ping`` method.

    .. versionadded:: 0.1
    """
    ping = getattr(client, "ping", None)
    if not callable(ping):
        raise TypeError(f"redis_check needs a Redis client with a ping() method, not {client!r}")

    def check() -> None:
        if not ping():
            raise HealthCheckError("PING got no answer")

    return _Check(f"redis_check({client!r})", "datastore", check)


def url_check(url: str, timeout: float = 2.0) -> Callable[[], None]:
    """A check that sends ``GET`` to *url* and expects a 2xx answer (after redirects).

    :param url: an ``http://`` or ``https://`` URL.
    :param timeout: seconds to wait for the connection and for each read.
    :raises ValueError: if *url* is not an HTTP(S) URL, or *timeout* is not positive.

    .. versionadded:: 0.1
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"url_check needs an http:// or https:// URL, not {url!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    headers = {"User-Agent": f"flask-observe/{__version__} health check"}

    def check() -> None:
        req = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            raise HealthCheckError(f"GET {url} answered {exc.code}") from None
        if not 200 <= status < 300:
            raise HealthCheckError(f"GET {url} answered {status}")

    return _Check(f"url_check({url!r})", "component", check)


def disk_space_check(
    path: Union[str, os.PathLike[str]] = "/", min_free_ratio: float = 0.1
) -> Callable[[], None]:
    """A check that the file system holding *path* has at least *min_free_ratio* of its
    space free.

    :param path: any path on the file system to watch.
    :param min_free_ratio: from 0 to 1: ``0.1`` fails when less than 10 % is free.
    :raises ValueError: if *min_free_ratio* is not from 0 to 1.

    .. versionadded:: 0.1
    """
    number = isinstance(min_free_ratio, (int, float)) and not isinstance(min_free_ratio, bool)
    if not (number and 0 <= min_free_ratio <= 1):
        raise ValueError(f"min_free_ratio must be a number from 0 to 1, not {min_free_ratio!r}")

    def check() -> None:
        usage = shutil.disk_usage(path)
        free = usage.free / usage.total if usage.total else 0.0
        if free < min_free_ratio:
            raise HealthCheckError(
                f"{free:.1%} free on {os.fspath(path)}, below the {min_free_ratio:.1%} required"
            )

    return _Check(f"disk_space_check({os.fspath(path)!r})", "system", check)
