"""``flask observe ...``: the generated rules, dashboard and Alertmanager example, and a
check of the effective configuration.

The commands read the settings of the app Flask's CLI loaded, so the files always match
its configuration::

    flask --app example_app observe rules > rules/shop.rules.yml
    flask --app example_app observe dashboard > grafana/shop.json
    flask --app example_app observe alertmanager > alertmanager.yml
    flask --app example_app observe check
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from .config import Settings, duration_seconds
from .dashboard import dashboard_json
from .paths import route_collisions
from .rules import _percent, alertmanager_yaml, rules_yaml, slow_bound

__all__ = ["observe_cli", "risky_settings"]

#: The ``observe`` command group, added to each app's ``flask`` command by ``init_app``.
observe_cli = AppGroup("observe", help="Generated alerting rules, dashboard and config check.")

#: Settings whose values are secrets: ``check`` shows that they are set, not what they are.
_SECRETS = frozenset({"metrics_bearer_token", "health_token", "console_token"})


def _settings() -> Settings:
    settings: Settings = current_app.extensions["observe"].settings
    return settings


@observe_cli.command("rules")
def rules_command() -> None:
    """Print the Prometheus recording and alerting rules (YAML)."""
    click.echo(rules_yaml(_settings()), nl=False)


@observe_cli.command("dashboard")
def dashboard_command() -> None:
    """Print the Grafana dashboard (JSON)."""
    click.echo(dashboard_json(_settings()), nl=False)


@observe_cli.command("alertmanager")
def alertmanager_command() -> None:
    """Print an Alertmanager routing example (YAML): page, notify, warn, ticket."""
    click.echo(alertmanager_yaml(_settings()), nl=False)


@observe_cli.command("check")
@click.option("--strict", is_flag=True, help="Exit with status 1 if there is any warning.")
def check_command(strict: bool) -> None:
    """Print the effective configuration, and warn about risky settings."""
    settings = _settings()
    click.echo(f"Effective configuration of the app {current_app.name!r}:")
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        shown = "'[REDACTED]'" if field.name in _SECRETS and value else _show(field.name, value)
        click.echo(f"  OBSERVE_{field.name.upper()} = {shown}")
    warnings = risky_settings(settings) + [
        f"{key}: the app's own view {endpoint!r} answers at {path} too; Flask gives each "
        "method to only one of them."
        for key, path, endpoint in route_collisions(current_app, settings)
    ]
    if not warnings:
        click.echo("No risky settings found.")
        return
    click.echo(f"{len(warnings)} warning{'s' if len(warnings) > 1 else ''}:")
    for warning in warnings:
        click.echo(f"  - {warning}")
    if strict:
        raise click.exceptions.Exit(1)


def _show(name: str, value: Any) -> str:
    if name == "log_level":
        return repr(logging.getLevelName(value))
    if isinstance(value, tuple):
        return repr([v if isinstance(v, (str, int, float)) else str(v) for v in value])
    return repr(value)


def risky_settings(settings: Settings) -> list[str]:
    """Warnings about settings that work, but probably not as intended."""
    s = settings
    warnings = []
    if s.alert_latency_seconds not in s.buckets:
        warnings.append(
            f"OBSERVE_ALERT_LATENCY_SECONDS = {s.alert_latency_seconds} is not a bound of "
            f"the latency buckets {list(s.buckets)}: the p99 alert interpolates, and the "
            f"share of slow requests counts from {slow_bound(s)}. Add it to OBSERVE_BUCKETS."
        )
    if not s.metrics_enabled or s.metrics_path is None:
        warnings.append(
            "The metrics endpoint is off (OBSERVE_METRICS_ENABLED or OBSERVE_METRICS_PATH): "
            "unless the registry is served another way, the rules and the dashboard see "
            "no data."
        )
    if s.tracing_sample_ratio == 0:
        warnings.append(
            "OBSERVE_TRACING_SAMPLE_RATIO = 0 keeps no trace started here: no exemplars and "
            "no trace IDs in the logs, so an alert leads to no trace."
        )
    if s.trace_url_template is not None and (
        s.tracing_instrumentation == "off" or s.tracing_sample_ratio == 0
    ):
        warnings.append(
            "OBSERVE_TRACE_URL_TEMPLATE is set, but no request is traced: the dashboard's "
            "exemplar links will have nothing to open."
        )
    if not s.log_redact:
        warnings.append(
            "OBSERVE_LOG_REDACT is empty: passwords, tokens and cookies in log fields are "
            "written as they are."
        )
    if s.log_query_string:
        warnings.append(
            "OBSERVE_LOG_QUERY_STRING = True: query strings reach the access log; only the "
            "parameters whose names match OBSERVE_LOG_REDACT are redacted."
        )
    if s.metrics_allow_networks == ():
        warnings.append("OBSERVE_METRICS_ALLOW_NETWORKS = [] refuses every scraper.")
    for key in ("alert_error_for", "alert_latency_for", "alert_saturation_for"):
        value = getattr(s, key)
        if duration_seconds(value) < 60:
            warnings.append(
                f"OBSERVE_{key.upper()} = {value!r} is under a minute: the alert fires on a "
                "blip (shorter than two scrapes at the usual 15-30s). Fine in a test."
            )
    if duration_seconds(s.alert_traffic_drop_offset) < 600:
        warnings.append(
            f"OBSERVE_ALERT_TRAFFIC_DROP_OFFSET = {s.alert_traffic_drop_offset!r} compares "
            "5-minute windows that nearly overlap: a drop shows for less than the offset."
        )
    if s.slo_availability is not None:
        budget = 1 - s.slo_availability
        if s.alert_error_ratio <= budget:
            warnings.append(
                f"OBSERVE_ALERT_ERROR_RATIO = {s.alert_error_ratio} pages at an error ratio "
                f"the {_percent(s.slo_availability)} objective allows ({_percent(budget)}): "
                "raise it, or rely on the burn-rate alerts."
            )
        if budget < 0.0005:
            warnings.append(
                f"OBSERVE_SLO_AVAILABILITY = {s.slo_availability}: an error budget of "
                f"{_percent(budget)} is a few minutes a month; at low traffic a handful of errors "
                "pages."
            )
    return warnings
