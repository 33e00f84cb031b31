"""The access line: written by hand when flask-observe's handler is the only one to see it,
and proven to be, to the character, the line python-json-logger's encoder writes for the
access record, whatever the request sends."""

from __future__ import annotations

import json
import logging
import math
import re
import time
from typing import Any, Optional

import pytest
from flask import Flask, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pythonjsonlogger.json import JsonEncoder

from flask_observe import Observe
from flask_observe.logs import (
    ACCESS_LOGGER,
    JsonLogFormatter,
    ObserveHandler,
    _rfc3339,
    _sole_handler,
)
from flask_observe.observation import Observation

from ..conftest import KeptRecords, access_lines, log_lines, without_root_handlers
from .helpers import access_fields, access_record, routed

#: Any character, lone surrogates and control characters included.
HOSTILE_CHARS = st.characters(codec=None, exclude_categories=())
HOSTILE = st.one_of(
    st.text(HOSTILE_CHARS, max_size=60),
    st.sampled_from(['x", "level": "critical', "a\nb\r\nc", "\u2028\u2029", "\\", '"', "\x7f"]),
    # Around the clipping limits (32, 64, 1024 characters), and far above them.
    st.builds(
        lambda char, size: char * size,
        HOSTILE_CHARS,
        st.sampled_from([31, 32, 33, 63, 64, 65, 1023, 1024, 1025, 5000]),
    ),
)
LEVELS = st.sampled_from([logging.INFO, logging.WARNING, logging.ERROR])
#: Durations as LogSink rounds them, and any finite float.
DURATIONS = st.one_of(
    st.integers(0, 10**12).map(lambda us: us / 1000),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _clip(value: Optional[str], limit: int) -> Optional[str]:
    if value is None or len(value) <= limit:
        return value
    return value[:limit] + "...[truncated]"


@pytest.fixture
def observed(registry: CollectorRegistry) -> Flask:
    app = Flask("shop")

    @app.route("/echo/<path:rest>", methods=["GET", "POST"])
    def echo(rest: str) -> str:
        return request.path

    Observe(app, registry=registry)
    return app


def _formatter() -> JsonLogFormatter:
    (handler,) = logging.getLogger("flask_observe").handlers
    assert isinstance(handler, ObserveHandler)
    assert isinstance(handler.formatter, JsonLogFormatter)
    return handler.formatter


# -- the line alone, against the encoder --


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    level=LEVELS,
    logger=st.one_of(st.just(ACCESS_LOGGER), HOSTILE),
    service=HOSTILE,
    request_id=HOSTILE,
    ids=st.none() | st.tuples(HOSTILE, HOSTILE),
    method=HOSTILE,
    route=st.none() | HOSTILE,
    path=HOSTILE,
    status=st.integers(-(10**20), 10**20),
    duration_ms=DURATIONS,
    client_addr=st.none() | HOSTILE,
    user_agent=st.none() | HOSTILE,
    size=st.integers(0, 10**20),
    exception=st.none() | HOSTILE,
    query=st.none() | HOSTILE,
    created=st.floats(0, 2**33),
)
def test_the_hand_written_line_is_the_encoders_line(
    observed: Flask,
    level: int,
    logger: str,
    service: str,
    request_id: str,
    ids: Optional[tuple[str, str]],
    method: str,
    route: Optional[str],
    path: str,
    status: int,
    duration_ms: float,
    client_addr: Optional[str],
    user_agent: Optional[str],
    size: int,
    exception: Optional[str],
    query: Optional[str],
    created: float,
) -> None:
    formatter = _formatter()
    pipeline = observed.extensions["observe"].pipeline
    pipeline.service = service
    observation = routed(
        pipeline, method=method, route=route, path=path, request_id=request_id, ids=ids
    )
    fields = access_fields(status, duration_ms, client_addr, user_agent, size, exception, query)

    line = formatter.access_line(level, logger, observation, fields, created)

    # The access record of the same request, formatted by python-json-logger's formatter.
    record = access_record(logger, level, observation, fields, created)
    assert line == formatter.format(record)

    # The fields in the design's order, through the json module and python-json-logger's
    # encoder: the same text again.
    expected: dict[str, Any] = {
        "timestamp": _rfc3339(created),
        "level": logging.getLevelName(level).lower(),
        "logger": logger,
        "event": "request",
        "service": service,
        "request_id": request_id,
    }
    if ids is not None:
        expected["trace_id"], expected["span_id"] = ids
    expected.update(method=_clip(method, 32), route=route, path=_clip(path, 1024))
    expected.update(fields)
    assert line == json.dumps(expected) == JsonEncoder().encode(expected)
    # One line of printable ASCII, whatever it holds, that reads back as the same object.
    assert line.isascii()
    assert line.isprintable()
    assert json.loads(line) == expected


@settings(max_examples=300, deadline=None)
@given(created=st.floats(0, 2**33))
def test_timestamps_are_rfc3339_utc_to_the_millisecond(created: float) -> None:
    second = int(created)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    assert _rfc3339(created) == f"{stamp}.{int((created - second) * 1000):03d}Z"


def _routed(app: Flask, environ: dict[str, Any]) -> Observation:
    observation = Observation(0.0, environ, app.extensions["observe"].pipeline)
    observation.endpoint, observation.path, observation.request_id = "routed", "/", "id"
    return observation


def _fields() -> dict[str, Any]:
    return {
        "status": 200,
        "duration_ms": 0.5,
        "client_addr": None,
        "user_agent": None,
        "response_bytes": 0,
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", True),
        ("status", "200"),
        ("status", 200.0),
        ("response_bytes", None),
        ("duration_ms", math.nan),
        ("duration_ms", math.inf),
        ("duration_ms", -math.inf),
        ("duration_ms", 1),
        ("user_agent", b"bytes"),
        ("client_addr", 127),
        ("exception", None),
    ],
)
def test_a_field_the_hand_written_line_does_not_expect_raises(
    observed: Flask, field: str, value: Any
) -> None:
    """The caller then makes the record, which python-json-logger writes as it can."""
    observation = _routed(observed, {"REQUEST_METHOD": "GET"})
    fields = _fields()
    _formatter().access_line(logging.INFO, ACCESS_LOGGER, observation, fields)
    fields[field] = value
    with pytest.raises(TypeError):
        _formatter().access_line(logging.INFO, ACCESS_LOGGER, observation, fields)


def test_no_method_or_no_request_id_raises(observed: Flask) -> None:
    """Neither happens in a request (WSGI servers set the method, the log sink the ID)."""
    with pytest.raises(TypeError):
        _formatter().access_line(logging.INFO, ACCESS_LOGGER, _routed(observed, {}), _fields())
    observation = _routed(observed, {"REQUEST_METHOD": "GET"})
    observation.request_id = None
    with pytest.raises(TypeError):
        _formatter().access_line(logging.INFO, ACCESS_LOGGER, observation, _fields())


# -- through the app --


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rest=st.text(HOSTILE_CHARS, min_size=1, max_size=40) | st.just("p" * 1100),
    user_agent=HOSTILE,
    client_addr=HOSTILE,
    method=st.sampled_from(["GET", "POST", "PURGE", "G\nET", "x" * 40]),
)
def test_hostile_requests_give_one_whole_line_with_what_they_sent(
    observed: Flask,
    capsys: pytest.CaptureFixture[str],
    rest: str,
    user_agent: str,
    client_addr: str,
    method: str,
) -> None:
    """Whatever a client puts in the path, the method, the User-Agent (or a proxy in the
    address), one line is written, without a record, with those values clipped and nothing
    else; and the line is the same when the record is made for a handler of the user's."""
    capsys.readouterr()
    client = observed.test_client()
    # PATH_INFO carries bytes as latin-1, as a WSGI server sets it.
    raw_path = ("/echo/" + rest).encode("utf-8", "surrogatepass").decode("latin-1")
    environ = {
        "PATH_INFO": raw_path,
        "REQUEST_METHOD": method,
        "HTTP_USER_AGENT": user_agent,
        "REMOTE_ADDR": client_addr,
        "HTTP_X_REQUEST_ID": "same-id",
    }
    with without_root_handlers():
        assert _sole_handler(logging.getLogger(ACCESS_LOGGER), logging.ERROR) is not None
        response = client.open(environ_overrides=environ)
    kept = KeptRecords()
    logging.getLogger().addHandler(kept)
    try:
        client.open(environ_overrides=environ)
    finally:
        logging.getLogger().removeHandler(kept)
    raw = capsys.readouterr().err
    assert len(raw.splitlines()) == 2
    # Milliseconds to three decimal places, as the encoder writes such a float.
    assert all(re.search(r'"duration_ms": \d+\.\d{1,3}, ', line) for line in raw.splitlines())
    fast, made = access_lines([json.loads(line) for line in raw.splitlines()])
    assert [r.name for r in kept.records] == [ACCESS_LOGGER]
    varying = ("timestamp", "duration_ms", "trace_id", "span_id")
    assert {k: v for k, v in fast.items() if k not in varying} == {
        k: v for k, v in made.items() if k not in varying
    }
    assert fast["method"] == _clip(method, 32)
    assert fast["user_agent"] == _clip(user_agent, 1024)
    assert fast["client_addr"] == _clip(client_addr, 64)
    assert fast["request_id"] == "same-id"
    if response.status_code == 200:  # not a 405 for the method, a redirect for "//"...
        assert fast["path"] == _clip(response.get_data(as_text=True), 1024)
        assert fast["route"] == "/echo/<path:rest>"


def test_the_request_id_is_made_as_32_hex_digits_and_sent_back(
    observed: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    client = observed.test_client()
    echoed = [client.get("/echo/x").headers["X-Request-ID"] for _ in range(200)]
    logged = [line["request_id"] for line in access_lines(log_lines(capsys))]
    assert logged == echoed
    assert len(set(echoed)) == 200
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in echoed)


def test_the_console_line_is_the_same_with_or_without_a_record(
    registry: CollectorRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    app = Flask("shop")
    app.config["OBSERVE_LOG_FORMAT"] = "console"
    Observe(app, registry=registry)
    client = app.test_client()
    environ = {"HTTP_X_REQUEST_ID": "c-1", "HTTP_USER_AGENT": 'say "hi"\n'}
    with without_root_handlers():
        client.get("/nope", environ_overrides=environ)
    kept = KeptRecords()
    logging.getLogger().addHandler(kept)
    try:
        client.get("/nope", environ_overrides=environ)
    finally:
        logging.getLogger().removeHandler(kept)
    alone, made = capsys.readouterr().err.splitlines()
    assert len(kept.records) == 1

    def steady(line: str) -> str:  # the time of day, the duration and the span IDs vary
        return re.sub(r"^\S+|duration_ms=\S+|(trace|span)_id=\S+", "", line)

    assert steady(alone) == steady(made)
    assert re.search(r" WARNING +flask_observe\.access request request_id=c-1 .*status=404 ", alone)
    assert 'user_agent="say \\"hi\\"\\n"' in alone


def test_a_formatter_that_writes_access_lines_its_own_way_still_does(
    observed: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    """A subclass that overrides serialize_access gets the fields from it, record or not."""

    class Shouting(JsonLogFormatter):
        def serialize_access(self, data: dict[str, Any]) -> str:
            return json.dumps({key.upper(): value for key, value in data.items()})

    (handler,) = logging.getLogger("flask_observe").handlers
    handler.setFormatter(Shouting(service="shop"))
    client = observed.test_client()
    with without_root_handlers():
        assert _sole_handler(logging.getLogger(ACCESS_LOGGER), logging.INFO) is handler
        client.get("/echo/x", headers={"X-Request-ID": "loud"})
    client.get("/echo/x", headers={"X-Request-ID": "loud"})
    alone, made = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert list(alone) == list(made)
    assert (alone["REQUEST_ID"], alone["STATUS"], alone["PATH"]) == ("loud", 200, "/echo/x")
