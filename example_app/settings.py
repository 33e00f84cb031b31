"""The example's own settings: the database URL and the simulated checkout.

Each setting is an ``EXAMPLE_*`` name, read once when the app is made: first from the app's
config, then from the environment, else its default. A bad value stops the app at start-up
with a :class:`ValueError` that names the variable.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = [
    "DEFAULT_BUG_RATE",
    "DEFAULT_DELAYS",
    "DEFAULT_FAILURE_RATES",
    "DEFAULT_WAREHOUSE_DELAY",
    "KNOWN_NAMES",
    "MAX_DELAY",
    "STEPS",
    "Checkout",
    "Settings",
    "Step",
    "default_database_url",
    "delay_name",
    "failure_rate_name",
    "load_settings",
]

_log = logging.getLogger(__name__)

#: The steps of a checkout, in the order :func:`~example_app.checkout.process_order` runs them.
STEPS = ("authenticate", "check_inventory", "process_payment", "send_email")

#: Mean seconds each step takes: a small checkout in which the inventory lookup is slowest.
DEFAULT_DELAYS: Mapping[str, float] = {
    "authenticate": 0.002,
    "check_inventory": 0.040,
    "process_payment": 0.015,
    "send_email": 0.003,
}
#: Chance, from 0 to 1, that each step fails: only a few card payments are declined.
DEFAULT_FAILURE_RATES: Mapping[str, float] = {
    "authenticate": 0.0,
    "check_inventory": 0.0,
    "process_payment": 0.02,
    "send_email": 0.0,
}
#: Chance that an order meets the simulated bug: an exception nobody handles, a 500.
DEFAULT_BUG_RATE = 0.01
#: The longest delay a step may be given, in seconds.
MAX_DELAY = 60.0

DATABASE_URL = "EXAMPLE_DATABASE_URL"
#: Where the inventory service answers (``example_app.inventory``); unset, the checkout
#: simulates the inventory step in process, as the other steps.
INVENTORY_URL = "EXAMPLE_INVENTORY_URL"
BUG_RATE = "EXAMPLE_BUG_RATE"
WAREHOUSE_DELAY = "EXAMPLE_WAREHOUSE_DELAY"
#: Seconds the background job that tells the warehouse of an order takes.
DEFAULT_WAREHOUSE_DELAY = 0.02
#: The database file in the instance folder, used when no URL is set.
DEFAULT_DATABASE_FILE = "example_app.sqlite3"


def delay_name(step: str) -> str:
    """The variable that sets *step*'s delay, e.g. ``EXAMPLE_CHECK_INVENTORY_DELAY``."""
    return f"EXAMPLE_{step.upper()}_DELAY"


def failure_rate_name(step: str) -> str:
    """The variable that sets *step*'s failure rate, e.g. ``EXAMPLE_SEND_EMAIL_FAILURE_RATE``."""
    return f"EXAMPLE_{step.upper()}_FAILURE_RATE"


def default_database_url(instance_path: str) -> str:
    """The database used when ``EXAMPLE_DATABASE_URL`` is not set: a file in *instance_path*."""
    return "sqlite:///" + os.path.join(instance_path, DEFAULT_DATABASE_FILE)


#: Every ``EXAMPLE_*`` name the app reads.
KNOWN_NAMES = frozenset(
    [DATABASE_URL, BUG_RATE, WAREHOUSE_DELAY, INVENTORY_URL]
    + [delay_name(step) for step in STEPS]
    + [failure_rate_name(step) for step in STEPS]
)


@dataclass(frozen=True)
class Step:
    """How one simulated checkout step behaves."""

    #: The step's name, one of :data:`STEPS`.
    name: str
    #: Mean seconds the step sleeps; each call varies by up to half of it either way.
    delay: float
    #: Chance, from 0 to 1, that a call fails.
    failure_rate: float


@dataclass(frozen=True)
class Checkout:
    """The behaviour of every step of a checkout, and of the simulated bug."""

    authenticate: Step
    check_inventory: Step
    process_payment: Step
    send_email: Step
    #: Chance, from 0 to 1, that an order raises an exception the app does not handle.
    bug_rate: float
    #: The inventory service's base URL: :func:`~example_app.checkout.check_inventory` calls
    #: it over HTTP, and *check_inventory*'s delay and failure rate are then that service's.
    #: ``None`` simulates the step here.
    inventory_url: Optional[str] = None


@dataclass(frozen=True)
class Settings:
    """Everything the example reads at start-up."""

    database_url: str
    checkout: Checkout
    #: Seconds the background job of each order takes (see :mod:`example_app.jobs`).
    warehouse_delay: float


def _number(name: str, value: Any, low: float, high: float, source: str) -> float:
    """*value* (a number, or text from the environment) as a float from *low* to *high*."""
    allowed = f"a number from {low:g} to {high:g}"
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ValueError(f"{name} = {value!r} ({source}) is invalid: expected {allowed}")
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{name} = {value!r} ({source}) is invalid: expected {allowed}")
    return float(number)


def _database_url(value: Any, source: str) -> str:
    allowed = "an SQLAlchemy database URL, such as 'sqlite:////tmp/shop.sqlite3'"
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{DATABASE_URL} = {value!r} ({source}) is invalid: expected {allowed}")
    try:
        url = make_url(value.strip())
    except ArgumentError:
        raise ValueError(
            f"{DATABASE_URL} = {value!r} ({source}) is invalid: expected {allowed}"
        ) from None
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise ValueError(
            f"{DATABASE_URL} = {value!r} ({source}) is invalid: an in-memory SQLite database "
            "is not shared between the server's threads; give a file, such as "
            "'sqlite:////tmp/shop.sqlite3'"
        )
    return value.strip()


def _inventory_url(value: Any, source: str) -> str:
    allowed = "an http:// or https:// URL, such as 'http://127.0.0.1:5001'"
    url = value.strip().rstrip("/") if isinstance(value, str) else ""
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ValueError(f"{INVENTORY_URL} = {value!r} ({source}) is invalid: expected {allowed}")
    return url


def _check_names(config: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    """Refuse unknown ``EXAMPLE_*`` config keys; warn about unknown environment variables."""

    def unknown(names: Any) -> list[str]:
        return sorted(
            n
            for n in names
            if isinstance(n, str) and n.startswith("EXAMPLE_") and n not in KNOWN_NAMES
        )

    def hint(name: str) -> str:
        close = difflib.get_close_matches(name, KNOWN_NAMES, n=1, cutoff=0.6)
        return f"; did you mean {close[0]}?" if close else ""

    for name in unknown(config):
        raise ValueError(f"{name} is not a setting of the example app{hint(name)}")
    for name in unknown(environ):
        _log.warning(
            "The environment variable %s is not a setting and is ignored%s", name, hint(name)
        )


def load_settings(
    config: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
    *,
    instance_path: str,
) -> Settings:
    """Read and check every ``EXAMPLE_*`` setting; the app's config beats the environment.

    A config key set to ``None`` counts as not set.

    :param config: the app's config.
    :param environ: the environment variables.
    :param instance_path: the app's instance folder, where the default database file goes.
    :raises ValueError: naming the first variable with a bad value.
    """
    _check_names(config, environ)

    def raw(name: str) -> tuple[Any, str]:
        if config.get(name) is not None:
            return config[name], "app config"
        if name in environ:
            return environ[name], "environment"
        return None, "default"

    def number(name: str, default: float, high: float) -> float:
        value, source = raw(name)
        return default if value is None else _number(name, value, 0.0, high, source)

    steps = {
        step: Step(
            name=step,
            delay=number(delay_name(step), DEFAULT_DELAYS[step], MAX_DELAY),
            failure_rate=number(failure_rate_name(step), DEFAULT_FAILURE_RATES[step], 1.0),
        )
        for step in STEPS
    }
    inventory, source = raw(INVENTORY_URL)
    checkout = Checkout(
        bug_rate=number(BUG_RATE, DEFAULT_BUG_RATE, 1.0),
        inventory_url=None if inventory is None else _inventory_url(inventory, source),
        **steps,
    )

    url, source = raw(DATABASE_URL)
    if url is None:
        database_url = default_database_url(instance_path)
    else:
        database_url = _database_url(url, source)
    return Settings(
        database_url=database_url,
        checkout=checkout,
        warehouse_delay=number(WAREHOUSE_DELAY, DEFAULT_WAREHOUSE_DELAY, MAX_DELAY),
    )
