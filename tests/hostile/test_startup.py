"""Settings that cannot work are refused when the app starts, naming the key; those only the
finished app shows (a route added after ``Observe``) are listed by ``flask observe check``,
which refuses the others as the server does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_observe import ConfigError, Observe


def _observe(app: Flask, **config: Any) -> None:
    app.config.update(config)
    Observe(app, registry=CollectorRegistry())


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"OBSERVE_METRICS_PATH": "/healthz/ready"}, "OBSERVE_METRICS_PATH"),
        ({"OBSERVE_METRICS_PATH": "/healthz"}, "OBSERVE_METRICS_PATH"),
        (
            {"OBSERVE_METRICS_PATH": "/status/live", "OBSERVE_HEALTH_PATH": "/status"},
            "OBSERVE_METRICS_PATH",
        ),
        ({"OBSERVE_METRICS_PATH": "/metrics/<int:shard>"}, "OBSERVE_METRICS_PATH"),
        ({"OBSERVE_HEALTH_PATH": "/health/<name>"}, "OBSERVE_HEALTH_PATH"),
        ({"OBSERVE_METRICS_PATH": "/metrics?format=text"}, "OBSERVE_METRICS_PATH"),
        ({"OBSERVE_METRICS_PATH": "/my metrics"}, "OBSERVE_METRICS_PATH"),
        ({"OBSERVE_METRICS_BEARER_TOKEN": "s3cret\n"}, "OBSERVE_METRICS_BEARER_TOKEN"),
        ({"OBSERVE_HEALTH_TOKEN": " s3cret"}, "OBSERVE_HEALTH_TOKEN"),
        ({"OBSERVE_HEALTH_TOKEN": ""}, "OBSERVE_HEALTH_TOKEN"),
    ],
)
def test_settings_that_cannot_work_are_refused_naming_the_key(
    config: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        _observe(Flask("shop"), **config)
    assert refused.value.key == key
    assert key in str(refused.value)


def test_a_token_read_from_a_file_is_told_to_be_stripped() -> None:
    with pytest.raises(ConfigError, match="strip it"):
        _observe(Flask("shop"), OBSERVE_METRICS_BEARER_TOKEN="s3cret\n")


@pytest.mark.parametrize(
    ("path", "key"), [("/healthz", "OBSERVE_HEALTH_PATH"), ("/metrics", "OBSERVE_METRICS_PATH")]
)
def test_an_app_route_at_a_fixed_path_is_refused(path: str, key: str) -> None:
    app = Flask("shop")

    @app.route(path, methods=["GET", "POST"])
    def own() -> str:
        return "the app's own"

    with pytest.raises(ConfigError) as refused:
        _observe(app)
    assert refused.value.key == key
    assert "'own'" in str(refused.value)


def test_a_route_added_later_is_listed_by_the_check() -> None:
    app = Flask("shop")
    _observe(app)

    @app.post("/healthz/ready")
    def ready_hook() -> str:
        return "mine"

    result = app.test_cli_runner().invoke(args=["observe", "check", "--strict"])
    assert result.exit_code == 1
    assert "OBSERVE_HEALTH_PATH: the app's own view 'ready_hook' answers at /healthz/ready" in (
        result.output
    )


def test_the_check_shows_no_token() -> None:
    app = Flask("shop")
    _observe(
        app, OBSERVE_METRICS_BEARER_TOKEN="metrics-s3cret", OBSERVE_HEALTH_TOKEN="health-s3cret"
    )
    result = app.test_cli_runner().invoke(args=["observe", "check"])
    assert result.exit_code == 0
    assert "s3cret" not in result.output
    assert "OBSERVE_HEALTH_TOKEN = '[REDACTED]'" in result.output


@pytest.mark.parametrize(
    "header", ["Bearer  s3cret", "Bearer\ts3cret", "Bearer s3cre", "Bearer s3cret2", "s3cret"]
)
def test_a_token_is_compared_byte_for_byte(header: str) -> None:
    """The token is the rest of the header after ``Bearer`` and one space, exactly (HTTP
    itself trims the whitespace around a whole header value)."""
    app = Flask("shop")
    _observe(
        app,
        OBSERVE_METRICS_BEARER_TOKEN="s3cret",
        OBSERVE_HEALTH_TOKEN="s3cret",
        OBSERVE_LOG_JSON=False,
        OBSERVE_ACCESS_LOG=False,
    )
    client = app.test_client()
    headers = {"Authorization": header}
    assert client.get("/metrics", headers=headers).status_code == 401
    assert client.get("/healthz", headers=headers).status_code == 401
    # The exact header still works; the scheme is not case-sensitive.
    assert client.get("/metrics", headers={"Authorization": "bearer s3cret"}).status_code == 200


def test_the_check_of_an_app_whose_settings_are_refused_names_the_key(tmp_path: Path) -> None:
    """``flask observe check`` loads the app, so a refused setting stops it as it stops the
    server: non-zero, with the key and the reason on standard error."""
    (tmp_path / "refused_app.py").write_text(
        "from flask import Flask\n"
        "from flask_observe import Observe\n"
        "app = Flask(__name__)\n"
        "app.config['OBSERVE_METRICS_PATH'] = '/healthz/ready'\n"
        "Observe(app)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "refused_app", "observe", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "OBSERVE_METRICS_PATH = '/healthz/ready' is invalid" in result.stderr
    assert "Effective configuration" not in result.stdout
