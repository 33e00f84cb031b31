"""No client can forge a log line, or make the app write one per request.

A real server runs the end-to-end app (JSON logs on, flask-observe's own tracer provider):
``flask run`` (werkzeug) and gunicorn, each in a process of its own on 127.0.0.1, stopped by
its PID. Raw requests are sent on sockets, carrying what a hostile client would: a folded
``baggage`` header that holds a newline, a JSON object and 9,000 bytes, malformed or
oversized ``baggage`` and ``tracestate`` headers, and a request line with control
characters. Then every line the server wrote to standard error is read back:

- each line the app's logging wrote is one JSON object (gunicorn's own error log keeps its
  own format, one line per message, a bad request line quoted and escaped within it);
- no line parses as the object the client tried to forge;
- the warnings OpenTelemetry writes about bad headers are held back after the first, and
  counted, not written once per request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from flask_observe import Observe
from flask_observe.logs.filters import RepeatFilter

from ..e2e.servers import Gunicorn, free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.e2e.app:create_app()"
FORGED = '{"level": "critical", "event": "FORGED_LINE", "logger": "auth"}'

#: Raw requests of a hostile client: each a request head (and no body).
ATTACKS = [
    # A folded header (obs-fold) whose continuation is a line of JSON, then 9,000 bytes.
    "GET /ok HTTP/1.1\r\nHost: shop\r\nbaggage: a=1\r\n "
    + FORGED
    + "\r\n "
    + "x" * 9000
    + "\r\nConnection: close\r\n\r\n",
    "GET /ok HTTP/1.1\r\nHost: shop\r\nbaggage: not-a-pair\r\nConnection: close\r\n\r\n",
    "GET /ok HTTP/1.1\r\nHost: shop\r\nbaggage: "
    + ",".join(f"k{n}=v" for n in range(200))
    + "\r\nConnection: close\r\n\r\n",
    "GET /ok HTTP/1.1\r\nHost: shop\r\ntraceparent: 00-"
    + "ab" * 16
    + "-"
    + "cd" * 8
    + "-01\r\ntracestate: "
    + ",".join(f"v{n}=x" for n in range(40))
    + "\r\nConnection: close\r\n\r\n",
    "GET /ok HTTP/1.1\r\nHost: shop\r\ntraceparent: 00-"
    + "ab" * 16
    + "-"
    + "cd" * 8
    + "-01\r\ntracestate: a="
    + "y" * 9000
    + "\r\nConnection: close\r\n\r\n",
    "GET /ok?\x1b[31m" + "%0a" + FORGED.replace(" ", "") + " HTTP/1.1\r\nHost: shop\r\n"
    "Connection: close\r\n\r\n",
]
#: Each attack is sent this many times: a line per request would show as that many lines.
REPEATS = 15


def send_raw(port: int, head: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head.encode("latin-1"))
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    return reply


def attack(port: int) -> None:
    for head in ATTACKS:
        for _ in range(REPEATS):
            send_raw(port, head)  # whatever the server answers (a 400 for some)
    assert (
        send_raw(port, "GET /ok HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")[:12]
        == b"HTTP/1.1 200"
    )


#: gunicorn's own lines: ``[date] [pid] [LEVEL] text``.
GUNICORN_LINE = re.compile(r"^\[[^\]]+\] \[\d+\] \[[A-Z]+\] ")


def check_lines(text: str, *, gunicorn: bool) -> list[dict[str, Any]]:
    """Every line JSON (or gunicorn's own); none forged; OpenTelemetry's warnings few."""
    parsed = []
    for line in text.splitlines():
        if gunicorn and GUNICORN_LINE.match(line):
            # gunicorn's own error log (its format, not JSON: configure it with gunicorn's
            # logconfig_dict). It may quote a bad request line, escaped, within the line.
            continue
        try:
            value = json.loads(line)
        except ValueError:
            pytest.fail(f"a line on stderr is not JSON: {line[:300]!r}")
        assert isinstance(value, dict), line[:300]
        assert value.get("event") != "FORGED_LINE", line[:300]
        parsed.append(value)
    otel = [p for p in parsed if str(p.get("logger", "")).startswith("opentelemetry")]
    # One line per kind of warning at most in this short run, not one per request.
    templates = {p["logger"] for p in otel}
    assert len(otel) <= 2 * len(templates) + 2, [p.get("event", "")[:80] for p in otel]
    return parsed


@contextlib.contextmanager
def flask_run(errors: Path) -> Iterator[int]:
    """``flask run`` serving the end-to-end app on a free port, its standard error written
    to *errors*; stopped by its PID on the way out."""
    port = free_port()
    with errors.open("wb") as stream:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                APP,
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stream,
        )
    try:
        wait_for("flask run to answer", lambda: _answers(port), 30.0)
        yield port
    finally:
        stop_process(process)


def test_werkzeug_writes_only_json_lines_whatever_the_client_sends(tmp_path: Path) -> None:
    errors = tmp_path / "stderr.txt"
    with flask_run(errors) as port:
        attack(port)
    parsed = check_lines(errors.read_text(errors="replace"), gunicorn=False)
    # werkzeug's own request lines are JSON lines too, beside the access lines.
    assert any(p.get("logger") == "werkzeug" for p in parsed)
    assert any(p.get("logger") == "flask_observe.access" for p in parsed)


def test_gunicorn_writes_no_line_a_client_chose(tmp_path: Path) -> None:
    server = Gunicorn(APP, tmp_path, workers=2)
    try:
        server.wait_ready()
        start = len(server.log())  # after the config's banner, which no client chose
        attack(server.port)
        families = server.scrape()
    finally:
        server.stop()
    check_lines(server.log()[start:], gunicorn=True)
    held = {
        sample.labels["reason"]: sample.value
        for sample in families["flask_observe_log_lines_lost"].samples
        if sample.name == "flask_observe_log_lines_lost_total"
    }
    assert held["suppressed"] > 0  # the repeats were counted, not lost silently


def _answers(port: int) -> bool:
    try:
        return (
            send_raw(port, "GET /ok HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")[:12]
            == b"HTTP/1.1 200"
        )
    except OSError:
        return False


# -- any headers at all --


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """One ``flask run`` for the fuzzing below: its port, and its standard error's file."""
    errors = tmp_path_factory.mktemp("fuzz") / "stderr.txt"
    with flask_run(errors) as port:
        yield port, errors


#: Header names a client may send (tokens), and values: printable latin-1 without CR/LF.
NAMES = st.sampled_from(
    [
        "baggage",
        "tracestate",
        "traceparent",
        "x-request-id",
        "user-agent",
        "host",
        "x-forwarded-for",
        "authorization",
        "accept",
    ]
) | st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)
VALUES = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=300,
)
SENT: dict[str, int] = {"requests": 0, "bytes": 0}


@settings(max_examples=80, deadline=None)
@given(
    headers=st.dictionaries(NAMES, VALUES, max_size=6),
    body=st.binary(max_size=64),
    path=st.sampled_from(["/ok", "/items/7", "/items", "/no/such"]),
)
def test_fuzzed_headers_never_fail_a_request_nor_move_a_size(
    fuzzed: tuple[int, Path], headers: dict[str, str], body: bytes, path: str
) -> None:
    import http.client

    port, _errors = fuzzed
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {k: v.strip() for k, v in headers.items() if k.lower() != "content-length"}
        method = "POST" if path == "/items" else "GET"
        conn.request(method, path, body=body if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status < 500, (headers, response.status)
    if method == "POST" and response.status == 201:
        SENT["bytes"] += len(body)
        SENT["requests"] += 1


def test_after_the_fuzzing_every_line_is_json_and_sizes_are_the_bytes_sent(
    fuzzed: tuple[int, Path],
) -> None:
    from ..e2e.servers import scrape

    port, errors = fuzzed
    families = scrape(port)
    sizes = {
        sample.name: sample.value
        for sample in families["http_request_size_bytes"].samples
        if sample.labels.get("endpoint") == "/items"
        and sample.labels.get("method") == "POST"
        and sample.name in ("http_request_size_bytes_sum", "http_request_size_bytes_count")
    }
    if SENT["requests"]:
        assert sizes["http_request_size_bytes_count"] == SENT["requests"]
        assert sizes["http_request_size_bytes_sum"] == SENT["bytes"]
    time.sleep(0.2)  # the server's last lines reach the file
    check_lines(errors.read_text(errors="replace"), gunicorn=False)


def test_the_line_after_held_back_warnings_says_how_many_were_held(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Five requests with a bad ``baggage`` header: OpenTelemetry's first warning is written,
    the next four are held back and counted; once the interval has passed, the next warning
    written carries ``suppressed: 4``."""
    registry = CollectorRegistry()
    app = Flask("shop")
    app.config.update(OBSERVE_SERVICE_NAME="shop")
    Observe(app, registry=registry)

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    (repeats,) = [
        f
        for handler in logging.getLogger("opentelemetry").handlers
        for f in handler.filters
        if isinstance(f, RepeatFilter)
    ]
    client = app.test_client()
    capsys.readouterr()
    for _ in range(5):
        assert client.get("/ok", headers={"baggage": "not-a-pair"}).status_code == 200
    repeats.interval = 0.05  # the default minute, shortened for the test
    time.sleep(0.1)
    assert client.get("/ok", headers={"baggage": "not-a-pair"}).status_code == 200
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    warned = [line for line in lines if line["logger"].startswith("opentelemetry")]
    assert len(warned) == 2, warned
    assert "suppressed" not in warned[0]
    assert warned[1]["suppressed"] == 4
    held = registry.get_sample_value("flask_observe_log_lines_lost_total", {"reason": "suppressed"})
    assert held == 4.0
