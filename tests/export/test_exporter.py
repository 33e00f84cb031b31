"""flask-observe's OTLP/HTTP exporter, ``OtlpHttpExporter``, against real servers.

Every test starts the receiver of ``tests/otlp.py`` (``http.server`` in a thread, on
127.0.0.1, HTTP/1.1 with kept-alive connections, over TLS where a test says) and stops it
before it ends. Replies are scripted per test: 503s, a ``Retry-After``, a 400. Nothing is
mocked: the exporter's sockets are real, and what arrives is decoded with
opentelemetry-proto. Waits are kept short through small timeouts and the exporter's
private ``_backoff`` (its first wait, 1 second by default).

- the ``OTEL_EXPORTER_OTLP_*`` variables: endpoint, headers, timeout, compression,
  certificates, each ``..._TRACES_...`` one before the general one, and arguments before
  both;
- retries: 503 then success, ``Retry-After``, giving up within the timeout, no retry on a
  400, a refused connection, shutdown ending a wait;
- one connection for every batch, and a new one when the collector closed it.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext, SpanKind

from flask_observe import ConfigError, __version__
from flask_observe.export import OtlpHttpExporter
from flask_observe.export.encoder import encode_spans
from flask_observe.export.otlp import _retry_after

from ..otlp import receiving

SUCCESS = SpanExportResult.SUCCESS
FAILURE = SpanExportResult.FAILURE

#: Seconds a timing may overrun what it is bounded by, on a busy two-core machine.
SLACK = 1.5

MakeExporter = Callable[..., OtlpHttpExporter]


@pytest.fixture(autouse=True)
def _no_otlp_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no OTLP variable and no proxy, whatever the machine has."""
    for name in list(os.environ):
        if name.startswith("OTEL_EXPORTER_OTLP_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_exporter() -> Iterator[MakeExporter]:
    """``make_exporter(**arguments)``: an exporter, shut down after the test."""
    made: list[OtlpHttpExporter] = []

    def make(**arguments: Any) -> OtlpHttpExporter:
        exporter = OtlpHttpExporter(**arguments)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.shutdown()


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The warnings and errors flask-observe logged so far."""
    caplog.set_level(logging.WARNING, logger="flask_observe")

    def logged() -> list[str]:
        return [
            record.getMessage()
            for record in caplog.records
            if record.name == "flask_observe" and record.levelno >= logging.WARNING
        ]

    return logged


def spans(count: int = 2) -> list[ReadableSpan]:
    resource = Resource({"service.name": "shop"})
    return [
        ReadableSpan(
            f"GET /orders/{n}",
            context=SpanContext(0xABC + n, 0xDEF + n, False),
            resource=resource,
            attributes={"http.route": "/orders/<int:order_id>", "n": n},
            kind=SpanKind.SERVER,
            start_time=1_000 + n,
            end_time=2_000 + n,
        )
        for n in range(count)
    ]


def names(message: ExportTraceServiceRequest) -> list[str]:
    return [
        span.name
        for resource_spans in message.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def free_port() -> int:
    """A port nothing listens on (a moment ago, nothing did)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- where to, and how --


def test_a_batch_arrives_as_the_encoders_bytes_with_the_otlp_headers(
    make_exporter: MakeExporter,
) -> None:
    batch = spans(3)
    with receiving() as receiver:
        assert make_exporter(endpoint=receiver.endpoint).export(batch) is SUCCESS

    (request,) = receiver.received
    assert (request.method, request.path) == ("POST", "/v1/traces")
    assert request.headers["content-type"] == "application/x-protobuf"
    assert request.headers["user-agent"] == f"flask-observe/{__version__}"
    assert "content-encoding" not in request.headers
    assert request.body == encode_spans(batch)
    assert names(request.decoded()) == ["GET /orders/0", "GET /orders/1", "GET /orders/2"]


def test_the_traces_endpoint_variable_is_used_as_it_is(
    make_exporter: MakeExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    with receiving() as receiver:
        url = f"http://127.0.0.1:{receiver.port}/custom/traces?tenant=7"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
        exporter = make_exporter()
        assert exporter.endpoint == url
        assert exporter.export(spans()) is SUCCESS

    assert [r.path for r in receiver.received] == ["/custom/traces?tenant=7"]


@pytest.mark.parametrize(
    ("base_path", "expected"),
    [("", "/v1/traces"), ("/", "/v1/traces"), ("/otlp/", "/otlp/v1/traces")],
)
def test_the_general_endpoint_variable_gets_the_traces_path(
    make_exporter: MakeExporter, monkeypatch: pytest.MonkeyPatch, base_path: str, expected: str
) -> None:
    with receiving() as receiver:
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}{base_path}"
        )
        exporter = make_exporter()
        assert exporter.export(spans()) is SUCCESS

    assert exporter.endpoint == f"http://127.0.0.1:{receiver.port}{expected}"
    assert [r.path for r in receiver.received] == [expected]


def test_without_variables_the_endpoint_is_the_local_collector(make_exporter: MakeExporter) -> None:
    exporter = make_exporter()
    assert exporter.endpoint == "http://localhost:4318/v1/traces"
    assert exporter.timeout == 10
    assert exporter.compression == "none"


def test_an_argument_wins_over_the_variables(
    make_exporter: MakeExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces.invalid/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "3")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "deflate")
    exporter = make_exporter(endpoint="http://arg.invalid/x", timeout=1.5, compression="gzip")
    assert (exporter.endpoint, exporter.timeout, exporter.compression) == (
        "http://arg.invalid/x",
        1.5,
        "gzip",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "grpc://collector:4317"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:port/v1/traces"),
    ],
)
def test_an_endpoint_that_is_no_http_url_is_a_config_error_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        OtlpHttpExporter()
    assert raised.value.key == name


def test_headers_come_from_the_variable_percent_decoded_and_arguments_add_to_them(
    make_exporter: MakeExporter, monkeypatch: pytest.MonkeyPatch, errors: Callable[[], list[str]]
) -> None:
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "Api-Key=se%20cret%2C1 , x-tenant=acme,no-equals-sign,x-plain=two words,x-euro=%E2%82%AC",
    )
    with receiving() as receiver:
        exporter = make_exporter(endpoint=receiver.endpoint, headers={"X-Tenant": "argument"})
        assert exporter.export(spans()) is SUCCESS

    (request,) = receiver.received
    assert request.headers["api-key"] == "se cret,1"
    assert request.headers["x-tenant"] == "argument"
    assert request.headers["x-plain"] == "two words"
    assert "x-euro" not in request.headers  # "€" is no Latin-1: http.client cannot send it
    no_equals, euro = errors()
    assert "OTEL_EXPORTER_OTLP_HEADERS" in no_equals
    assert "no-equals-sign" in no_equals
    assert "x-euro" in euro


def test_the_traces_headers_variable_replaces_the_general_one(
    make_exporter: MakeExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=general,x-general=1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=traces")
    with receiving() as receiver:
        assert make_exporter(endpoint=receiver.endpoint).export(spans()) is SUCCESS

    (request,) = receiver.received
    assert request.headers["api-key"] == "traces"
    assert "x-general" not in request.headers


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "2.5"}, 2.5),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "4", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0.5"}, 0.5),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, 10.0),
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "-1"}, 10.0),
    ],
)
def test_the_timeout_is_read_in_seconds(
    make_exporter: MakeExporter,
    monkeypatch: pytest.MonkeyPatch,
    errors: Callable[[], list[str]],
    variables: dict[str, str],
    expected: float,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert make_exporter().timeout == expected
    assert len(errors()) == (expected == 10.0)


def test_a_collector_slower_than_the_timeout_fails_the_batch_in_time(
    make_exporter: MakeExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.3")
    with receiving(delay=1.0) as receiver:
        exporter = make_exporter(endpoint=receiver.endpoint, _backoff=0.05)
        started = time.monotonic()
        assert exporter.export(spans()) is FAILURE
        elapsed = time.monotonic() - started
    assert elapsed < 0.3 + SLACK
    assert len(receiver.received) >= 1


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, "gzip"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": " Deflate "}, "deflate"),
        (
            {
                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none",
            },
            None,
        ),
        ({"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "brotli"}, None),
    ],
)
def test_compression_is_chosen_by_variable_and_said_in_content_encoding(
    make_exporter: MakeExporter,
    monkeypatch: pytest.MonkeyPatch,
    errors: Callable[[], list[str]],
    variables: dict[str, str],
    expected: Optional[str],
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    batch = spans(20)
    with receiving() as receiver:
        assert make_exporter(endpoint=receiver.endpoint).export(batch) is SUCCESS

    (request,) = receiver.received
    assert request.headers.get("content-encoding") == expected
    assert request.uncompressed() == encode_spans(batch)
    assert len(request.decoded().resource_spans[0].scope_spans[0].spans) == 20
    if expected is not None:
        assert len(request.body) < len(request.uncompressed())
    assert len(errors()) == ("brotli" in variables.values())


@pytest.mark.parametrize(
    ("name", "value"),
    [("compression", "zstd"), ("timeout", 0), ("headers", {"x-key": "line\nbreak"})],
)
def test_a_bad_argument_is_a_config_error_naming_it(name: str, value: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        OtlpHttpExporter(**{name: value})
    assert raised.value.key == name


# -- retries --


def test_a_503_is_retried_until_the_collector_takes_the_batch(
    make_exporter: MakeExporter, errors: Callable[[], list[str]]
) -> None:
    with receiving(replies=[(503, {}), (503, {})]) as receiver:
        exporter = make_exporter(endpoint=receiver.endpoint, _backoff=0.01)
        assert exporter.export(spans()) is SUCCESS

    assert len(receiver.received) == 3
    assert len({r.body for r in receiver.received}) == 1
    assert errors() == []


def test_retry_after_sets_the_wait_before_the_next_try(make_exporter: MakeExporter) -> None:
    with receiving(replies=[(429, {"Retry-After": "0.5"})]) as receiver:
        exporter = make_exporter(endpoint=receiver.endpoint, _backoff=0.01)
        assert exporter.export(spans()) is SUCCESS

    first, second = receiver.received
    assert second.at - first.at >= 0.45


def test_a_retry_after_beyond_the_timeout_fails_the_batch_at_once(
    make_exporter: MakeExporter, errors: Callable[[], list[str]]
) -> None:
    with receiving(replies=[(503, {"Retry-After": "120"})]) as receiver:
        exporter = make_exporter(endpoint=receiver.endpoint, timeout=5)
        started = time.monotonic()
        assert exporter.export(spans()) is FAILURE
        elapsed = time.monotonic() - started

    assert len(receiver.received) == 1
    assert elapsed < SLACK
    (error,) = errors()
    assert "HTTP 503" in error


def test_a_collector_that_keeps_failing_is_given_up_within_the_timeout(
    make_exporter: MakeExporter, errors: Callable[[], list[str]]
) -> None:
    with receiving(status=503) as receiver:
        exporter = make_exporter(endpoint=receiver.endpoint, timeout=0.6, _backoff=0.05)
        started = time.monotonic()
        assert exporter.export(spans()) is FAILURE
        elapsed = time.monotonic() - started

    # Waits of about 0.05, 0.1, 0.2 s, and the next (0.4) no longer fits in the timeout:
    # 4 tries, or fewer when a busy machine makes each try slow.
    assert 2 <= len(receiver.received) <= 4
    assert elapsed < 0.6 + SLACK
    (error,) = errors()  # one line for the batch, none per try
    assert "gave up" in error
    assert "HTTP 503" in error


def test_a_refused_batch_fails_at_once_without_a_retry(
    make_exporter: MakeExporter, errors: Callable[[], list[str]]
) -> None:
    with receiving(status=400) as receiver:
        exporter = make_exporter(endpoint=receiver.endpoint, _backoff=0.01)
        assert exporter.export(spans()) is FAILURE
        assert exporter.export(spans()) is FAILURE

    assert len(receiver.received) == 2  # one per batch
    assert len(errors()) == 2
    assert all("refused" in e and "HTTP 400" in e for e in errors())


def test_a_refused_connection_is_retried_then_given_up_within_the_timeout(
    make_exporter: MakeExporter, errors: Callable[[], list[str]]
) -> None:
    exporter = make_exporter(
        endpoint=f"http://127.0.0.1:{free_port()}/v1/traces", timeout=0.5, _backoff=0.05
    )
    started = time.monotonic()
    assert exporter.export(spans()) is FAILURE
    assert time.monotonic() - started < 0.5 + SLACK
    (error,) = errors()
    assert "ConnectionRefusedError" in error


def test_shutdown_ends_a_wait_for_the_next_try(make_exporter: MakeExporter) -> None:
    with receiving(status=503) as receiver:
        exporter = make_exporter(endpoint=receiver.endpoint, timeout=60, _backoff=20)
        results: list[SpanExportResult] = []
        thread = threading.Thread(target=lambda: results.append(exporter.export(spans())))
        thread.start()
        deadline = time.monotonic() + 10
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert receiver.received, "the first try never came"
        stopped = time.monotonic()
        exporter.shutdown()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert time.monotonic() - stopped < SLACK
        assert results == [FAILURE]
        assert exporter.export(spans()) is FAILURE  # after shutdown, nothing is sent
    assert len(receiver.received) == 1


# -- the connection --


def test_one_connection_carries_every_batch(make_exporter: MakeExporter) -> None:
    with receiving() as receiver:
        exporter = make_exporter(endpoint=receiver.endpoint)
        for _ in range(4):
            assert exporter.export(spans()) is SUCCESS

    assert len({r.client for r in receiver.received}) == 1


def test_a_connection_the_collector_closed_is_replaced_at_once(
    make_exporter: MakeExporter, errors: Callable[[], list[str]]
) -> None:
    with receiving() as receiver:
        exporter = make_exporter(endpoint=receiver.endpoint, _backoff=20)
        assert exporter.export(spans()) is SUCCESS
        receiver.drop_connections()  # as a collector closes an idle connection
        started = time.monotonic()
        assert exporter.export(spans()) is SUCCESS
        assert time.monotonic() - started < SLACK  # no backoff: a new connection at once

    first, second = receiver.received
    assert first.client != second.client
    assert errors() == []


def test_connection_close_from_the_collector_makes_a_new_connection(
    make_exporter: MakeExporter,
) -> None:
    with receiving(replies=[(200, {"Connection": "close"})]) as receiver:
        exporter = make_exporter(endpoint=receiver.endpoint, _backoff=20)
        for _ in range(3):
            assert exporter.export(spans()) is SUCCESS

    clients = [r.client for r in receiver.received]
    assert clients[0] != clients[1] == clients[2]


# -- proxies --


def test_an_http_proxy_from_the_environment_is_sent_the_whole_url(
    make_exporter: MakeExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    with receiving() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://otel:p%40ss@127.0.0.1:{proxy.port}")
        exporter = make_exporter(endpoint="http://collector.invalid:4318/v1/traces")
        assert exporter.export(spans()) is SUCCESS

    (request,) = proxy.received
    assert request.path == "http://collector.invalid:4318/v1/traces"
    assert request.headers["host"] == "collector.invalid:4318"
    credentials = base64.b64decode(request.headers["proxy-authorization"].split()[1])
    assert credentials == b"otel:p@ss"


def test_no_proxy_sends_straight_to_the_collector(
    make_exporter: MakeExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with receiving() as receiver:
        assert make_exporter(endpoint=receiver.endpoint).export(spans()) is SUCCESS
    assert [r.path for r in receiver.received] == ["/v1/traces"]


# -- TLS --


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl
    in a directory of their own: ``ca.pem``, ``server.pem``/``server.key``,
    ``client.pem``/``client.key``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")

    def run(*arguments: str) -> None:
        subprocess.run(
            [openssl, *arguments], cwd=directory, check=True, capture_output=True, timeout=60
        )

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    days = ["-days", "2"]
    # The extensions Python 3.13's strict verification asks of a CA and of the others.
    ca = [
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]
    run("req", "-x509", *key, *days, *ca, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=CA")
    for name, usage, san in (
        ("server", "serverAuth", "subjectAltName=IP:127.0.0.1\n"),
        ("client", "clientAuth", ""),
    ):
        (directory / f"{name}.ext").write_text(
            f"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage={usage}\n"
            f"subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n{san}"
        )
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        signed_by_ca = ["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
        run("x509", "-req", "-in", f"{name}.csr", *signed_by_ca, *days,
            "-extfile", f"{name}.ext", "-out", f"{name}.pem")  # fmt: skip
    return directory


def server_context(certificates: Path, *, client_certificate: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates / "server.pem", certificates / "server.key")
    if client_certificate:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certificates / "ca.pem")
    return context


def test_https_with_the_collectors_ca_from_the_certificate_variable(
    make_exporter: MakeExporter, monkeypatch: pytest.MonkeyPatch, certificates: Path
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(certificates / "ca.pem"))
    with receiving(tls=server_context(certificates)) as receiver:
        assert receiver.endpoint.startswith("https://")
        exporter = make_exporter(endpoint=receiver.endpoint)
        assert exporter.export(spans()) is SUCCESS
        assert exporter.export(spans()) is SUCCESS

    assert len(receiver.received) == 2
    assert len({r.client for r in receiver.received}) == 1


def test_https_to_a_collector_the_system_cannot_verify_fails(
    make_exporter: MakeExporter, certificates: Path, errors: Callable[[], list[str]]
) -> None:
    with receiving(tls=server_context(certificates)) as receiver:
        exporter = make_exporter(endpoint=receiver.endpoint, timeout=0.3, _backoff=0.05)
        assert exporter.export(spans()) is FAILURE

    assert receiver.received == []
    (error,) = errors()
    assert "SSLCertVerificationError" in error


def test_mutual_tls_with_the_client_certificate_and_key_variables(
    make_exporter: MakeExporter, monkeypatch: pytest.MonkeyPatch, certificates: Path
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", str(certificates / "ca.pem"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", str(certificates / "client.pem"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", str(certificates / "client.key"))
    with receiving(tls=server_context(certificates, client_certificate=True)) as receiver:
        assert make_exporter(endpoint=receiver.endpoint).export(spans()) is SUCCESS
    assert len(receiver.received) == 1


def test_a_certificate_file_that_cannot_be_read_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError) as raised:
        OtlpHttpExporter(endpoint="https://collector.invalid/v1/traces")
    assert raised.value.key == "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"


# -- Retry-After --


def test_retry_after_is_seconds_or_an_http_date() -> None:
    assert _retry_after("2") == 2.0
    assert _retry_after(" 0.25 ") == 0.25
    assert _retry_after("-3") == 0.0
    assert _retry_after(None) is None
    assert _retry_after("soon") is None
    assert _retry_after("inf") is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 -0000") == 0.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (_retry_after(later) or 0) <= 30
