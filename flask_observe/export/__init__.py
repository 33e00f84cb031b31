"""Spans on their way out of the process: the tracer provider flask-observe makes when the
app has none, its batch processor and its exporter.

Nothing here runs when the user gives the provider (an argument, or a global one): their
SDK path is theirs.
"""

from .processor import DROP_REASONS, OnDrop
from .provider import build_provider

__all__ = ["DROP_REASONS", "OnDrop", "build_provider"]
