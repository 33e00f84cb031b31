"""flask-observe: metrics, structured logs, traces and health checks for Flask, in one line."""

from ._version import __version__
from .config import ConfigError
from .extension import Observe
from .functions import counted, timed
from .logs import get_logger
from .tracing import traced

__all__ = ["ConfigError", "Observe", "__version__", "counted", "get_logger", "timed", "traced"]
