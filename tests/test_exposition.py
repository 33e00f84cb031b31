"""/metrics: format negotiation, gzip, HEAD, access control, and promtool's verdict."""

from __future__ import annotations

import gzip
import random
import string
import subprocess
from typing import Any

import pytest
from flask import Flask
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from flask_observe.exposition import negotiate

from .conftest import AppFactory, require_binary, scrape

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# What real scrapers send.
PROMETHEUS_2_42 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_2_49_DEFAULT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;"
    "version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PROMETHEUS_NATIVE_HISTOGRAMS = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
    "encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,"
    "application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,"
    "*/*;q=0.1"
)
PROMETHEUS_TEXT_ONLY = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, TEXT),
        ("", TEXT),
        ("*/*", TEXT),
        (BROWSER, TEXT),
        (PROMETHEUS_2_42, OPENMETRICS),
        (PROMETHEUS_2_49_DEFAULT, OPENMETRICS),
        (PROMETHEUS_NATIVE_HISTOGRAMS, OPENMETRICS),
        (PROMETHEUS_3, OPENMETRICS),
        (PROMETHEUS_TEXT_ONLY, TEXT),
        ("application/openmetrics-text", OPENMETRICS),
        # q-values decide, not the order or the length of the media range.
        (
            "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.2,text/plain;q=0.9",
            TEXT,
        ),
        ("text/plain;q=0.3, application/openmetrics-text;q=0.6", OPENMETRICS),
        ("application/openmetrics-text;q=0, text/plain", TEXT),
        # A version we cannot produce is passed over.
        ("application/openmetrics-text;version=9.9.9,text/plain;version=0.0.4;q=0.1", TEXT),
        ("application/json", TEXT),
        ("application/openmetrics-text;q=bogus, text/plain;q=0.1", TEXT),
    ],
)
def test_negotiation(accept: Any, content_type: str) -> None:
    assert negotiate(accept)[1] == content_type


def test_openmetrics_output_parses_and_ends_with_eof(client: Any) -> None:
    client.get("/orders/1")
    response = client.get("/metrics", headers={"Accept": PROMETHEUS_2_42})
    assert response.headers["Content-Type"] == OPENMETRICS
    text = response.get_data(as_text=True)
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["http_requests"].type == "counter"


def test_gzip_when_accepted(client: Any) -> None:
    client.get("/orders/1")
    plain = client.get("/metrics").get_data()
    response = client.get("/metrics", headers={"Accept-Encoding": "gzip, deflate"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["Vary"]
    body = gzip.decompress(response.get_data())
    # Same families, same order: only the _created timestamps may differ.
    assert [line for line in body.decode().splitlines() if line.startswith("# TYPE")] == [
        line for line in plain.decode().splitlines() if line.startswith("# TYPE")
    ]


@pytest.mark.parametrize("header", ["gzip;q=0", "identity", "br"])
def test_no_gzip_when_refused_or_not_offered(client: Any, header: str) -> None:
    response = client.get("/metrics", headers={"Accept-Encoding": header})
    assert "Content-Encoding" not in response.headers
    assert response.get_data().startswith(b"# HELP")


def test_head_answers_without_a_body(client: Any) -> None:
    response = client.head("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == TEXT
    assert response.get_data() == b""


def test_bearer_token(app_factory: AppFactory) -> None:
    app = app_factory(OBSERVE_METRICS_BEARER_TOKEN="s3cret-token")
    client = app.test_client()
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert b"http_requests" not in missing.get_data()
    for bad in [
        "Bearer wrong",
        "Basic czNjcmV0LXRva2Vu",
        "Bearer",
        "s3cret-token",
        "Bearer s3cret-token-and-more",
        "Bearer s3cr\u00e9t",
    ]:
        assert client.get("/metrics", headers={"Authorization": bad}).status_code == 401, bad
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200
    assert b"http_requests_total" in ok.get_data() or b"# HELP" in ok.get_data()
    assert (
        client.get("/metrics", headers={"Authorization": "bearer s3cret-token"}).status_code == 200
    )


def test_non_ascii_token_compares_by_its_utf8_bytes(app_factory: AppFactory) -> None:
    app = app_factory(OBSERVE_METRICS_BEARER_TOKEN="jeton-\u00e9t\u00e9")
    client = app.test_client()
    # On the wire the header is UTF-8 bytes; WSGI hands them over as latin-1 text.
    wire = "Bearer " + "jeton-\u00e9t\u00e9".encode().decode("latin-1")
    assert client.get("/metrics", headers={"Authorization": wire}).status_code == 200


@pytest.mark.parametrize(
    ("address", "status"),
    [
        ("127.0.0.1", 200),
        ("10.1.2.3", 200),
        ("::1", 200),
        ("::ffff:10.9.9.9", 200),
        ("192.168.1.10", 403),
        ("2001:db8::1", 403),
        ("not-an-address", 403),
    ],
)
def test_allowed_networks(app_factory: AppFactory, address: str, status: int) -> None:
    app = app_factory(OBSERVE_METRICS_ALLOW_NETWORKS=["127.0.0.0/8", "10.0.0.0/8", "::1/128"])
    response = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == status


def test_network_check_comes_before_the_token(app_factory: AppFactory) -> None:
    app = app_factory(
        OBSERVE_METRICS_ALLOW_NETWORKS=["10.0.0.0/8"], OBSERVE_METRICS_BEARER_TOKEN="t"
    )
    client = app.test_client()
    outside = {"REMOTE_ADDR": "192.0.2.1"}
    inside = {"REMOTE_ADDR": "10.0.0.7"}
    auth = {"Authorization": "Bearer t"}
    assert client.get("/metrics", headers=auth, environ_base=outside).status_code == 403
    assert client.get("/metrics", environ_base=inside).status_code == 401
    assert client.get("/metrics", headers=auth, environ_base=inside).status_code == 200


def test_metrics_requests_are_not_counted(client: Any) -> None:
    for _ in range(3):
        client.get("/metrics")
    families = scrape(client)
    assert [s for s in families["http_requests"].samples if s.name == "http_requests_total"] == []


def test_promtool_check_metrics_has_no_complaint(app: Flask) -> None:
    """promtool lints the Prometheus text format (it does not read OpenMetrics)."""
    promtool = require_binary("promtool")
    client = app.test_client()
    client.get("/orders/1")
    client.get("/orders/0")
    client.post("/orders", json={})
    client.get("/boom")
    client.get("/nowhere")
    body = client.get("/metrics").get_data()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == b""


def test_scrape_parses_back_with_prometheus_client(client: Any) -> None:
    client.get("/orders/1")
    families = scrape(client)
    assert families["http_requests"].samples


def test_hostile_negotiation_headers_still_get_metrics(client: Any) -> None:
    rng = random.Random(7)
    alphabet = string.printable + "\u00e9\u2603"
    for _ in range(300):
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        junk = junk.replace("\n", " ").replace("\r", " ")
        response = client.get(
            "/metrics",
            headers={"Accept": junk, "Accept-Encoding": junk[::-1], "Authorization": junk},
        )
        assert response.status_code == 200, junk
        assert response.mimetype in ("text/plain", "application/openmetrics-text")
