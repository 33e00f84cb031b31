"""``flask observe ...``: rules, dashboard, alertmanager and check, through the app's CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_observe.cli import risky_settings
from flask_observe.config import KNOWN_KEYS, Settings
from flask_observe.rules import alertmanager_yaml, rules_yaml

from .conftest import AppFactory

ROOT = Path(__file__).resolve().parent.parent


def _settings(app: Flask) -> Settings:
    settings: Settings = app.extensions["observe"].settings
    return settings


def test_rules_prints_the_rule_file(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["observe", "rules"])
    assert result.exit_code == 0, result.output
    assert result.output == rules_yaml(_settings(app))
    (group,) = yaml.safe_load(result.output)["groups"]
    assert group["name"] == "flask_observe:shop"


def test_rules_follow_the_app_config(app_factory: AppFactory) -> None:
    app = app_factory(OBSERVE_ALERT_ERROR_RATIO=0.01, OBSERVE_ALERT_ERROR_FOR="5s")
    output = app.test_cli_runner().invoke(args=["observe", "rules"]).output
    (alert,) = [
        r for r in yaml.safe_load(output)["groups"][0]["rules"] if r.get("alert") == "HighErrorRate"
    ]
    assert alert["expr"].endswith("> 0.01")
    assert alert["for"] == "5s"


def test_dashboard_prints_json(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["observe", "dashboard"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["title"] == "shop (flask-observe)"


def test_alertmanager_prints_the_routing_example(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["observe", "alertmanager"])
    assert result.exit_code == 0, result.output
    assert result.output == alertmanager_yaml(_settings(app))
    assert yaml.safe_load(result.output)["route"]["receiver"] == "ticket"


def test_check_prints_every_key_and_hides_the_token(app_factory: AppFactory) -> None:
    app = app_factory(OBSERVE_METRICS_BEARER_TOKEN="s3cr3t-token")
    result = app.test_cli_runner().invoke(args=["observe", "check"])
    assert result.exit_code == 0, result.output
    shown = {line.split(" = ")[0].strip() for line in result.output.splitlines() if " = " in line}
    assert shown >= KNOWN_KEYS
    assert "OBSERVE_METRICS_BEARER_TOKEN = '[REDACTED]'" in result.output
    assert "s3cr3t" not in result.output
    assert "OBSERVE_LOG_LEVEL = 'INFO'" in result.output
    assert "OBSERVE_RULES_SELECTOR = 'job=\"shop\"'" in result.output
    assert result.output.rstrip().endswith("No risky settings found.")


@pytest.mark.parametrize(
    ("config", "warning"),
    [
        ({"OBSERVE_BUCKETS": [0.5, 1.0, 5.0]}, "is not a bound of the latency buckets"),
        ({"OBSERVE_METRICS_ENABLED": False}, "The metrics endpoint is off"),
        ({"OBSERVE_METRICS_PATH": None}, "The metrics endpoint is off"),
        ({"OBSERVE_TRACING_SAMPLE_RATIO": 0}, "keeps no trace started here"),
        (
            {
                "OBSERVE_TRACING_INSTRUMENTATION": "off",
                "OBSERVE_TRACE_URL_TEMPLATE": "https://tempo.example.com/trace/{trace_id}",
            },
            "exemplar links will have nothing to open",
        ),
        ({"OBSERVE_LOG_REDACT": []}, "OBSERVE_LOG_REDACT is empty"),
        ({"OBSERVE_LOG_QUERY_STRING": True}, "query strings reach the access log"),
        ({"OBSERVE_METRICS_ALLOW_NETWORKS": []}, "refuses every scraper"),
        ({"OBSERVE_ALERT_ERROR_FOR": "5s"}, "OBSERVE_ALERT_ERROR_FOR = '5s' is under a minute"),
        ({"OBSERVE_ALERT_TRAFFIC_DROP_OFFSET": "5m"}, "nearly overlap"),
        (
            {"OBSERVE_SLO_AVAILABILITY": 0.9},
            "pages at an error ratio the 90% objective allows (10%)",
        ),
        ({"OBSERVE_SLO_AVAILABILITY": 0.99999}, "a few minutes a month"),
    ],
)
def test_check_warns_about_risky_settings(
    app_factory: AppFactory, config: dict[str, Any], warning: str
) -> None:
    app = app_factory(**config)
    assert any(warning in w for w in risky_settings(_settings(app)))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["observe", "check"])
    assert result.exit_code == 0, result.output
    assert warning in result.output
    strict = runner.invoke(args=["observe", "check", "--strict"])
    assert strict.exit_code == 1


def test_the_defaults_are_not_risky(app: Flask, runner: FlaskCliRunner) -> None:
    assert risky_settings(_settings(app)) == []
    assert runner.invoke(args=["observe", "check", "--strict"]).exit_code == 0


def test_the_readme_commands_work_on_the_example_app(tmp_path: Path) -> None:
    """``flask --app example_app observe ...`` from a checkout, as the README says."""
    env = {
        **os.environ,
        "EXAMPLE_DATABASE_URL": f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        "OTEL_TRACES_EXPORTER": "none",
    }
    outputs = {}
    for command in ("rules", "dashboard", "alertmanager"):
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "example_app", "observe", command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        outputs[command] = result.stdout
    assert 'job="shop"' in yaml.safe_load(outputs["rules"])["groups"][0]["rules"][0]["expr"]
    assert json.loads(outputs["dashboard"])["uid"] == "flask-observe-shop"
    assert yaml.safe_load(outputs["alertmanager"])["receivers"]
