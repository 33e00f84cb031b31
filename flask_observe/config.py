"""The ``OBSERVE_*`` configuration keys: defaults, validation, one frozen settings object.

Every key is declared once in :data:`_KEYS` with its default and its validator. ``init_app``
sets the defaults with ``app.config.setdefault``, then :func:`load_settings` reads and checks
every key once, so a bad value fails at start-up with the key, the value and what is allowed,
and nothing reads ``app.config`` on the request path.
"""

from __future__ import annotations

import difflib
import importlib.util
import ipaddress
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union
from urllib.parse import unquote

__all__ = ["ConfigError", "Settings", "load_settings", "set_defaults"]

_log = logging.getLogger("flask_observe")

#: The seed latency buckets of the design; the latency alert threshold is merged in.
SEED_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Request and response body sizes, in bytes: 100 B to 10 MB by decades.
DEFAULT_SIZE_BUCKETS: tuple[float, ...] = (100.0, 1e3, 1e4, 1e5, 1e6, 1e7)

#: Field names whose values never reach a log line: matched case-insensitively, anywhere in
#: the name, with ``-`` and ``_`` alike (``X-Api-Key`` matches ``api_key``).
DEFAULT_REDACT: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "authorization",
    "cookie",
    "set-cookie",
    "credit_card",
)

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class ConfigError(ValueError):
    """An ``OBSERVE_*`` value is invalid.

    Raised by :meth:`flask_observe.Observe.init_app` for a bad ``OBSERVE_*`` value, or a
    ``PROMETHEUS_MULTIPROC_DIR`` it cannot use (the key is then that variable's name), and
    by ``@timed(buckets=...)`` for bad buckets (the key is then ``"buckets"``). The message
    names the key, the value it was given and what is allowed.

    .. versionadded:: 0.1
    """

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"{key} = {value!r} is invalid: expected {allowed}")


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one app, read once in ``init_app``.

    Each field is the value of the ``OBSERVE_*`` key of the same name, upper-cased; see
    :doc:`/configuration` for their meaning.
    """

    service_name: str
    metrics_enabled: bool
    metrics_path: Optional[str]
    health_path: str
    group_by: str
    buckets: tuple[float, ...]
    size_buckets: tuple[float, ...]
    alert_latency_seconds: float
    alert_latency_for: str
    alert_error_ratio: float
    alert_error_for: str
    alert_traffic_drop_ratio: float
    alert_traffic_drop_offset: str
    alert_traffic_drop_for: str
    alert_saturation_ratio: float
    alert_saturation_for: str
    alert_in_flight_max: Optional[int]
    alert_dependency_error_ratio: float
    alert_dependency_latency_seconds: float
    alert_dependency_for: str
    slo_availability: Optional[float]
    runbook_url: Optional[str]
    trace_url_template: Optional[str]
    rules_selector: str
    exclude_paths: tuple[str, ...]
    metrics_bearer_token: Optional[str]
    metrics_allow_networks: Optional[tuple[Network, ...]]
    log_json: bool
    log_format: str
    log_level: int
    log_loggers: tuple[str, ...]
    log_root: bool
    log_redact: tuple[str, ...]
    log_query_string: bool
    request_id_header: Optional[str]
    access_log: bool
    access_log_sample: float
    slow_request_seconds: float
    tracing_instrumentation: str
    tracing_setup: str
    tracing_exporter: Optional[str]
    tracing_sample_ratio: Optional[float]
    tracing_queue_size: Optional[int]
    tracing_batch_size: Optional[int]
    service_version: Optional[str]
    service_environment: Optional[str]
    gcp_project: Optional[str]
    health_enabled: bool
    health_timeout: float
    health_cache_seconds: float
    health_details: str
    health_token: Optional[str]
    health_startup_grace: float
    health_max_workers: int
    signals_enabled: bool
    track_sqlalchemy: bool
    process_metrics: bool
    http_clients: tuple[str, ...]
    propagate_hosts: Optional[tuple[str, ...]]
    http_client_max_peers: int
    http_client_log: bool
    #: Resolved at start-up: the key, else ``app.debug`` or a console token.
    console_enabled: bool = False
    console_path: str = "/observe"
    console_token: Optional[str] = None
    console_spans: int = 2000
    console_logs: int = 1000
    console_window: str = "5m"


# -- validators: each takes (key, value) and returns the clean value or raises ConfigError --

Validator = Callable[[str, Any], Any]


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(key, value, "True or False")


def _choice(*allowed: str) -> Validator:
    def check(key: str, value: Any) -> str:
        if isinstance(value, str) and value in allowed:
            return value
        raise ConfigError(key, value, "one of " + ", ".join(repr(a) for a in allowed))

    return check


def _optional_bool(key: str, value: Any) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    raise ConfigError(key, value, "True, False, or None")


def _optional_str(key: str, value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, str) and value:
        return value
    raise ConfigError(key, value, "a non-empty string or None")


def _require_list(key: str, value: Any, allowed: str) -> None:
    """Refuse anything but a list or tuple; a string is a sequence, but not a list of them."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(key, value, allowed)


def _fraction(key: str, value: Any) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and 0 <= value <= 1:
        return float(value)
    raise ConfigError(key, value, "a number from 0 to 1")


def _optional_positive_number(key: str, value: Any) -> Optional[float]:
    return None if value is None else _positive_number(key, value)


def _count(key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ConfigError(key, value, "a whole number > 0")


def _optional_count(key: str, value: Any) -> Optional[int]:
    if value is None:
        return None
    try:
        return _count(key, value)
    except ConfigError:
        raise ConfigError(key, value, "a whole number > 0, or None") from None


def _optional_fraction(key: str, value: Any) -> Optional[float]:
    return None if value is None else _fraction(key, value)


def _optional_choice(*allowed: str) -> Validator:
    check = _choice(*allowed)

    def check_optional(key: str, value: Any) -> Optional[str]:
        if value is None:
            return None
        try:
            checked: str = check(key, value)
        except ConfigError as exc:
            raise ConfigError(key, value, exc.allowed + ", or None") from None
        return checked

    return check_optional


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(key: str, value: Any) -> int:
    if isinstance(value, str) and value.upper() in _LEVELS:
        return int(getattr(logging, value.upper()))
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    allowed = ", ".join(repr(level) for level in _LEVELS)
    raise ConfigError(key, value, f"a level name ({allowed}, any case) or a number >= 0")


def _names(key: str, value: Any) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    allowed = "a list of non-empty strings, or None"
    _require_list(key, value, allowed)
    for item in value:
        if not isinstance(item, str) or not item:
            raise ConfigError(key, value, allowed + f" ({item!r} is not one)")
    return tuple(value)


_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")


def _header_name(key: str, value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, str) and _HEADER_NAME.fullmatch(value):
        return value
    raise ConfigError(key, value, "an HTTP header name (letters, digits and '-'), or None")


#: Why ``/`` is refused: a path is excluded with everything below it, and the metrics and
#: health paths are excluded by default.
_NOT_ROOT = "'/' would leave no request measured"


#: What a fixed path may hold: printable ASCII but for spaces, and for ``<``/``>`` (a Flask
#: converter, which would make every request to it fail for a missing argument), ``?`` and
#: ``#`` (never part of a path).
_FIXED_PATH = re.compile(r"/[!-~]*")
_NOT_IN_PATHS = frozenset("<>?#")


def _path(key: str, value: Any) -> str:
    allowed = "a URL path below '/', such as '/metrics'"
    if isinstance(value, str) and value.startswith("/"):
        if not _FIXED_PATH.fullmatch(value) or not _NOT_IN_PATHS.isdisjoint(value):
            raise ConfigError(
                key,
                value,
                f"{allowed}: a fixed path, printable ASCII without spaces, '<', '>' (a "
                "converter), '?' or '#'",
            )
        path = value.rstrip("/")
        if path:
            return path
        raise ConfigError(key, value, f"{allowed}: {_NOT_ROOT}")
    raise ConfigError(key, value, allowed)


def _token(key: str, value: Any) -> Optional[str]:
    """A secret compared byte for byte with what clients send: none of it may be whitespace
    around it, which is how a secret read from a file usually ends (a newline)."""
    if value is None:
        return None
    if isinstance(value, str) and value and value == value.strip():
        return value
    hint = ""
    if isinstance(value, str) and value.strip():
        hint = ": strip it (a secret read from a file often ends in a newline)"
    raise ConfigError(key, value, f"a non-empty string without whitespace around it, or None{hint}")


def _optional_path(key: str, value: Any) -> Optional[str]:
    return None if value is None else _path(key, value)


def health_paths(health_path: str) -> tuple[str, str, str]:
    """The paths the health endpoints answer at, from ``OBSERVE_HEALTH_PATH``."""
    return health_path, health_path + "/live", health_path + "/ready"


def _positive_number(key: str, value: Any) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and math.isfinite(value) and value > 0:
        return float(value)
    raise ConfigError(key, value, "a positive, finite number")


def _seconds(key: str, value: Any) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and math.isfinite(value) and value >= 0:
        return float(value)
    raise ConfigError(key, value, "a finite number of seconds, 0 or more")


def _buckets(key: str, value: Any) -> Optional[tuple[float, ...]]:
    return None if value is None else validate_buckets(key, value)


def validate_buckets(key: str, value: Any) -> tuple[float, ...]:
    """Check histogram bucket bounds; :class:`ConfigError` naming *key* if they are bad."""
    allowed = "a non-empty, strictly increasing sequence of positive, finite numbers"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigError(key, value, allowed)
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ConfigError(key, value, allowed + f" ({item!r} is not a number)")
        if not math.isfinite(item) or item <= 0:
            raise ConfigError(key, value, allowed + f" ({item!r} is not positive and finite)")
    if any(b <= a for a, b in zip(value, value[1:])):
        raise ConfigError(key, value, allowed + " (they are not sorted, or repeat)")
    return tuple(float(v) for v in value)


def _path_list(key: str, value: Any) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    allowed = "a list of URL paths starting with '/', or None"
    _require_list(key, value, allowed)
    for item in value:
        if not isinstance(item, str) or not item.startswith("/"):
            raise ConfigError(key, value, allowed + f" ({item!r} does not start with '/')")
        if not item.rstrip("/"):
            raise ConfigError(key, value, f"{allowed} ({_NOT_ROOT})")
    return tuple(item.rstrip("/") for item in value)


def _networks(key: str, value: Any) -> Optional[tuple[Network, ...]]:
    if value is None:
        return None
    allowed = "a list of networks in CIDR notation, such as ['10.0.0.0/8', '::1/128'], or None"
    _require_list(key, value, allowed)
    networks = []
    for item in value:
        try:
            if not isinstance(item, str):  # ip_network() takes 10 for 0.0.0.10
                raise TypeError(item)
            networks.append(ipaddress.ip_network(item, strict=False))
        except (TypeError, ValueError):
            raise ConfigError(key, value, allowed + f" ({item!r} is not one)") from None
    return tuple(networks)


#: A Prometheus duration, as its rule files and PromQL take it: units from largest to
#: smallest, each at most once (``1h30m``, ``90s``, ``2d``).
_DURATION = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?"
)
_DURATION_UNITS = (365 * 86400.0, 7 * 86400.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)


def duration_seconds(text: str) -> float:
    """The length of a Prometheus duration already checked by :func:`_duration`, in seconds."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Prometheus duration")
    return sum(int(n) * unit for n, unit in zip(match.groups(), _DURATION_UNITS) if n)


def _duration(key: str, value: Any) -> str:
    """A Prometheus duration longer than zero, kept as written: it goes into the rules."""
    if isinstance(value, str) and _DURATION.fullmatch(value) and duration_seconds(value) > 0:
        return value
    raise ConfigError(
        key, value, "a Prometheus duration longer than 0, such as '30s', '5m', '1h30m' or '1d'"
    )


#: The console's window: long enough for a few requests, short enough for its history.
_CONSOLE_WINDOW = (10.0, 3600.0)


def _console_window(key: str, value: Any) -> str:
    low, high = _CONSOLE_WINDOW
    if (
        isinstance(value, str)
        and _DURATION.fullmatch(value)
        and low <= duration_seconds(value) <= high
    ):
        return value
    raise ConfigError(key, value, "a Prometheus duration from '10s' to '1h', such as '1m' or '5m'")


def _open_fraction(key: str, value: Any) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and 0 < value < 1:
        return float(value)
    raise ConfigError(key, value, "a number between 0 and 1, both excluded")


def _optional_open_fraction(key: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    try:
        return _open_fraction(key, value)
    except ConfigError as exc:
        raise ConfigError(key, value, exc.allowed + ", or None") from None


def _optional_url(key: str, value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"https?://\S+", value):
        return value
    raise ConfigError(key, value, "an http:// or https:// URL without spaces, or None")


def _trace_url_template(key: str, value: Any) -> Optional[str]:
    allowed = "an http:// or https:// URL containing '{trace_id}', or None"
    try:
        url = _optional_url(key, value)
    except ConfigError:
        raise ConfigError(key, value, allowed) from None
    if url is None or "{trace_id}" in url:
        return url
    raise ConfigError(key, value, allowed)


_MATCHER = r'[A-Za-z_][A-Za-z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\\n]|\\.)*"'
_MATCHERS = re.compile(rf"\s*{_MATCHER}(?:\s*,\s*{_MATCHER})*\s*,?\s*")


def _selector(key: str, value: Any) -> Optional[str]:
    """PromQL label matchers, kept without the braces and a trailing comma."""
    if value is None:
        return None
    if isinstance(value, str):
        inner = value.strip()
        if inner.startswith("{") and inner.endswith("}"):
            inner = inner[1:-1]
        if _MATCHERS.fullmatch(inner):
            return inner.strip().rstrip(",").strip()
    raise ConfigError(
        key,
        value,
        'PromQL label matchers, such as \'job="shop"\' or \'job="shop", env=~"prod|eu"\', or None',
    )


#: The HTTP client libraries whose outgoing calls flask-observe can observe.
HTTP_CLIENTS = ("requests", "httpx")


def installed_clients() -> tuple[str, ...]:
    """The libraries of :data:`HTTP_CLIENTS` this Python can import (none is imported)."""
    return tuple(name for name in HTTP_CLIENTS if importlib.util.find_spec(name) is not None)


def _http_clients(key: str, value: Any) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    allowed = "a list of 'requests' and 'httpx' (installed ones), or None for those installed"
    _require_list(key, value, allowed)
    installed = installed_clients()
    for item in value:
        if item not in HTTP_CLIENTS:
            raise ConfigError(key, value, allowed + f" ({item!r} is not one)")
        if item not in installed:
            raise ConfigError(key, value, allowed + f" ({item!r} is not installed)")
    return tuple(dict.fromkeys(value))


#: A host pattern: a name or an IP address, or ``*.`` and a domain, each perhaps with a
#: port; an IPv6 address in brackets.
_HOST_PATTERN = re.compile(
    r"(?:\*\.)?[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?(?::\d{1,5})?"
    r"|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?"
)


def _host_patterns(key: str, value: Any) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    allowed = (
        "a list of host patterns ('api.internal', '*.example.com', '10.0.0.7:8080', "
        "'[::1]'), or None for every host"
    )
    _require_list(key, value, allowed)
    for item in value:
        if not isinstance(item, str) or not _HOST_PATTERN.fullmatch(item):
            raise ConfigError(key, value, allowed + f" ({item!r} is not one)")
    return tuple(item.lower() for item in value)


def _resource_attribute(name: str) -> Optional[str]:
    """The attribute *name* of ``OTEL_RESOURCE_ATTRIBUTES`` (``key=value,...``, values
    percent-encoded), if set and not empty."""
    for pair in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == name and value.strip():
            return unquote(value.strip())
    return None


# -- the keys --


@dataclass(frozen=True)
class _Key:
    default: Any
    validate: Validator


_KEYS: Mapping[str, _Key] = {
    "OBSERVE_SERVICE_NAME": _Key(None, _optional_str),
    "OBSERVE_METRICS_ENABLED": _Key(True, _bool),
    "OBSERVE_METRICS_PATH": _Key("/metrics", _optional_path),
    "OBSERVE_HEALTH_PATH": _Key("/healthz", _path),
    "OBSERVE_GROUP_BY": _Key("route", _choice("route", "endpoint")),
    "OBSERVE_BUCKETS": _Key(None, _buckets),
    "OBSERVE_SIZE_BUCKETS": _Key(None, _buckets),
    "OBSERVE_ALERT_LATENCY_SECONDS": _Key(2.0, _positive_number),
    "OBSERVE_ALERT_LATENCY_FOR": _Key("5m", _duration),
    "OBSERVE_ALERT_ERROR_RATIO": _Key(0.05, _open_fraction),
    "OBSERVE_ALERT_ERROR_FOR": _Key("2m", _duration),
    "OBSERVE_ALERT_TRAFFIC_DROP_RATIO": _Key(0.5, _open_fraction),
    "OBSERVE_ALERT_TRAFFIC_DROP_OFFSET": _Key("1h", _duration),
    "OBSERVE_ALERT_TRAFFIC_DROP_FOR": _Key("10m", _duration),
    "OBSERVE_ALERT_SATURATION_RATIO": _Key(0.8, _open_fraction),
    "OBSERVE_ALERT_SATURATION_FOR": _Key("5m", _duration),
    "OBSERVE_ALERT_IN_FLIGHT_MAX": _Key(None, _optional_count),
    "OBSERVE_ALERT_DEPENDENCY_ERROR_RATIO": _Key(None, _optional_open_fraction),
    "OBSERVE_ALERT_DEPENDENCY_LATENCY_SECONDS": _Key(None, _optional_positive_number),
    "OBSERVE_ALERT_DEPENDENCY_FOR": _Key("5m", _duration),
    "OBSERVE_SLO_AVAILABILITY": _Key(None, _optional_open_fraction),
    "OBSERVE_RUNBOOK_URL": _Key(None, _optional_url),
    "OBSERVE_TRACE_URL_TEMPLATE": _Key(None, _trace_url_template),
    "OBSERVE_RULES_SELECTOR": _Key(None, _selector),
    "OBSERVE_EXCLUDE_PATHS": _Key(None, _path_list),
    "OBSERVE_METRICS_BEARER_TOKEN": _Key(None, _token),
    "OBSERVE_METRICS_ALLOW_NETWORKS": _Key(None, _networks),
    "OBSERVE_LOG_JSON": _Key(True, _bool),
    "OBSERVE_LOG_FORMAT": _Key("json", _choice("json", "console", "ecs", "gcp", "datadog")),
    "OBSERVE_LOG_LEVEL": _Key("INFO", _log_level),
    "OBSERVE_LOG_LOGGERS": _Key(None, _names),
    "OBSERVE_LOG_ROOT": _Key(False, _bool),
    "OBSERVE_LOG_REDACT": _Key(None, _names),
    "OBSERVE_LOG_QUERY_STRING": _Key(False, _bool),
    "OBSERVE_REQUEST_ID_HEADER": _Key("X-Request-ID", _header_name),
    "OBSERVE_ACCESS_LOG": _Key(True, _bool),
    "OBSERVE_ACCESS_LOG_SAMPLE": _Key(1.0, _fraction),
    "OBSERVE_SLOW_REQUEST_SECONDS": _Key(None, _optional_positive_number),
    "OBSERVE_TRACING_INSTRUMENTATION": _Key("native", _choice("native", "contrib", "off")),
    "OBSERVE_TRACING_SETUP": _Key("auto", _choice("auto", "always", "never")),
    "OBSERVE_TRACING_EXPORTER": _Key(None, _optional_choice("otlp", "console", "none")),
    "OBSERVE_TRACING_SAMPLE_RATIO": _Key(None, _optional_fraction),
    "OBSERVE_TRACING_QUEUE_SIZE": _Key(None, _optional_count),
    "OBSERVE_TRACING_BATCH_SIZE": _Key(None, _optional_count),
    "OBSERVE_SERVICE_VERSION": _Key(None, _optional_str),
    "OBSERVE_SERVICE_ENVIRONMENT": _Key(None, _optional_str),
    "OBSERVE_GCP_PROJECT": _Key(None, _optional_str),
    "OBSERVE_HEALTH_ENABLED": _Key(True, _bool),
    "OBSERVE_HEALTH_TIMEOUT": _Key(2.0, _positive_number),
    "OBSERVE_HEALTH_CACHE_SECONDS": _Key(1.0, _seconds),
    "OBSERVE_HEALTH_DETAILS": _Key(None, _optional_choice("always", "never", "token")),
    "OBSERVE_HEALTH_TOKEN": _Key(None, _token),
    "OBSERVE_HEALTH_STARTUP_GRACE": _Key(0.0, _seconds),
    "OBSERVE_HEALTH_MAX_WORKERS": _Key(8, _count),
    "OBSERVE_SIGNALS_ENABLED": _Key(True, _bool),
    "OBSERVE_TRACK_SQLALCHEMY": _Key(False, _bool),
    "OBSERVE_PROCESS_METRICS": _Key(True, _bool),
    "OBSERVE_HTTP_CLIENTS": _Key(None, _http_clients),
    "OBSERVE_PROPAGATE_HOSTS": _Key(None, _host_patterns),
    "OBSERVE_HTTP_CLIENT_MAX_PEERS": _Key(100, _count),
    "OBSERVE_HTTP_CLIENT_LOG": _Key(False, _bool),
    "OBSERVE_CONSOLE_ENABLED": _Key(None, _optional_bool),
    "OBSERVE_CONSOLE_PATH": _Key("/observe", _path),
    "OBSERVE_CONSOLE_TOKEN": _Key(None, _token),
    "OBSERVE_CONSOLE_SPANS": _Key(2000, _count),
    "OBSERVE_CONSOLE_LOGS": _Key(1000, _count),
    "OBSERVE_CONSOLE_WINDOW": _Key("5m", _console_window),
}

KNOWN_KEYS = frozenset(_KEYS)


def set_defaults(config: dict[str, Any]) -> None:
    """Set every ``OBSERVE_*`` key the app has not set to its default."""
    for name, key in _KEYS.items():
        config.setdefault(name, key.default)


def _warn_unknown_keys(config: Mapping[str, Any]) -> None:
    for name in config:
        if isinstance(name, str) and name.startswith("OBSERVE_") and name not in KNOWN_KEYS:
            # Compared without the prefix every key shares, which would make all look alike.
            close = difflib.get_close_matches(name[8:], [k[8:] for k in KNOWN_KEYS], n=1)
            hint = f"; did you mean OBSERVE_{close[0]}?" if close else ""
            _log.warning("Unknown configuration key %s is ignored%s", name, hint)


def load_settings(
    config: Mapping[str, Any], *, app_name: str, overrides: Mapping[str, Any]
) -> Settings:
    """Validate the ``OBSERVE_*`` keys of *config* into a :class:`Settings`.

    :param config: the app's config, with defaults already set.
    :param app_name: the app's name, the default service name.
    :param overrides: constructor arguments of :class:`~flask_observe.Observe`, keyed by
        config key; they take precedence over the config.
    :raises ConfigError: naming the first invalid key.
    """
    _warn_unknown_keys(config)

    def get(name: str) -> Any:
        raw = overrides[name] if name in overrides else config.get(name, _KEYS[name].default)
        return _KEYS[name].validate(name, raw)

    metrics_path = get("OBSERVE_METRICS_PATH")
    health_path = get("OBSERVE_HEALTH_PATH")
    if metrics_path is not None and metrics_path in health_paths(health_path):
        raise ConfigError(
            "OBSERVE_METRICS_PATH",
            metrics_path,
            f"a path none of the health endpoints has ({', '.join(health_paths(health_path))}"
            ", from OBSERVE_HEALTH_PATH): one of the two would never be answered",
        )
    latency = get("OBSERVE_ALERT_LATENCY_SECONDS")
    buckets = get("OBSERVE_BUCKETS")
    if buckets is None:
        buckets = tuple(sorted(set(SEED_BUCKETS) | {latency}))
    exclude = get("OBSERVE_EXCLUDE_PATHS")
    if exclude is None:
        exclude = tuple(p for p in (metrics_path, health_path) if p)
    console_path = get("OBSERVE_CONSOLE_PATH")
    console_token = get("OBSERVE_CONSOLE_TOKEN")
    console_enabled = get("OBSERVE_CONSOLE_ENABLED")
    if console_enabled is None:
        console_enabled = bool(config.get("DEBUG")) or console_token is not None
    if console_enabled:
        for taken in (metrics_path, *health_paths(health_path)):
            if taken is not None and (taken + "/").startswith(console_path + "/"):
                raise ConfigError(
                    "OBSERVE_CONSOLE_PATH",
                    console_path,
                    f"a path that neither is nor holds {taken} (from OBSERVE_METRICS_PATH or "
                    "OBSERVE_HEALTH_PATH): the console answers at every path below its own",
                )
        # Always, whatever OBSERVE_EXCLUDE_PATHS says: looking at the console must not
        # change the figures, spans and log lines it shows.
        if console_path not in exclude:
            exclude = (*exclude, console_path)
    health_token = get("OBSERVE_HEALTH_TOKEN")
    health_details = get("OBSERVE_HEALTH_DETAILS")
    if health_details is None:
        # Check names and error messages tell an attacker what the app depends on: shown
        # only to those who hold the token, and to nobody when there is no token.
        health_details = "never" if health_token is None else "token"
    elif health_details == "token" and health_token is None:
        raise ConfigError(
            "OBSERVE_HEALTH_DETAILS",
            health_details,
            "'always' or 'never' while OBSERVE_HEALTH_TOKEN is None: 'token' shows the "
            "details to requests that send OBSERVE_HEALTH_TOKEN, so set that key too",
        )
    error_ratio = get("OBSERVE_ALERT_ERROR_RATIO")
    http_clients = get("OBSERVE_HTTP_CLIENTS")
    # OpenTelemetry's own variable comes next, so that all three pillars agree.
    service_name = get("OBSERVE_SERVICE_NAME") or os.environ.get("OTEL_SERVICE_NAME") or app_name
    # Where each platform's own tooling sets them: Datadog's unified service tags, then
    # OpenTelemetry's resource.
    service_version = (
        get("OBSERVE_SERVICE_VERSION")
        or os.environ.get("DD_VERSION")
        or _resource_attribute("service.version")
    )
    service_environment = (
        get("OBSERVE_SERVICE_ENVIRONMENT")
        or os.environ.get("DD_ENV")
        or _resource_attribute("deployment.environment.name")
        or _resource_attribute("deployment.environment")
    )
    log_format = get("OBSERVE_LOG_FORMAT")
    gcp_project = get("OBSERVE_GCP_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if log_format == "gcp" and get("OBSERVE_LOG_JSON") and gcp_project is None:
        raise ConfigError(
            "OBSERVE_GCP_PROJECT",
            None,
            "the Google Cloud project ID with OBSERVE_LOG_FORMAT = 'gcp', whose trace field "
            "names it (or GOOGLE_CLOUD_PROJECT in the environment)",
        )
    # Prometheus names a service by its scrape job: the quickstart's job is the service name.
    selector = get("OBSERVE_RULES_SELECTOR") or f"job={json.dumps(service_name)}"
    return Settings(
        service_name=service_name,
        metrics_enabled=get("OBSERVE_METRICS_ENABLED"),
        metrics_path=metrics_path,
        health_path=health_path,
        group_by=get("OBSERVE_GROUP_BY"),
        buckets=buckets,
        size_buckets=get("OBSERVE_SIZE_BUCKETS") or DEFAULT_SIZE_BUCKETS,
        alert_latency_seconds=latency,
        alert_latency_for=get("OBSERVE_ALERT_LATENCY_FOR"),
        alert_error_ratio=error_ratio,
        alert_error_for=get("OBSERVE_ALERT_ERROR_FOR"),
        alert_traffic_drop_ratio=get("OBSERVE_ALERT_TRAFFIC_DROP_RATIO"),
        alert_traffic_drop_offset=get("OBSERVE_ALERT_TRAFFIC_DROP_OFFSET"),
        alert_traffic_drop_for=get("OBSERVE_ALERT_TRAFFIC_DROP_FOR"),
        alert_saturation_ratio=get("OBSERVE_ALERT_SATURATION_RATIO"),
        alert_saturation_for=get("OBSERVE_ALERT_SATURATION_FOR"),
        alert_in_flight_max=get("OBSERVE_ALERT_IN_FLIGHT_MAX"),
        alert_dependency_error_ratio=get("OBSERVE_ALERT_DEPENDENCY_ERROR_RATIO") or error_ratio,
        alert_dependency_latency_seconds=(
            get("OBSERVE_ALERT_DEPENDENCY_LATENCY_SECONDS") or latency
        ),
        alert_dependency_for=get("OBSERVE_ALERT_DEPENDENCY_FOR"),
        slo_availability=get("OBSERVE_SLO_AVAILABILITY"),
        runbook_url=get("OBSERVE_RUNBOOK_URL"),
        trace_url_template=get("OBSERVE_TRACE_URL_TEMPLATE"),
        rules_selector=selector,
        exclude_paths=exclude,
        metrics_bearer_token=get("OBSERVE_METRICS_BEARER_TOKEN"),
        metrics_allow_networks=get("OBSERVE_METRICS_ALLOW_NETWORKS"),
        log_json=get("OBSERVE_LOG_JSON"),
        log_format=log_format,
        log_level=get("OBSERVE_LOG_LEVEL"),
        log_loggers=get("OBSERVE_LOG_LOGGERS") or (),
        log_root=get("OBSERVE_LOG_ROOT"),
        log_redact=(DEFAULT_REDACT if (redact := get("OBSERVE_LOG_REDACT")) is None else redact),
        log_query_string=get("OBSERVE_LOG_QUERY_STRING"),
        request_id_header=get("OBSERVE_REQUEST_ID_HEADER"),
        access_log=get("OBSERVE_ACCESS_LOG"),
        access_log_sample=get("OBSERVE_ACCESS_LOG_SAMPLE"),
        slow_request_seconds=get("OBSERVE_SLOW_REQUEST_SECONDS") or latency,
        tracing_instrumentation=get("OBSERVE_TRACING_INSTRUMENTATION"),
        tracing_setup=get("OBSERVE_TRACING_SETUP"),
        tracing_exporter=get("OBSERVE_TRACING_EXPORTER"),
        tracing_sample_ratio=get("OBSERVE_TRACING_SAMPLE_RATIO"),
        tracing_queue_size=get("OBSERVE_TRACING_QUEUE_SIZE"),
        tracing_batch_size=get("OBSERVE_TRACING_BATCH_SIZE"),
        service_version=service_version,
        service_environment=service_environment,
        gcp_project=gcp_project,
        health_enabled=get("OBSERVE_HEALTH_ENABLED"),
        health_timeout=get("OBSERVE_HEALTH_TIMEOUT"),
        health_cache_seconds=get("OBSERVE_HEALTH_CACHE_SECONDS"),
        health_details=health_details,
        health_token=health_token,
        health_startup_grace=get("OBSERVE_HEALTH_STARTUP_GRACE"),
        health_max_workers=get("OBSERVE_HEALTH_MAX_WORKERS"),
        signals_enabled=get("OBSERVE_SIGNALS_ENABLED"),
        track_sqlalchemy=get("OBSERVE_TRACK_SQLALCHEMY"),
        process_metrics=get("OBSERVE_PROCESS_METRICS"),
        http_clients=installed_clients() if http_clients is None else http_clients,
        propagate_hosts=get("OBSERVE_PROPAGATE_HOSTS"),
        http_client_max_peers=get("OBSERVE_HTTP_CLIENT_MAX_PEERS"),
        http_client_log=get("OBSERVE_HTTP_CLIENT_LOG"),
        console_enabled=console_enabled,
        console_path=console_path,
        console_token=console_token,
        console_spans=get("OBSERVE_CONSOLE_SPANS"),
        console_logs=get("OBSERVE_CONSOLE_LOGS"),
        console_window=get("OBSERVE_CONSOLE_WINDOW"),
    )
