"""Spans on their way out of the process: the tracer provider flask-observe makes when the
app has none, its batch processor, and its OTLP exporter with the encoder it sends with.

Nothing here runs when the user gives the provider (an argument, or a global one): their
SDK path is theirs, unless they put :class:`OtlpHttpExporter` in it themselves.
"""

from .otlp import OtlpHttpExporter
from .processor import DROP_REASONS, OnDrop
from .provider import build_provider

__all__ = ["DROP_REASONS", "OnDrop", "OtlpHttpExporter", "build_provider"]
