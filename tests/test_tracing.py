"""Traces: the request span, @traced spans, propagation, parity with the contrib
instrumentation, and the links to logs and metrics."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from flask_observe import Observe, get_logger, traced

from .conftest import Spans, log_lines

log = get_logger("shop.checkout")


class PaymentDeclined(Exception):
    """Raised by process_payment when the card is refused."""


@traced("checkout.authenticate", attributes={"user.id": "user_id"})
def authenticate(user_id: int) -> None:
    log.info("authenticated", user_id=user_id)


@traced(attributes={"order.items": lambda items: len(items)})
async def check_inventory(items: list[str]) -> bool:
    await asyncio.sleep(0)
    return True


@traced
def reserve(items: list[str]) -> Iterator[str]:
    yield from items


@traced
def process_payment(total_cents: int) -> None:
    if total_cents < 0:
        raise PaymentDeclined("card refused")


@traced
def process_order(user_id: int, items: list[str], total_cents: int) -> int:
    authenticate(user_id)
    asyncio.run(check_inventory(items))
    reserved = list(reserve(items))
    process_payment(total_cents)
    return len(reserved)


def _app(registry: CollectorRegistry, spans: Spans, **config: Any) -> Flask:
    app = Flask("shop")
    app.config.update(config)

    @app.post("/orders")
    def create_order() -> Any:
        body = request.get_json()
        count = process_order(body["user_id"], body["items"], body["total_cents"])
        return {"items": count}, 201

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> Any:
        return {"id": order_id}

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/teapot")
    def teapot() -> Any:
        return "short and stout", 503

    spans.observe(app, registry=registry)
    return app


@pytest.fixture(params=["given", "made"])
def spans(request: pytest.FixtureRequest) -> Iterator[Spans]:
    """Every test here runs twice: with a provider given to ``Observe`` (the SDK's spans) and
    with the provider flask-observe makes (its lean spans): both must behave alike."""
    kept = Spans(made=request.param == "made")
    yield kept
    kept.shutdown()


@pytest.fixture
def app(registry: CollectorRegistry, spans: Spans) -> Flask:
    return _app(registry, spans)


ORDER = {"user_id": 7, "items": ["mug", "tea"], "total_cents": 2550}


def test_a_request_is_one_trace_of_its_spans(app: Flask, spans: Spans) -> None:
    response = app.test_client().post("/orders", json=ORDER)
    assert response.status_code == 201
    server = spans.named("POST /orders")
    assert server.kind is SpanKind.SERVER
    assert server.parent is None
    order = spans.named("tests.test_tracing.process_order")
    assert order.parent.span_id == server.context.span_id
    children = {
        name: spans.named(name)
        for name in (
            "checkout.authenticate",
            "tests.test_tracing.check_inventory",
            "tests.test_tracing.reserve",
            "tests.test_tracing.process_payment",
        )
    }
    for child in children.values():
        assert child.parent.span_id == order.context.span_id
        assert child.context.trace_id == server.context.trace_id
        assert child.kind is SpanKind.INTERNAL
        assert child.status.status_code is StatusCode.UNSET
    assert children["checkout.authenticate"].attributes["user.id"] == 7
    assert children["tests.test_tracing.check_inventory"].attributes["order.items"] == 2
    # Timed: each child lies within its parent.
    for child in children.values():
        assert order.start_time <= child.start_time <= child.end_time <= order.end_time
    assert server.start_time <= order.start_time <= order.end_time <= server.end_time


def test_an_exception_marks_the_function_span_and_the_request_span(
    app: Flask, spans: Spans
) -> None:
    response = app.test_client().post("/orders", json={**ORDER, "total_cents": -1})
    assert response.status_code == 500
    payment = spans.named("tests.test_tracing.process_payment")
    assert payment.status.status_code is StatusCode.ERROR
    assert payment.status.description == "PaymentDeclined: card refused"
    (event,) = payment.events
    assert event.name == "exception"
    assert event.attributes["exception.type"].endswith("PaymentDeclined")
    order = spans.named("tests.test_tracing.process_order")
    assert order.status.status_code is StatusCode.ERROR
    server = spans.named("POST /orders")
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes["http.response.status_code"] == 500
    assert server.attributes["error.type"] == "500"
    assert [e.name for e in server.events] == ["exception"]


def test_the_request_span_attributes(app: Flask, spans: Spans) -> None:
    app.test_client().get(
        "/orders/42?token=secret",
        headers={"User-Agent": "probe/1.0"},
        environ_base={"REMOTE_ADDR": "10.0.0.5"},
    )
    server = spans.named("GET /orders/<int:order_id>")
    assert dict(server.attributes) == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "server.address": "localhost",
        "server.port": 80,
        "url.path": "/orders/42",
        "client.address": "10.0.0.5",
        "user_agent.original": "probe/1.0",
        "network.protocol.version": "1.1",
        "http.route": "/orders/<int:order_id>",
        "http.response.status_code": 200,
    }
    assert server.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize(
    ("method", "path", "name", "status"),
    [
        ("GET", "/no/such/page", "GET", 404),
        ("GET", "/no/such/page/12345", "GET", 404),
        ("BREW", "/orders/1", "HTTP /orders/<int:order_id>", 405),
        ("GET", "/teapot", "GET /teapot", 503),
    ],
)
def test_span_names_never_carry_a_raw_path(
    app: Flask, spans: Spans, method: str, path: str, name: str, status: int
) -> None:
    assert app.test_client().open(path, method=method).status_code == status
    (server,) = spans.finished()
    assert server.name == name
    expected = StatusCode.ERROR if status >= 500 else StatusCode.UNSET
    assert server.status.status_code is expected
    if method == "BREW":
        assert server.attributes["http.request.method"] == "_OTHER"
        assert server.attributes["http.request.method_original"] == "BREW"


def test_excluded_paths_get_no_span(app: Flask, spans: Spans) -> None:
    app.test_client().get("/metrics")
    assert spans.finished() == []


# -- propagation --

PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"


def test_an_incoming_traceparent_is_the_parent(app: Flask, spans: Spans) -> None:
    response = app.test_client().get(
        "/orders/1", headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"}
    )
    server = spans.named("GET /orders/<int:order_id>")
    assert format(server.context.trace_id, "032x") == PARENT_TRACE
    assert format(server.parent.span_id, "016x") == PARENT_SPAN
    assert server.parent.is_remote
    span_id = format(server.context.span_id, "016x")
    assert response.headers["traceresponse"] == f"00-{PARENT_TRACE}-{span_id}-01"


def test_an_unsampled_parent_is_honoured(app: Flask, spans: Spans) -> None:
    response = app.test_client().get(
        "/orders/1", headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-00"}
    )
    assert response.status_code == 200
    assert spans.finished() == []
    assert "traceresponse" not in response.headers


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    traceparent=st.one_of(
        st.text(max_size=200),
        st.text(alphabet="0123456789abcdef-", max_size=60),
        st.just("00-" + "0" * 32 + "-" + "1" * 16 + "-01"),
        st.just(f"00-{PARENT_TRACE}-{PARENT_SPAN}-01" + "x" * 10_000),
    ),
    tracestate=st.one_of(st.none(), st.text(max_size=300), st.just("a=b," * 5000)),
)
def test_a_malformed_traceparent_starts_a_fresh_trace(
    app: Flask, spans: Spans, traceparent: str, tracestate: Any
) -> None:
    spans.exporter.clear()
    environ = {"HTTP_TRACEPARENT": traceparent}
    if tracestate is not None:
        environ["HTTP_TRACESTATE"] = tracestate
    response = app.test_client().get("/orders/3", environ_overrides=environ)
    assert response.status_code == 200
    # What W3C Trace Context accepts: anything else must not become the parent.
    valid = re.fullmatch(
        r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*",
        traceparent,
        re.DOTALL,
    )
    finished = spans.finished()
    if not finished:  # a valid parent that asked not to be sampled
        assert valid is not None
        assert int(valid.group(4), 16) & 1 == 0
        return
    (server,) = finished
    if server.parent is not None:
        assert valid is not None
        assert format(server.parent.trace_id, "032x") == valid.group(2)
    trace_id = format(server.context.trace_id, "032x")
    assert response.headers["traceresponse"].split("-")[1] == trace_id


# -- the links to logs and metrics --


def test_log_lines_carry_the_ids_of_the_span_they_were_written_in(
    app: Flask, spans: Spans, capsys: pytest.CaptureFixture[str]
) -> None:
    app.test_client().post("/orders", json=ORDER)
    lines = {line["event"]: line for line in log_lines(capsys)}
    authenticate_span = spans.named("checkout.authenticate")
    server = spans.named("POST /orders")
    authenticated = lines["authenticated"]
    assert authenticated["trace_id"] == format(server.context.trace_id, "032x")
    assert authenticated["span_id"] == format(authenticate_span.context.span_id, "016x")
    access = lines["request"]
    assert access["trace_id"] == authenticated["trace_id"]
    assert access["span_id"] == format(server.context.span_id, "016x")


def test_outside_any_span_a_line_has_no_trace_fields(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    log.info("idle")
    (line,) = log_lines(capsys)
    assert "trace_id" not in line
    assert "span_id" not in line


def test_the_latency_histogram_carries_the_trace_as_an_exemplar(app: Flask, spans: Spans) -> None:
    response = app.test_client().get("/orders/9")
    body = (
        app.test_client()
        .get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        .get_data(as_text=True)
    )
    server = spans.named("GET /orders/<int:order_id>")
    trace_id = format(server.context.trace_id, "032x")
    (family,) = [
        f for f in text_string_to_metric_families(body) if f.name == "http_request_duration_seconds"
    ]
    exemplars = [
        s.exemplar for s in family.samples if s.name.endswith("_bucket") and s.exemplar is not None
    ]
    assert [e.labels for e in exemplars] == [{"trace_id": trace_id}]
    assert 0 < exemplars[0].value < 10
    assert response.headers["traceresponse"].split("-")[1] == trace_id
    # The Prometheus text format has no exemplars.
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert trace_id not in text


# -- @traced on its own --


def test_a_generator_span_is_current_only_while_the_generator_runs(spans: Spans) -> None:
    tracer = spans.provider.get_tracer("test")
    seen: list[Any] = []

    @traced
    def numbers() -> Iterator[int]:
        for n in range(3):
            seen.append(trace.get_current_span())
            yield n

    with tracer.start_as_current_span("consumer") as consumer:
        for _ in numbers():
            assert trace.get_current_span() is consumer
    # The global provider made the function's span: the generator saw it, not the consumer.
    assert all(span is seen[0] for span in seen)
    assert seen[0] is not consumer


def test_a_generator_closed_early_is_not_an_error(spans: Spans) -> None:
    app = Flask("shop")
    spans.observe(app, registry=CollectorRegistry())

    @traced
    def endless() -> Iterator[int]:
        n = 0
        while True:
            yield n
            n += 1

    with app.app_context():
        numbers = endless()
        assert [next(numbers) for _ in range(3)] == [0, 1, 2]
        numbers.close()
    span = spans.named(
        "tests.test_tracing.test_a_generator_closed_early_is_not_an_error.<locals>.endless"
    )
    assert span.status.status_code is StatusCode.UNSET
    assert span.end_time is not None


def test_async_generators_are_spanned_over_their_iteration(spans: Spans) -> None:
    app = Flask("shop")
    spans.observe(app, registry=CollectorRegistry())

    @traced("stream.rows")
    async def rows() -> Any:
        for n in range(3):
            await asyncio.sleep(0)
            yield n

    async def consume() -> list[int]:
        return [n async for n in rows()]

    with app.app_context():
        assert asyncio.run(consume()) == [0, 1, 2]
    span = spans.named("stream.rows")
    assert span.end_time is not None


def test_arguments_are_recorded_only_when_asked(spans: Spans) -> None:
    app = Flask("shop")
    spans.observe(app, registry=CollectorRegistry())

    @traced("quiet")
    def quiet(card: str) -> None:
        pass

    @traced("loud", record_args=True)
    def loud(card: str, amount: int = 5, note: object = None) -> None:
        pass

    with app.app_context():
        quiet("4111 1111 1111 1111")
        loud("4111", note=["x"] * 200)
    assert dict(spans.named("quiet").attributes) == {}
    attributes = spans.named("loud").attributes
    assert attributes["code.arg.card"] == "4111"
    assert attributes["code.arg.amount"] == 5
    assert len(attributes["code.arg.note"]) == 259  # clipped to 256 characters and "..."


def test_an_attribute_callable_that_fails_never_fails_the_call(spans: Spans) -> None:
    app = Flask("shop")
    spans.observe(app, registry=CollectorRegistry())

    @traced("fragile", attributes={"bad": lambda x: 1 / 0, "good": "x"})
    def fragile(x: int) -> int:
        return x * 2

    with app.app_context():
        assert fragile(21) == 42
    assert dict(spans.named("fragile").attributes) == {"good": 21}


def test_an_attribute_naming_no_argument_is_refused_at_decoration() -> None:
    with pytest.raises(TypeError, match=r"'order_id', which .*pay\(\) does not have"):

        @traced("pay", attributes={"order.id": "order_id"})
        def pay(amount: int) -> None:
            pass

    with pytest.raises(TypeError, match="span name must be a non-empty string"):
        traced("")


def test_without_a_provider_traced_functions_just_run() -> None:
    app = Flask("shop")
    Observe(app, registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())

    @traced
    def double(x: int) -> int:
        assert not trace.get_current_span().is_recording()
        return x * 2

    with app.app_context():
        assert double(4) == 8


# -- modes --


def test_with_tracing_off_requests_get_no_span(registry: CollectorRegistry) -> None:
    spans = Spans()  # "off" makes no provider: @traced spans go to the one given
    app = _app(registry, spans, OBSERVE_TRACING_INSTRUMENTATION="off")
    response = app.test_client().post("/orders", json=ORDER)
    assert response.status_code == 201
    assert "traceresponse" not in response.headers
    names = {span.name for span in spans.finished()}
    spans.shutdown()
    assert "POST /orders" not in names
    assert "tests.test_tracing.process_order" in names


def test_an_app_already_instrumented_is_not_traced_twice(
    registry: CollectorRegistry, spans: Spans
) -> None:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    app = Flask("shop")

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> Any:
        return {"id": order_id}

    FlaskInstrumentor().instrument_app(app, tracer_provider=spans.provider)
    try:
        spans.observe(app, registry=registry)
        app.test_client().get("/orders/1")
        (server,) = [s for s in spans.finished() if s.kind is SpanKind.SERVER]
        assert server.name == "GET /orders/<int:order_id>"
        assert server.instrumentation_scope.name == "opentelemetry.instrumentation.flask"
    finally:
        FlaskInstrumentor().uninstrument_app(app)


# -- parity with opentelemetry-instrumentation-flask --


@pytest.fixture
def stable_http_conventions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The contrib instrumentation with the stable HTTP conventions, which it reads from the
    environment once per process unless told to read again."""
    from opentelemetry.instrumentation._semconv import (
        _OpenTelemetrySemanticConventionStability as Stability,
    )

    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    Stability._initialized = False
    yield
    Stability._initialized = False


PARITY_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/orders/42", {"headers": {"User-Agent": "probe/1.0"}}),
    ("POST", "/orders", {"json": ORDER}),
    ("GET", "/boom", {}),
    ("GET", "/teapot", {}),
    (
        "GET",
        "/orders/7",
        {"headers": {"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"}},
    ),
]

#: Attributes the contrib instrumentation sets that flask-observe leaves out on purpose:
#: the query string may carry secrets (the logs leave it out too).
NOT_COPIED = {"url.query"}


def _server_and_children(spans: Spans) -> tuple[Any, list[Any]]:
    (server,) = [s for s in spans.finished() if s.kind is SpanKind.SERVER]
    children = [
        s for s in spans.finished() if s.parent and s.parent.span_id == server.context.span_id
    ]
    return server, children


@pytest.mark.usefixtures("stable_http_conventions")
@pytest.mark.parametrize(("method", "path", "options"), PARITY_REQUESTS)
def test_native_spans_match_the_contrib_instrumentation(
    method: str, path: str, options: dict[str, Any]
) -> None:
    native_spans, contrib_spans = Spans(), Spans()
    native = _app(CollectorRegistry(), native_spans)
    contrib = _app(CollectorRegistry(), contrib_spans, OBSERVE_TRACING_INSTRUMENTATION="contrib")
    assert getattr(contrib, "_is_instrumented_by_opentelemetry", False)
    for app in (native, contrib):
        app.test_client().open(path, method=method, **options)
    ours, ours_children = _server_and_children(native_spans)
    theirs, their_children = _server_and_children(contrib_spans)
    assert theirs.instrumentation_scope.name == "opentelemetry.instrumentation.flask"
    assert ours.name == theirs.name
    assert ours.kind is theirs.kind is SpanKind.SERVER
    assert ours.status.status_code is theirs.status.status_code
    assert ours.status.description == theirs.status.description
    assert [e.name for e in ours.events] == [e.name for e in theirs.events]
    their_attributes = {k: v for k, v in theirs.attributes.items() if k not in NOT_COPIED}
    assert dict(ours.attributes) == their_attributes
    assert (ours.parent is None) == (theirs.parent is None)
    if theirs.parent is not None:
        assert ours.parent.span_id == theirs.parent.span_id
        assert ours.context.trace_id == theirs.context.trace_id
    assert sorted(s.name for s in ours_children) == sorted(s.name for s in their_children)
    for spans in (native_spans, contrib_spans):
        spans.provider.shutdown()


@pytest.mark.usefixtures("stable_http_conventions")
def test_in_contrib_mode_logs_metrics_and_headers_follow_its_span(
    registry: CollectorRegistry, spans: Spans, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(registry, spans, OBSERVE_TRACING_INSTRUMENTATION="contrib")
    response = app.test_client().post("/orders", json=ORDER)
    server, _children = _server_and_children(spans)
    trace_id = format(server.context.trace_id, "032x")
    span_id = format(server.context.span_id, "016x")
    assert (
        response.headers["traceresponse"]
        == f"00-{trace_id}-{span_id}-{server.context.trace_flags:02x}"
    )
    access = next(line for line in log_lines(capsys) if line["logger"] == "flask_observe.access")
    assert (access["trace_id"], access["span_id"]) == (trace_id, span_id)


def test_a_method_outside_the_standard_ones_is_named_http(
    registry: CollectorRegistry, spans: Spans
) -> None:
    app = Flask("shop")

    @app.route("/cache/<key>", methods=["PURGE"])
    def purge(key: str) -> str:
        return "purged"

    spans.observe(app, registry=registry)
    assert app.test_client().open("/cache/a", method="PURGE").status_code == 200
    (server,) = spans.finished()
    assert server.name == "HTTP /cache/<key>"
    assert server.attributes["http.request.method"] == "_OTHER"
    assert server.attributes["http.request.method_original"] == "PURGE"


def test_incoming_baggage_is_current_in_the_view(registry: CollectorRegistry, spans: Spans) -> None:
    from opentelemetry import baggage

    app = Flask("shop")
    seen: dict[str, Any] = {}

    @app.get("/")
    def index() -> str:
        seen["tenant"] = baggage.get_baggage("tenant")
        return "ok"

    spans.observe(app, registry=registry)
    app.test_client().get(
        "/",
        headers={
            "traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01",
            "baggage": "tenant=acme",
        },
    )
    assert seen["tenant"] == "acme"


def test_the_span_name_may_be_given_by_keyword(spans: Spans) -> None:
    app = Flask("shop")
    spans.observe(app, registry=CollectorRegistry())

    @traced(name="by.keyword")
    def work() -> int:
        return 1

    with app.app_context():
        assert work() == 1
    assert spans.named("by.keyword").end_time is not None
    with pytest.raises(TypeError, match="give the span name once"):
        traced("one", name="two")


def test_the_filter_serves_a_handler_of_ones_own(spans: Spans) -> None:
    import io
    import logging

    from flask_observe.logs import TraceContextFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s trace=%(trace_id)s span=%(span_id)s"))
    handler.addFilter(TraceContextFilter())
    logger = logging.getLogger("own.handler")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("outside")
        with spans.provider.get_tracer("test").start_as_current_span("inside") as span:
            logger.warning("inside")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    outside, inside = stream.getvalue().splitlines()
    assert outside == "outside trace= span="
    context = span.get_span_context()
    assert inside == f"inside trace={context.trace_id:032x} span={context.span_id:016x}"


# -- no provider anywhere --

NO_PROVIDER_SCRIPT = """
import json
from flask import Flask
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from flask_observe import Observe

app = Flask("shop")
app.config.update(OBSERVE_TRACING_SETUP="never", OBSERVE_LOG_JSON=False, OBSERVE_ACCESS_LOG=False)
seen = []

@app.get("/")
def index():
    context = trace.get_current_span().get_span_context()
    seen.append([format(context.trace_id, "032x"), context.is_remote])
    return "ok"

Observe(app, registry=CollectorRegistry())
client = app.test_client()
plain = client.get("/")
parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
carried = client.get("/", headers={"traceparent": parent})
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # the application sets its own, after Observe
traced = client.get("/")
print(json.dumps({
    "seen": seen,
    "headers": [r.headers.get("traceresponse") for r in (plain, carried, traced)],
    "spans": [s.name for s in exporter.get_finished_spans()],
}))
"""


def test_without_a_provider_a_request_only_passes_its_trace_context_on() -> None:
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", NO_PROVIDER_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    (plain, carried, traced) = facts["seen"]
    assert plain == ["0" * 32, False]  # nothing current: no span was made
    assert carried == ["ab" * 16, True]  # the incoming context is current, as it came
    assert facts["headers"][:2] == [None, "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"]
    # Once the application sets a provider, requests are traced through it.
    assert traced[0] != "0" * 32
    assert facts["spans"] == ["GET /"]
    assert facts["headers"][2] is not None
