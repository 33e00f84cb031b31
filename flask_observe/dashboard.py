"""The Grafana dashboard of an app, as plain data dumped as JSON.

Written as dicts rather than with a generator library: grafana-foundation-sdk, Grafana
Labs' own, needs Python 3.11 (this package supports 3.9) and its version numbers make a
plain ``pip install`` pick the builders of Grafana 10.1; grafanalib has had no release
since 2024. The dashboard JSON model is stable and documented, a dashboard is a few
hundred lines of it, and the tests load the output and check every query with promtool.

The panels query the raw metrics, filtered by the ``job`` and ``instance`` template
variables, so that one instance can be singled out; the burn-rate panel reads the
recording rules of :mod:`flask_observe.rules`, which are per service.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from prometheus_client.utils import floatToGoString

from .config import Settings
from .rules import _num, slow_bound

__all__ = ["SCHEMA_VERSION", "dashboard", "dashboard_json", "panel_queries"]

#: The dashboard JSON schema of Grafana 12. Later versions migrate it when they load it;
#: their migrations (42, 43) touch nothing this dashboard uses.
SCHEMA_VERSION = 41

_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: The series of the chosen job and instances, in every panel query.
_F = 'job=~"$job", instance=~"$instance"'
_RATE = "[$__rate_interval]"
_WIDTH = 24  # Grafana's grid columns


def _target(expr: str, legend: str, ref: str, **extra: Any) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": _DATASOURCE,
        "expr": expr,
        "legendFormat": legend,
        "range": True,
        **extra,
    }


def _thresholds(*steps: tuple[str, float]) -> dict[str, Any]:
    return {
        "mode": "absolute",
        "steps": [{"color": "green", "value": None}]
        + [{"color": color, "value": value} for color, value in steps],
    }


def _trace_links(settings: Settings) -> list[dict[str, Any]]:
    """A field override that makes each exemplar's ``trace_id`` a link to its trace."""
    if settings.trace_url_template is None:
        return []
    url = settings.trace_url_template.replace("{trace_id}", "${__value.raw}")
    link = {"title": "Open this trace", "url": url, "targetBlank": True}
    return [
        {
            "matcher": {"id": "byName", "options": "trace_id"},
            "properties": [{"id": "links", "value": [link]}],
        }
    ]


def _timeseries(
    title: str,
    description: str,
    unit: str,
    targets: list[dict[str, Any]],
    *,
    lines: tuple[tuple[str, float], ...] = (),
    overrides: Optional[list[dict[str, Any]]] = None,
) -> dict[str, Any]:
    """A time series panel; *lines* are ``(color, value)`` thresholds drawn as lines."""
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": _DATASOURCE,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 10,
                    "showPoints": "never",
                    "thresholdsStyle": {"mode": "line" if lines else "off"},
                },
                "thresholds": _thresholds(*lines),
            },
            "overrides": overrides or [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def _heatmap(settings: Settings) -> dict[str, Any]:
    expr = f"sum by (le) (increase(http_request_duration_seconds_bucket{{{_F}}}{_RATE}))"
    return {
        "type": "heatmap",
        "title": "Latency distribution",
        "description": "Requests per latency bucket; the dots are exemplars, each a trace.",
        "datasource": _DATASOURCE,
        "targets": [_target(expr, "{{le}}", "A", format="heatmap", exemplar=True)],
        "fieldConfig": {"defaults": {}, "overrides": _trace_links(settings)},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-9},
            "yAxis": {"unit": "s"},
            "tooltip": {"mode": "single", "yHistogram": True},
        },
    }


def _rows(settings: Settings) -> list[tuple[str, list[dict[str, Any]]]]:
    s = settings
    requests = f"http_requests_total{{{_F}}}"
    errors = f'http_requests_total{{{_F}, status=~"5.."}}'
    by_route = "sum by (le, method, endpoint)"
    buckets = f"rate(http_request_duration_seconds_bucket{{{_F}}}{_RATE})"
    le = floatToGoString(slow_bound(s))  # type: ignore[no-untyped-call]
    threshold = _num(s.alert_latency_seconds)
    before = f"sum(rate({requests}[5m] offset {s.alert_traffic_drop_offset}))"

    traffic = [
        _timeseries(
            "Requests per second by route",
            "Finished requests, by method and route template.",
            "reqps",
            [
                _target(
                    f"sum by (method, endpoint) (rate({requests}{_RATE}))",
                    "{{method}} {{endpoint}}",
                    "A",
                )
            ],
        ),
        _timeseries(
            "Requests per second by status",
            "Finished requests, by status code.",
            "reqps",
            [_target(f"sum by (status) (rate({requests}{_RATE}))", "{{status}}", "A")],
        ),
        _timeseries(
            "Traffic against the TrafficDrop line",
            f"The request rate, and {s.alert_traffic_drop_ratio:.0%} of the rate "
            f"{s.alert_traffic_drop_offset} earlier: TrafficDrop fires while the first stays "
            f"under the second for {s.alert_traffic_drop_for}.",
            "reqps",
            [
                _target(f"sum(rate({requests}[5m]))", "now", "A"),
                _target(
                    f"{_num(s.alert_traffic_drop_ratio)} * {before}",
                    f"{s.alert_traffic_drop_ratio:.0%} of {s.alert_traffic_drop_offset} earlier",
                    "B",
                ),
            ],
        ),
    ]
    errors_panels = [
        _timeseries(
            "5xx ratio",
            f"The share of requests that end with a 5xx; HighErrorRate fires above "
            f"{s.alert_error_ratio:.1%} for {s.alert_error_for}.",
            "percentunit",
            [
                _target(
                    f"(sum(rate({errors}{_RATE})) or vector(0))\n"
                    f"/ (sum(rate({requests}{_RATE})) > 0)",
                    "5xx ratio",
                    "A",
                )
            ],
            lines=(("red", s.alert_error_ratio),),
        ),
        _timeseries(
            "5xx per second by route",
            "Server errors, by method, route and status.",
            "reqps",
            [
                _target(
                    f"sum by (method, endpoint, status) (rate({errors}{_RATE}))",
                    "{{method}} {{endpoint}} {{status}}",
                    "A",
                )
            ],
        ),
        _timeseries(
            "Unhandled exceptions by class",
            "Requests ended by an exception the app did not handle.",
            "reqps",
            [
                _target(
                    f"sum by (exception) (rate(http_request_exceptions_total{{{_F}}}{_RATE}))",
                    "{{exception}}",
                    "A",
                )
            ],
        ),
    ]
    if s.slo_availability is not None:
        budget = _num(1 - s.slo_availability)
        errors_panels.append(
            _timeseries(
                "Error budget burn rate",
                f"How many times faster than the {s.slo_availability:.2%} objective allows the "
                "error budget is spent; the lines are the burn rates that page (14.4, 6) and "
                "open a ticket (3, 1).",
                "short",
                [
                    _target(
                        f'service:http_request_errors_per_requests:ratio_rate{window}{{job=~"$job"}}'
                        f" / {budget}",
                        window,
                        ref,
                    )
                    for window, ref in (("1h", "A"), ("6h", "B"), ("1d", "C"), ("3d", "D"))
                ],
                lines=(("yellow", 1.0), ("orange", 3.0), ("red", 6.0), ("dark-red", 14.4)),
            )
        )
    latency = [
        _timeseries(
            "Latency p50 / p95 / p99 by route",
            f"Quantiles of the request duration; HighLatencyP99 fires while a route's p99 is "
            f"above {threshold}s for {s.alert_latency_for}. Exemplars (on p99) link to traces.",
            "s",
            [
                _target(
                    f"histogram_quantile({q / 100}, {by_route} ({buckets}))",
                    f"p{q} {{{{method}}}} {{{{endpoint}}}}",
                    ref,
                    **({"exemplar": True} if q == 99 else {}),
                )
                for q, ref in ((50, "A"), (95, "B"), (99, "C"))
            ],
            lines=(("red", s.alert_latency_seconds),),
            overrides=_trace_links(s),
        ),
        _timeseries(
            f"Requests slower than {le}s",
            "The share of each route's requests slower than the latency threshold "
            "(OBSERVE_ALERT_LATENCY_SECONDS), counted exactly from its bucket.",
            "percentunit",
            [
                _target(
                    f"1 - (\n  sum by (method, endpoint) "
                    f'(rate(http_request_duration_seconds_bucket{{{_F}, le="{le}"}}{_RATE}))\n'
                    f"  / (sum by (method, endpoint) "
                    f"(rate(http_request_duration_seconds_count{{{_F}}}{_RATE})) > 0)\n)",
                    "{{method}} {{endpoint}}",
                    "A",
                )
            ],
        ),
        _heatmap(s),
    ]
    in_flight_lines = (
        (("red", float(s.alert_in_flight_max)),) if s.alert_in_flight_max is not None else ()
    )
    saturation = [
        _timeseries(
            "Database pool in use",
            f"Connections in use over the pool's size; SaturationHigh fires above "
            f"{s.alert_saturation_ratio:.0%} for {s.alert_saturation_for}.",
            "percentunit",
            [
                _target(
                    f"sum by (instance, pool) (db_pool_connections_in_use{{{_F}}})\n"
                    f"/ sum by (instance, pool) (db_pool_connections_max{{{_F}}} > 0)",
                    "{{instance}} {{pool}}",
                    "A",
                )
            ],
            lines=(("red", s.alert_saturation_ratio),),
        ),
        _timeseries(
            "Queue depth",
            "Items waiting in the app's queues.",
            "short",
            [_target(f"sum by (queue) (app_queue_depth{{{_F}}})", "{{queue}}", "A")],
        ),
        _timeseries(
            "Requests in flight",
            "Requests being served at once, per instance.",
            "short",
            [
                _target(
                    f"sum by (instance) (http_requests_in_progress{{{_F}}})", "{{instance}}", "A"
                )
            ],
            lines=in_flight_lines,
        ),
        _timeseries(
            "CPU",
            "CPU time per second of each process: 100% is one core.",
            "percentunit",
            [_target(f"rate(process_cpu_seconds_total{{{_F}}}{_RATE})", "{{instance}}", "A")],
        ),
        _timeseries(
            "Memory",
            "Resident memory of each process.",
            "bytes",
            [_target(f"process_resident_memory_bytes{{{_F}}}", "{{instance}}", "A")],
        ),
    ]
    rows = [
        ("Traffic", traffic),
        ("Errors", errors_panels),
        ("Latency", latency),
        ("Saturation", saturation),
    ]
    if s.http_clients:
        rows.append(("Dependencies", _dependencies(s)))
    return rows


def _dependencies(settings: Settings) -> list[dict[str, Any]]:
    """The outgoing calls, per peer: rate by status, share failed, p99 with exemplars."""
    s = settings
    calls = f"http_client_requests_total{{{_F}}}"
    failed = f'http_client_requests_total{{{_F}, status!~"[1-4].."}}'
    buckets = f"rate(http_client_request_duration_seconds_bucket{{{_F}}}{_RATE})"
    fails = (
        f"DependencyDegraded fires above {s.alert_dependency_error_ratio:.1%} "
        f"for {s.alert_dependency_for}"
    )
    slow = (
        f"DependencyDegraded fires above {_num(s.alert_dependency_latency_seconds)}s "
        f"for {s.alert_dependency_for}"
    )
    return [
        _timeseries(
            "Calls per second by peer",
            "Outgoing HTTP calls, by peer (host:port) and status, or exception class when "
            "no response came.",
            "reqps",
            [_target(f"sum by (peer, status) (rate({calls}{_RATE}))", "{{peer}} {{status}}", "A")],
        ),
        _timeseries(
            "Failed calls by peer",
            f"The share of each peer's calls that got a 5xx or no response; {fails}.",
            "percentunit",
            [
                _target(
                    f"(sum by (peer) (rate({failed}{_RATE})) or 0 * sum by (peer) "
                    f"(rate({calls}{_RATE})))\n/ (sum by (peer) (rate({calls}{_RATE})) > 0)",
                    "{{peer}}",
                    "A",
                )
            ],
            lines=(("red", s.alert_dependency_error_ratio),),
        ),
        _timeseries(
            "Call latency p99 by peer",
            f"The 99th percentile duration of each peer's calls; {slow}. Exemplars link to "
            "the calls' traces.",
            "s",
            [
                _target(
                    f"histogram_quantile(0.99, sum by (le, peer) ({buckets}))",
                    "p99 {{peer}}",
                    "A",
                    exemplar=True,
                )
            ],
            lines=(("red", s.alert_dependency_latency_seconds),),
            overrides=_trace_links(s),
        ),
    ]


def _layout(rows: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Row headers and their panels on Grafana's grid, three panels (or fewer) across."""
    panels: list[dict[str, Any]] = []
    y = 0
    for title, row in rows:
        panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"x": 0, "y": y, "w": _WIDTH, "h": 1},
            }
        )
        y += 1
        for start in range(0, len(row), 3):
            line = row[start : start + 3]
            width = _WIDTH // len(line)
            for index, panel in enumerate(line):
                panel["gridPos"] = {"x": index * width, "y": y, "w": width, "h": 8}
                panels.append(panel)
            y += 8
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return panels


def _variable(name: str, label: str, query: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": _DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,  # when the time range changes
        "sort": 1,
        "current": {},
        "options": [],
        "hide": 0,
        **extra,
    }


def dashboard(settings: Settings) -> dict[str, Any]:
    """The app's dashboard: rows for traffic, errors, latency and saturation, and the
    dependencies its outgoing calls go to, with the alert thresholds drawn as lines. Import
    it into Grafana, or provision it as a file."""
    service = settings.service_name
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", service).strip("-")[:26] or "app"
    return {
        "id": None,
        "uid": f"flask-observe-{slug}",
        "title": f"{service} (flask-observe)",
        "description": f"The golden signals of {service}, generated by flask-observe.",
        "tags": ["flask-observe", service],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "options": [],
                    "refresh": 1,
                    "regex": "",
                    "hide": 0,
                },
                # flask_observe_info carries the service name: it finds the app's jobs.
                _variable(
                    "job",
                    "Job",
                    f"label_values(flask_observe_info{{service={json.dumps(service)}}}, job)",
                ),
                _variable(
                    "instance",
                    "Instance",
                    'label_values(flask_observe_info{job=~"$job"}, instance)',
                    multi=True,
                    includeAll=True,
                    allValue=".+",
                ),
            ]
        },
        "panels": _layout(_rows(settings)),
    }


def panel_queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of *board*'s panels."""
    return [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]


def dashboard_json(settings: Settings) -> str:
    """:func:`dashboard` as JSON, for Grafana's import or its file provisioning."""
    return json.dumps(dashboard(settings), indent=2) + "\n"
