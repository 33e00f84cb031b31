"""Prometheus recording and alerting rules, and an Alertmanager routing example, as data.

Everything here is built from an app's :class:`~flask_observe.config.Settings`, so the
thresholds live in one place (the ``OBSERVE_ALERT_*`` keys) and the rules use exactly the
metric names the app exports. Prometheus names a service by its scrape ``job``, since the
HTTP metrics carry no ``service`` label: every rule selects the app's series with
``OBSERVE_RULES_SELECTOR`` (``job="<service name>"`` by default) and aggregates by ``job``,
and the endpoint level by ``job``, ``method`` and ``endpoint``.

Recording rules follow Prometheus' ``level:metric:operations`` convention. Every ratio
divides by a rate filtered with ``> 0``, so that no traffic gives no result rather than
``NaN``, and an error count that has no series yet (no 5xx so far) counts as zero.
"""

from __future__ import annotations

from typing import Any, Optional

from prometheus_client.utils import floatToGoString

from . import _yaml
from ._version import __version__
from .config import Settings

__all__ = [
    "ALERTS",
    "ENDPOINT",
    "PEER",
    "SERVICE",
    "SLO_WINDOWS",
    "alerting_rules",
    "alertmanager_config",
    "alertmanager_yaml",
    "recording_rules",
    "rule_groups",
    "rules_yaml",
    "slow_bound",
]

Rule = dict[str, Any]

#: The levels of the recording rules, and the labels each keeps: the service, its routes,
#: and the peers it calls.
SERVICE = ("service", "job")
ENDPOINT = ("service_endpoint", "job, method, endpoint")
PEER = ("service_peer", "job, peer")

#: The windows the SLO rules need: the pairs of the SRE workbook's multiwindow,
#: multi-burn-rate alerts for a 30-day objective, with Sloth's 1d/2h ticket pair.
SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
#: (long window, short window, burn rate), per severity; pairs are OR-ed.
_BURN_PAIRS = {
    "page": (("1h", "5m", 14.4), ("6h", "30m", 6.0)),
    "ticket": (("1d", "2h", 3.0), ("3d", "6h", 1.0)),
}

#: Every alert the rules may hold, with the severity it is routed by.
ALERTS = {
    "HighErrorRate": "page",
    "HighLatencyP99": "notify",
    "TrafficDrop": "notify",
    "SaturationHigh": "warn",
    "ErrorBudgetBurnFast": "page",
    "ErrorBudgetBurnSlow": "ticket",
    "DependencyDegraded": "notify",
}


#: The matcher of server errors.
_5XX = 'status=~"5.."'
#: The matcher of failed outgoing calls: a 5xx, or no response at all (the status is then
#: the exception's class). A 4xx is the caller's mistake, not the peer's trouble.
_FAILED_CALL = 'status!~"[1-4].."'


def _num(value: float) -> str:
    """A number as PromQL and people read it: ``0.05``, ``2``, ``14.4``."""
    return f"{value:.10g}"


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.4g}%"


def _seconds(value: float) -> str:
    return f"{value:.4g}s"


def _select(settings: Settings, *matchers: str) -> str:
    return "{" + ", ".join((settings.rules_selector, *matchers)) + "}"


def _rate(settings: Settings, metric: str, window: str, by: str, *matchers: str) -> str:
    return f"sum by ({by}) (rate({metric}{_select(settings, *matchers)}[{window}]))"


def _errors_over_requests(errors: str, requests: str) -> str:
    """*errors* / *requests*: zero errors when *errors* has no series, nothing without
    requests."""
    return f"(\n  {errors}\n  or 0 * {requests}\n)\n/ ({requests} > 0)"


def slow_bound(settings: Settings) -> float:
    """The bucket bound the "slower than the threshold" ratio counts from: the latency
    threshold itself when it is a bound (the default buckets make it one), else the next
    bound above it, else the highest bound."""
    threshold = settings.alert_latency_seconds
    above = [b for b in settings.buckets if b >= threshold]
    return above[0] if above else settings.buckets[-1]


def recording_rules(settings: Settings) -> list[Rule]:
    """The golden signals per service and per endpoint, over 5 minutes."""
    rules: list[Rule] = []
    le = floatToGoString(slow_bound(settings))  # type: ignore[no-untyped-call]
    for level, by in (SERVICE, ENDPOINT):
        requests = f"{level}:http_requests:rate5m"
        errors = f"{level}:http_request_errors:rate5m"
        buckets = f"{level}:http_request_duration_seconds_bucket:rate5m"
        errors_5xx = _rate(settings, "http_requests_total", "5m", by, _5XX)
        rules += [
            {"record": requests, "expr": _rate(settings, "http_requests_total", "5m", by)},
            {"record": errors, "expr": f"{errors_5xx}\nor 0 * {requests}"},
            {
                "record": f"{level}:http_request_errors_per_requests:ratio_rate5m",
                "expr": f"{errors}\n/ ({requests} > 0)",
            },
            {
                "record": buckets,
                "expr": _rate(settings, "http_request_duration_seconds_bucket", "5m", f"{by}, le"),
            },
        ]
        for quantile in (50, 95, 99):
            rules.append(
                {
                    "record": f"{level}:http_request_duration_seconds:p{quantile}_5m",
                    "expr": f"histogram_quantile({quantile / 100}, {buckets})"
                    f"\nand on ({by}) ({requests} > 0)",
                }
            )
        fast = _rate(settings, "http_request_duration_seconds_bucket", "5m", by, f'le="{le}"')
        rules.append(
            {
                "record": f"{level}:http_request_duration_seconds_over_threshold:ratio_rate5m",
                "expr": f"1 - (\n  {fast}\n  / ({requests} > 0)\n)",
            }
        )
    return rules


def _peer_recording_rules(settings: Settings) -> list[Rule]:
    """The outgoing calls per peer, over 5 minutes: rate, failures and p99."""
    level, by = PEER
    calls = f"{level}:http_client_requests:rate5m"
    failed = f"{level}:http_client_request_errors:rate5m"
    buckets = f"{level}:http_client_request_duration_seconds_bucket:rate5m"
    failed_calls = _rate(settings, "http_client_requests_total", "5m", by, _FAILED_CALL)
    return [
        {"record": calls, "expr": _rate(settings, "http_client_requests_total", "5m", by)},
        {"record": failed, "expr": f"{failed_calls}\nor 0 * {calls}"},
        {
            "record": f"{level}:http_client_request_errors_per_requests:ratio_rate5m",
            "expr": f"{failed}\n/ ({calls} > 0)",
        },
        {
            "record": buckets,
            "expr": _rate(
                settings, "http_client_request_duration_seconds_bucket", "5m", f"{by}, le"
            ),
        },
        {
            "record": f"{level}:http_client_request_duration_seconds:p99_5m",
            "expr": f"histogram_quantile(0.99, {buckets})\nand on ({by}) ({calls} > 0)",
        },
    ]


def _dependency_alerts(settings: Settings) -> list[Rule]:
    """``DependencyDegraded``: the calls to one peer fail, or are slow, for a while. One
    rule per signal, told apart by the ``signal`` label."""
    s = settings
    job, peer = "{{ $labels.job }}", "{{ $labels.peer }}"
    for_ = s.alert_dependency_for
    return [
        _alert(
            s,
            "DependencyDegraded",
            f"service_peer:http_client_request_errors_per_requests:ratio_rate5m "
            f"> {_num(s.alert_dependency_error_ratio)}",
            for_,
            f"{job}: {{{{ $value | humanizePercentage }}}} of the calls to {peer} fail",
            f"{{{{ $value | humanizePercentage }}}} of the calls {job} made to {peer} over the "
            f"last 5 minutes got a 5xx or no response, above the threshold of "
            f"{_percent(s.alert_dependency_error_ratio)} "
            f"(OBSERVE_ALERT_DEPENDENCY_ERROR_RATIO) for {for_} (OBSERVE_ALERT_DEPENDENCY_FOR).",
            signal="errors",
        ),
        _alert(
            s,
            "DependencyDegraded",
            f"service_peer:http_client_request_duration_seconds:p99_5m "
            f"> {_num(s.alert_dependency_latency_seconds)}",
            for_,
            f"{job}: calls to {peer} take {{{{ $value | humanizeDuration }}}} at p99",
            f"The 99th percentile duration of the calls {job} made to {peer} over the last 5 "
            f"minutes is {{{{ $value | humanizeDuration }}}}, above the threshold of "
            f"{_seconds(s.alert_dependency_latency_seconds)} "
            f"(OBSERVE_ALERT_DEPENDENCY_LATENCY_SECONDS) for {for_} "
            "(OBSERVE_ALERT_DEPENDENCY_FOR).",
            signal="latency",
        ),
    ]


def _slo_recording_rules(settings: Settings) -> list[Rule]:
    by = SERVICE[1]
    rules = []
    for window in SLO_WINDOWS[1:]:  # 5m is among the recording rules already
        requests = _rate(settings, "http_requests_total", window, by)
        errors = _rate(settings, "http_requests_total", window, by, _5XX)
        rules.append(
            {
                "record": f"service:http_request_errors_per_requests:ratio_rate{window}",
                "expr": _errors_over_requests(errors, requests),
            }
        )
    return rules


def _alert(
    settings: Settings,
    name: str,
    expr: str,
    for_: Optional[str],
    summary: str,
    description: str,
    **labels: str,
) -> Rule:
    rule: Rule = {"alert": name, "expr": expr}
    if for_ is not None:
        rule["for"] = for_
    rule["labels"] = {"severity": ALERTS[name], **labels}
    annotations = {"summary": summary, "description": description}
    if settings.runbook_url is not None:
        annotations["runbook_url"] = settings.runbook_url.replace("{alertname}", name)
    rule["annotations"] = annotations
    return rule


def alerting_rules(settings: Settings) -> list[Rule]:
    """The four golden-signal alerts, thresholds from the ``OBSERVE_ALERT_*`` keys."""
    s = settings
    job = "{{ $labels.job }}"
    route = "{{ $labels.method }} {{ $labels.endpoint }}"
    per_second = '{{ $value | printf "%.2f" }}'
    requests = "service:http_requests:rate5m"
    before = (
        f"sum by (job) (rate(http_requests_total{_select(s)}[5m] "
        f"offset {s.alert_traffic_drop_offset}))"
    )
    rules = [
        _alert(
            s,
            "HighErrorRate",
            f"service:http_request_errors_per_requests:ratio_rate5m > {_num(s.alert_error_ratio)}",
            s.alert_error_for,
            f"{job}: {{{{ $value | humanizePercentage }}}} of requests fail with a 5xx",
            f"{{{{ $value | humanizePercentage }}}} of the requests to {job} over the last 5 "
            f"minutes ended with a 5xx status, above the threshold of "
            f"{_percent(s.alert_error_ratio)} (OBSERVE_ALERT_ERROR_RATIO) for "
            f"{s.alert_error_for} (OBSERVE_ALERT_ERROR_FOR).",
        ),
        _alert(
            s,
            "HighLatencyP99",
            f"service_endpoint:http_request_duration_seconds:p99_5m "
            f"> {_num(s.alert_latency_seconds)}",
            s.alert_latency_for,
            f"{job}: {route} p99 latency is {{{{ $value | humanizeDuration }}}}",
            f"The 99th percentile latency of {route} in {job} over the last 5 minutes is "
            f"{{{{ $value | humanizeDuration }}}}, above the threshold of "
            f"{_seconds(s.alert_latency_seconds)} (OBSERVE_ALERT_LATENCY_SECONDS) for "
            f"{s.alert_latency_for} (OBSERVE_ALERT_LATENCY_FOR).",
        ),
        _alert(
            s,
            "TrafficDrop",
            # Below the ratio of the earlier rate; or no series now where there was traffic.
            # Traffic that was zero already is not a drop: 0 < ratio * 0 is false.
            f"{requests}\n  < {_num(s.alert_traffic_drop_ratio)} * {before}\n"
            f"or\n0 * ({before} > 0)\n  unless on (job) {requests}",
            s.alert_traffic_drop_for,
            f"{job}: traffic dropped to {per_second} requests/s",
            f"{job} serves {per_second} requests per second over the last 5 "
            f"minutes, less than {_percent(s.alert_traffic_drop_ratio)} "
            f"(OBSERVE_ALERT_TRAFFIC_DROP_RATIO) of its rate "
            f"{s.alert_traffic_drop_offset} earlier (OBSERVE_ALERT_TRAFFIC_DROP_OFFSET), "
            f"for {s.alert_traffic_drop_for} (OBSERVE_ALERT_TRAFFIC_DROP_FOR).",
        ),
        _alert(
            s,
            "SaturationHigh",
            f"sum by (job, instance, pool) (db_pool_connections_in_use{_select(s)})\n"
            f"/ sum by (job, instance, pool) (db_pool_connections_max{_select(s)} > 0)\n"
            f"> {_num(s.alert_saturation_ratio)}",
            s.alert_saturation_for,
            f"{job}: database pool {{{{ $labels.pool }}}} is "
            f"{{{{ $value | humanizePercentage }}}} in use",
            f"{{{{ $value | humanizePercentage }}}} of the connections of the database pool "
            f"{{{{ $labels.pool }}}} on {{{{ $labels.instance }}}} ({job}) are in use, above "
            f"{_percent(s.alert_saturation_ratio)} (OBSERVE_ALERT_SATURATION_RATIO) for "
            f"{s.alert_saturation_for} (OBSERVE_ALERT_SATURATION_FOR): requests will soon "
            "wait for a connection.",
            resource="db_pool",
        ),
    ]
    if s.alert_in_flight_max is not None:
        rules.append(
            _alert(
                s,
                "SaturationHigh",
                f"sum by (job, instance) (http_requests_in_progress{_select(s)})\n"
                f"> {s.alert_in_flight_max}",
                s.alert_saturation_for,
                f"{job}: {{{{ $value }}}} requests in flight on {{{{ $labels.instance }}}}",
                f"{{{{ $labels.instance }}}} ({job}) is serving {{{{ $value }}}} requests at "
                f"once, more than {s.alert_in_flight_max} (OBSERVE_ALERT_IN_FLIGHT_MAX) for "
                f"{s.alert_saturation_for} (OBSERVE_ALERT_SATURATION_FOR): new requests will "
                "soon queue.",
                resource="in_flight",
            )
        )
    return rules


def _burn_rate_alerts(settings: Settings, slo: float) -> list[Rule]:
    budget = _num(1 - slo)
    job = "{{ $labels.job }}"
    rules = []
    for name, severity in (("ErrorBudgetBurnFast", "page"), ("ErrorBudgetBurnSlow", "ticket")):
        pairs = _BURN_PAIRS[severity]
        expr = "\nor\n".join(
            f"(\n  service:http_request_errors_per_requests:ratio_rate{long} / {budget} "
            f"> {_num(rate)}\n  and\n"
            f"  service:http_request_errors_per_requests:ratio_rate{short} / {budget} "
            f"> {_num(rate)}\n)"
            for long, short, rate in pairs
        )
        spelled = " or ".join(
            f"{_num(rate)}x over both {long} and {short}" for long, short, rate in pairs
        )
        rules.append(
            _alert(
                settings,
                name,
                expr,
                None,  # the short window stops the alert soon after the errors stop
                f"{job}: the error budget burns {{{{ $value | humanize }}}}x too fast",
                f"{job} spends the error budget of its {_percent(slo)} availability objective "
                f"(OBSERVE_SLO_AVAILABILITY, 30 days) {{{{ $value | humanize }}}} times as "
                f"fast as the objective allows: faster than {spelled}.",
            )
        )
    return rules


def rule_groups(settings: Settings) -> dict[str, Any]:
    """The content of a Prometheus rule file for the app: ``{"groups": [...]}``.

    One group, recordings first: Prometheus evaluates the rules of a group in order, so
    each alert reads the recordings of the same evaluation. Across groups it would read
    the previous one's, and every ``for`` would start an interval late, at random.
    """
    rules = recording_rules(settings)
    alerts = alerting_rules(settings)
    if settings.slo_availability is not None:
        rules += _slo_recording_rules(settings)
        alerts += _burn_rate_alerts(settings, settings.slo_availability)
    if settings.http_clients:  # outgoing calls observed: the peers they go to
        rules += _peer_recording_rules(settings)
        alerts += _dependency_alerts(settings)
    return {"groups": [{"name": f"flask_observe:{settings.service_name}", "rules": rules + alerts}]}


def _header(settings: Settings, what: str, command: str) -> list[str]:
    return [
        f"{what} for the service {settings.service_name!r}, generated by flask-observe "
        f"{__version__}",
        f"from the app's OBSERVE_* configuration: change that and run `{command}` again.",
    ]


def rules_yaml(settings: Settings) -> str:
    """:func:`rule_groups` as a rule file, for ``rule_files`` in ``prometheus.yml``."""
    header = [
        *_header(settings, "Prometheus rules", "flask observe rules"),
        f"Series selected by {{{settings.rules_selector}}} (OBSERVE_RULES_SELECTOR).",
    ]
    return _yaml.dump(rule_groups(settings), header=header)


def alertmanager_config(settings: Settings) -> dict[str, Any]:
    """An Alertmanager configuration routing the alerts by ``severity``: ``page`` to an
    on-call pager, ``notify`` and ``warn`` to chat channels, ``ticket`` to a ticket queue.
    The receivers' addresses are placeholders to replace."""
    service = settings.service_name

    def route(severity: str, **extra: Any) -> dict[str, Any]:
        return {"matchers": [f'severity="{severity}"'], "receiver": severity, **extra}

    def slack(channel: str) -> dict[str, Any]:
        return {
            "slack_configs": [
                {
                    "api_url": "https://hooks.slack.com/services/REPLACE/WITH/YOURS",
                    "channel": channel,
                    "send_resolved": True,
                    "title": "{{ .CommonLabels.alertname }} ({{ .Status | toUpper }})",
                    "text": "{{ range .Alerts }}{{ .Annotations.description }}\n{{ end }}",
                }
            ]
        }

    return {
        "route": {
            "receiver": "ticket",
            "group_by": ["alertname", "job"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                route("page", repeat_interval="1h"),
                route("notify"),
                route("warn", repeat_interval="12h"),
                route("ticket", repeat_interval="24h"),
            ],
        },
        "inhibit_rules": [
            {
                # A page already says the service is in trouble: hold its lesser alerts.
                "source_matchers": ['severity="page"'],
                "target_matchers": ['severity=~"notify|warn"'],
                "equal": ["job"],
            }
        ],
        "receivers": [
            {
                "name": "page",
                "pagerduty_configs": [
                    {"routing_key": "REPLACE_WITH_YOUR_PAGERDUTY_INTEGRATION_KEY"}
                ],
            },
            {"name": "notify", **slack(f"#{service}-alerts")},
            {"name": "warn", **slack(f"#{service}-warnings")},
            {
                "name": "ticket",
                "webhook_configs": [{"url": "https://tickets.example.com/alertmanager"}],
            },
        ],
    }


def alertmanager_yaml(settings: Settings) -> str:
    """:func:`alertmanager_config` as an ``alertmanager.yml``."""
    header = [
        *_header(settings, "An Alertmanager routing example", "flask observe alertmanager"),
        "Replace the receivers' placeholder addresses and keys before use.",
    ]
    return _yaml.dump(alertmanager_config(settings), header=header)
