"""The console's JSON API, ``<console>/api/...``: the data behind every page.

Each page is rendered from the dict the API call of the same name returns, so what a page
shows and what a script can fetch never differ. Every function here reads the request's
filters as plain values, never trusts them further than a comparison, and redacts span
attributes with :data:`OBSERVE_LOG_REDACT` as log fields are.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from typing import Any, Optional

from flask import Flask

from ..exposition import scraped_registry
from .figures import alerts_now, route_figures, saturation_gauges
from .install import Console
from .loglines import parse_lines
from .spans import KeptSpan, Trace, group_traces

__all__ = [
    "LEVELS",
    "TRACE_ID",
    "logs_data",
    "routes_data",
    "trace_data",
    "traces_data",
]

#: A trace ID as the pages take it: 32 hex digits.
TRACE_ID = re.compile(r"[0-9a-f]{32}")
#: Log levels, lowest first: a level filter shows that level and those above it.
LEVELS = ("debug", "info", "warning", "error", "critical")
#: The most traces the list shows, and log lines a page shows.
MAX_TRACES = 200
MAX_LINES = 500


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def worker(console: Console) -> dict[str, Any]:
    """Which process answered, and what its figures cover."""
    pid = os.getpid()
    if console.multiprocess:
        note = (
            f"Worker pid {pid}: the route figures are every worker's (the shared metrics); "
            "the traces and log lines are this worker's."
        )
    else:
        note = f"Process pid {pid}."
    return {"pid": pid, "multiprocess": console.multiprocess, "note": note}


def _families(state: Any) -> list[Any]:
    return list(scraped_registry(state).collect())


def _health(console: Console, app: Flask, state: Any) -> Optional[dict[str, Any]]:
    monitor = state.health
    if monitor is None:
        return None
    results = monitor.results(app)
    status, output = monitor.status(results)
    # Kept by the monitor, so a failure a probe saw between two views of the console shows.
    failures = monitor.last_failures()
    checks = []
    for check, result in results:
        last = failures.get(check.name)
        checks.append(
            {
                "name": check.name,
                "status": result.status,
                "critical": check.critical,
                "duration_ms": round(result.duration * 1000, 3),
                "checked_at": _iso(result.time),
                "output": result.output,
                "last_error": None if last is None else (last.output or "failed"),
                "last_error_at": None if last is None else _iso(last.time),
            }
        )
    return {"status": status, "output": output, "checks": checks}


def routes_data(console: Console, app: Flask, state: Any) -> dict[str, Any]:
    """``GET api/routes``: the figures of each route over the window, the health checks,
    the saturation gauges and the alert conditions that hold now."""
    routes, window, others = route_figures(console.history, _families(state), console.skip_endpoint)
    gauges = saturation_gauges(others)
    return {
        "worker": worker(console),
        "window": {
            "configured": window.configured,
            "seconds": None if window.seconds is None else round(window.seconds, 3),
            "full": window.full,
        },
        "routes": [
            {
                "method": route.method,
                "endpoint": route.endpoint,
                "requests": route.requests,
                "rate": route.rate,
                "error_ratio": route.error_ratio,
                "p50": route.p50,
                "p95": route.p95,
                "p99": route.p99,
                "charts": {
                    "rate": {"points": route.rate_chart.points, "peak": route.rate_chart.peak},
                    "p95": {"points": route.p95_chart.points, "peak": route.p95_chart.peak},
                },
            }
            for route in routes
        ],
        "health": _health(console, app, state),
        "saturation": [
            {
                "kind": gauge.kind,
                "name": gauge.name,
                "value": gauge.value,
                "limit": gauge.limit,
                "ratio": gauge.ratio,
                "unit": gauge.unit,
            }
            for gauge in gauges
        ],
        "alerts": [
            {
                "name": alert.name,
                "severity": alert.severity,
                "condition": alert.condition,
                "holds": alert.holds,
                "detail": alert.detail,
            }
            for alert in alerts_now(console.settings, routes, gauges)
        ],
    }


def _buffer(console: Console) -> dict[str, Any]:
    return {
        "spans": len(console.spans),
        "spans_max": console.spans.size,
        "logs": len(console.logs),
        "logs_max": console.logs.size,
    }


def _summary(trace: Trace) -> dict[str, Any]:
    return {
        "trace_id": trace.trace_id,
        "name": trace.root.name,
        "method": trace.method,
        "route": trace.route,
        "status_code": trace.status_code or None,
        "failed": trace.failed,
        "duration_ms": round(trace.duration_ms, 3),
        "start": _iso(trace.start_ns / 1e9),
        "spans": len(trace.spans),
    }


def traces_data(
    console: Console, *, route: Optional[str] = None, status: Optional[str] = None
) -> dict[str, Any]:
    """``GET api/traces?route=&status=``: the recent traces of this process, failed first,
    then slowest first; *route* keeps those of one route template, *status* ``"error"`` or
    ``"ok"`` those that failed or did not."""
    traces = list(group_traces(console.spans.items()).values())
    routes = sorted({trace.route for trace in traces if trace.route is not None})
    if route:
        traces = [trace for trace in traces if trace.route == route]
    if status in ("error", "ok"):
        traces = [trace for trace in traces if trace.failed == (status == "error")]
    traces.sort(key=lambda trace: (not trace.failed, -trace.duration_ms))
    return {
        "worker": worker(console),
        "buffer": _buffer(console),
        "tracing": console.tracing_note,
        "filters": {
            "route": route or None,
            "status": status if status in ("error", "ok") else None,
        },
        "routes": routes,
        "traces": [_summary(trace) for trace in traces[:MAX_TRACES]],
        "total": len(traces),
    }


def _depths(spans: list[KeptSpan]) -> dict[str, int]:
    parents = {span.span_id: span.parent_id for span in spans}
    depths: dict[str, int] = {}
    for span in spans:
        depth, parent, seen = 0, span.parent_id, {span.span_id}
        while parent in parents and parent not in seen:
            seen.add(parent)
            depth += 1
            parent = parents[parent]
        depths[span.span_id] = depth
    return depths


def _tree_order(spans: list[KeptSpan]) -> list[KeptSpan]:
    """Parents before their children, siblings by start time: the waterfall's order."""
    here = {span.span_id for span in spans}
    children: dict[Optional[str], list[KeptSpan]] = {}
    for span in spans:
        parent = span.parent_id if span.parent_id in here else None
        children.setdefault(parent, []).append(span)
    ordered: list[KeptSpan] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        span = stack.pop()
        ordered.append(span)
        stack.extend(reversed(children.get(span.span_id, [])))
    return ordered


def trace_data(console: Console, trace_id: str) -> Optional[dict[str, Any]]:
    """``GET api/traces/<trace_id>``: one trace's spans, parents first, each with its
    offset and duration in milliseconds, redacted attributes and events, and the log lines
    that carry the trace ID; ``None`` if this process keeps no span of it."""
    trace_id = trace_id.lower()
    if not TRACE_ID.fullmatch(trace_id):
        return None
    wanted = int(trace_id, 16)
    trace = group_traces(
        span
        for span in console.spans.items()
        if span.context is not None and span.context.trace_id == wanted
    ).get(trace_id)
    if trace is None:
        return None
    start = trace.start_ns
    total = max(trace.duration_ms, 1e-6)
    depths = _depths(trace.spans)
    redact = console.redactor.fields
    spans = []
    for span in _tree_order(trace.spans):
        offset = (span.start_ns - start) / 1e6
        spans.append(
            {
                "span_id": span.span_id,
                "parent_id": span.parent_id,
                "name": span.name,
                "kind": span.kind,
                "depth": depths[span.span_id],
                "offset_ms": round(offset, 3),
                "duration_ms": round(span.duration_ms, 3),
                "status": span.status,
                "status_description": span.status_description,
                "attributes": redact(dict(span.attributes)),
                "events": [
                    {
                        "name": event.name,
                        "offset_ms": round((event.timestamp - start) / 1e6, 3),
                        "attributes": redact(dict(event.attributes or {})),
                    }
                    for event in span.events
                ],
                # Where the span's bar starts and how long it is, in thousandths of the trace.
                "bar": {
                    "x": round(1000 * offset / total, 1),
                    "width": max(round(1000 * span.duration_ms / total, 1), 2.0),
                },
            }
        )
    return {
        "worker": worker(console),
        "trace": _summary(trace),
        "spans": spans,
        # In the order they were written, under the spans they tell more of.
        "logs": logs_data(console, trace_id=trace_id)["lines"][::-1],
    }


def logs_data(
    console: Console,
    *,
    level: Optional[str] = None,
    request_id: Optional[str] = None,
    trace_id: Optional[str] = None,
) -> dict[str, Any]:
    """``GET api/logs?level=&request_id=&trace_id=``: this process's recent log lines,
    newest first, at *level* or above, of one request or one trace."""
    lines = parse_lines(console.logs.items())
    level = level.lower() if level else None
    if level in LEVELS:
        allowed = set(LEVELS[LEVELS.index(level) :])
        lines = [line for line in lines if str(line.get("level", "")).lower() in allowed]
    if request_id:
        lines = [line for line in lines if line.get("request_id") == request_id]
    if trace_id:
        trace_id = trace_id.lower()
        lines = [line for line in lines if line.get("trace_id") == trace_id]
    lines.reverse()
    return {
        "worker": worker(console),
        "buffer": _buffer(console),
        "filters": {
            "level": level if level in LEVELS else None,
            "request_id": request_id or None,
            "trace_id": trace_id or None,
        },
        "lines": lines[:MAX_LINES],
        "total": len(lines),
    }
