"""flask-observe: metrics, structured logs, traces and health checks for Flask, in one line."""

from ._version import __version__
from .checks import disk_space_check, redis_check, sqlalchemy_check, url_check
from .config import ConfigError
from .extension import Observe
from .functions import counted, timed
from .health import HealthCheckError
from .logs import configure_structlog, get_logger
from .spans import traced

__all__ = [
    "ConfigError",
    "HealthCheckError",
    "Observe",
    "__version__",
    "configure_structlog",
    "counted",
    "disk_space_check",
    "get_logger",
    "redis_check",
    "sqlalchemy_check",
    "timed",
    "traced",
    "url_check",
]
