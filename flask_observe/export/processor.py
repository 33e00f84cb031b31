"""The span processor and exporter wrapper of the provider flask-observe builds: they count
every span that is lost on its way out, in ``flask_observe_spans_dropped_total{reason}``."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any, Callable

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

__all__ = ["DROP_REASONS", "CountingBatchProcessor", "CountingExporter", "OnDrop"]

_log = logging.getLogger("flask_observe")

#: Reasons a span is lost, the ``reason`` label of ``flask_observe_spans_dropped_total``.
DROP_REASONS = ("queue_full", "export_failed", "export_error")

#: Called with a reason, a count of spans and, for a failed export, what to check (where
#: the exporter sends them).
OnDrop = Callable[..., None]


class CountingExporter(SpanExporter):
    """Passes spans to *inner*, counting those whose export failed."""

    def __init__(self, inner: SpanExporter, on_drop: OnDrop) -> None:
        self._inner = inner
        self._on_drop = on_drop
        endpoint = getattr(inner, "endpoint", None)
        #: What a failed export asks to check, named for the exporter in use.
        self._check = (
            f"Check that the OTLP endpoint {endpoint} is up and accepts them."
            if isinstance(endpoint, str)
            else f"Check where the {type(inner).__name__} writes them."
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            self._on_drop("export_error", len(spans), self._check)
            raise  # the processor logs it
        if result is not SpanExportResult.SUCCESS:
            self._on_drop("export_failed", len(spans), self._check)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _CountingQueue(deque):  # type: ignore[type-arg]
    """A batch processor's span queue that counts the spans a full queue pushes out.

    The SDK's queue is a ``deque`` with a ``maxlen``: appending to it when full silently
    drops the oldest span. Counting at that append, under a lock that taking spans off the
    queue also goes through, counts each dropped span exactly once.
    """

    def __init__(self, maxlen: int, on_drop: OnDrop) -> None:
        super().__init__((), maxlen)
        self._lock = threading.Lock()
        self._on_drop = on_drop

    def appendleft(self, item: Any) -> None:
        with self._lock:
            full = len(self) == self.maxlen
            super().appendleft(item)
        if full:
            self._on_drop("queue_full", 1)

    def pop(self) -> Any:  # type: ignore[override]  # deque.pop takes no index
        with self._lock:
            return super().pop()


class CountingBatchProcessor(BatchSpanProcessor):
    """The SDK's batch processor, counting the spans it drops because its queue is full.

    The SDK keeps no count of them, only a log line it repeats at most every 20 seconds.
    Its queue (a private attribute, the same in SDK 1.41 and 1.45) is replaced by a
    :class:`_CountingQueue` while still empty. Should a later SDK hide it, the count stays
    at zero and a warning says so at start-up.
    """

    def __init__(self, exporter: SpanExporter, on_drop: OnDrop, **options: Any) -> None:
        super().__init__(exporter, **options)
        batch = getattr(self, "_batch_processor", None)
        queue = getattr(batch, "_queue", None)
        if isinstance(queue, deque) and queue.maxlen is not None and not queue:
            batch._queue = _CountingQueue(queue.maxlen, on_drop)  # type: ignore[union-attr]
        else:
            _log.warning(
                "This opentelemetry-sdk hides its span queue: spans dropped because it is "
                "full cannot be counted in flask_observe_spans_dropped_total."
            )
