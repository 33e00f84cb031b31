"""The HTTP metric contract: names, types, labels and values after known requests."""

from __future__ import annotations

import http.client
import random
import string
import threading
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from .conftest import AppFactory, OrderError, sample_value, scrape, serving

REQUEST_LABELS = {"method", "endpoint", "status"}
ROUTE_LABELS = {"method", "endpoint"}


def assert_one_500(registry: CollectorRegistry, endpoint: str, exception: str) -> None:
    """One GET on *endpoint* ended as a 500, counted with its exception class."""
    labels = {"method": "GET", "endpoint": endpoint}
    assert registry.get_sample_value("http_requests_total", {**labels, "status": "500"}) == 1.0
    assert (
        registry.get_sample_value(
            "http_request_exceptions_total", {**labels, "exception": exception}
        )
        == 1.0
    )
    assert registry.get_sample_value("http_requests_in_progress", labels) == 0.0


CONTRACT = {
    # family name in OpenMetrics: (type, labels, the sample name users query)
    "http_requests": ("counter", REQUEST_LABELS, "http_requests_total"),
    "http_request_duration_seconds": (
        "histogram",
        ROUTE_LABELS,
        "http_request_duration_seconds_bucket",
    ),
    "http_requests_in_progress": ("gauge", ROUTE_LABELS, "http_requests_in_progress"),
    "http_request_size_bytes": ("histogram", ROUTE_LABELS, "http_request_size_bytes_count"),
    "http_response_size_bytes": ("histogram", ROUTE_LABELS, "http_response_size_bytes_sum"),
    "flask_observe": ("info", {"service", "version"}, "flask_observe_info"),
}


def test_contract_names_types_and_labels_in_openmetrics(client: Any) -> None:
    client.get("/orders/7")
    families = scrape(client, Accept="application/openmetrics-text; version=1.0.0")
    for name, (kind, labels, _sample) in CONTRACT.items():
        family = families[name]
        assert family.type == kind, name
        assert family.samples, name
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                assert set(sample.labels) - {"le"} == labels, (name, sample)
    # Declared before any exception has happened.
    assert families["http_request_exceptions"].type == "counter"
    info = families["flask_observe"].samples[0]
    assert info.labels["service"] == "shop"
    assert info.labels["version"]


def test_contract_sample_names_in_the_text_format(client: Any) -> None:
    client.get("/orders/7")
    response = client.get("/metrics")
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    names = {sample.name for family in scrape(client).values() for sample in family.samples}
    for _kind, _labels, sample_name in CONTRACT.values():
        assert sample_name in names


def test_known_sequence_gives_exact_values(client: Any, registry: CollectorRegistry) -> None:
    for _ in range(3):
        assert client.get("/orders/7").status_code == 200
    assert client.get("/orders/0").status_code == 404
    assert client.post("/orders", json={"items": [1, 2]}).status_code == 201
    assert client.get("/boom").status_code == 500
    assert client.get("/async").get_json() == {"async": "yes"}
    response = client.get("/stream")
    assert response.data == b"x" * 300
    response.close()
    assert client.get("/does/not/exist").status_code == 404

    families = scrape(client)
    requests = families["http_requests"]
    expect = [
        ("GET", "/orders/<int:order_id>", "200", 3.0),
        ("GET", "/orders/<int:order_id>", "404", 1.0),
        ("POST", "/orders", "201", 1.0),
        ("GET", "/boom", "500", 1.0),
        ("GET", "/async", "200", 1.0),
        ("GET", "/stream", "200", 1.0),
        ("GET", "<unmatched>", "404", 1.0),
    ]
    for method, endpoint, status, count in expect:
        got = sample_value(requests, "_total", method=method, endpoint=endpoint, status=status)
        assert got == count, (method, endpoint, status)
    total = sum(s.value for s in requests.samples if s.name == "http_requests_total")
    assert total == 9.0  # the scrape itself is excluded

    duration = families["http_request_duration_seconds"]
    count = sample_value(duration, "_count", method="GET", endpoint="/orders/<int:order_id>")
    assert count == 4.0
    exceptions = families["http_request_exceptions"]
    assert sample_value(
        exceptions, "_total", method="GET", endpoint="/boom", exception="OrderError"
    ) == (1.0)
    assert len([s for s in exceptions.samples if s.name.endswith("_total")]) == 1

    request_size = families["http_request_size_bytes"]
    assert sample_value(request_size, "_sum", method="POST", endpoint="/orders") == float(
        len(b'{"items": [1, 2]}')
    )
    response_size = families["http_response_size_bytes"]
    assert sample_value(response_size, "_sum", method="GET", endpoint="/stream") == 300.0

    in_progress = families["http_requests_in_progress"]
    assert all(s.value == 0 for s in in_progress.samples)


def test_default_buckets_are_the_seed_plus_the_latency_threshold(client: Any) -> None:
    client.get("/orders/1")
    duration = scrape(client)["http_request_duration_seconds"]
    bounds = sorted({float(s.labels["le"]) for s in duration.samples if s.name.endswith("_bucket")})
    assert bounds == [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, float("inf")]


def test_custom_buckets_and_threshold(app_factory: AppFactory, registry: CollectorRegistry) -> None:
    app = app_factory(OBSERVE_BUCKETS=[0.1, 0.3, 1.2])
    app.test_client().get("/orders/1")
    le = {
        s.labels["le"]
        for m in registry.collect()
        if m.name == "http_request_duration_seconds"
        for s in m.samples
        if s.name.endswith("_bucket")
    }
    assert le == {"0.1", "0.3", "1.2", "+Inf"}


def test_propagated_exception_is_still_a_500(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory(PROPAGATE_EXCEPTIONS=True)
    with pytest.raises(OrderError):
        app.test_client().get("/boom")
    assert_one_500(registry, "/boom", "OrderError")


def test_handled_http_errors_are_not_exceptions(client: Any, registry: CollectorRegistry) -> None:
    client.get("/orders/0")
    assert not [
        s
        for m in registry.collect()
        if m.name == "http_request_exceptions"
        for s in m.samples
        if s.name.endswith("_total")
    ]


def test_streamed_response_is_measured_to_the_end_of_its_body(
    client: Any, registry: CollectorRegistry
) -> None:
    labels = {"method": "GET", "endpoint": "/stream"}
    response = client.get("/stream")
    # The body is produced after the view returned; until it closes, the request is in flight.
    assert registry.get_sample_value("http_requests_in_progress", labels) == 1.0
    assert response.get_data() == b"x" * 300
    response.close()
    assert registry.get_sample_value("http_requests_in_progress", labels) == 0.0
    # Three chunks with 10 ms sleeps between them.
    assert registry.get_sample_value("http_request_duration_seconds_sum", labels) >= 0.03
    response.close()  # a second close finishes nothing twice
    assert registry.get_sample_value("http_request_duration_seconds_count", labels) == 1.0


def test_stream_with_context_finishes_once(client: Any, registry: CollectorRegistry) -> None:
    response = client.get("/stream-context")
    assert response.get_data() == b"hello world"
    response.close()
    labels = {"method": "GET", "endpoint": "/stream-context"}
    assert registry.get_sample_value("http_request_duration_seconds_count", labels) == 1.0
    assert registry.get_sample_value("http_response_size_bytes_sum", labels) == 11.0


def test_head_of_a_streamed_response_finishes(client: Any, registry: CollectorRegistry) -> None:
    client.head("/stream").close()
    labels = {"method": "HEAD", "endpoint": "/stream", "status": "200"}
    assert registry.get_sample_value("http_requests_total", labels) == 1.0


def test_failure_in_the_middle_of_a_stream_is_a_500(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory()

    @app.get("/broken-stream")
    def broken_stream() -> Any:
        def body() -> Any:
            yield b"first"
            raise OrderError("lost the database")

        return app.response_class(body())

    response = app.test_client().get("/broken-stream")
    with pytest.raises(OrderError):
        response.get_data()
    response.close()
    assert_one_500(registry, "/broken-stream", "OrderError")


def test_in_progress_counts_the_request_being_served(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory()
    seen: dict[str, Any] = {}

    @app.get("/slow")
    def slow() -> str:
        seen["in_progress"] = registry.get_sample_value(
            "http_requests_in_progress", {"method": "GET", "endpoint": "/slow"}
        )
        return "ok"

    app.test_client().get("/slow")
    assert seen["in_progress"] == 1.0
    assert (
        registry.get_sample_value(
            "http_requests_in_progress", {"method": "GET", "endpoint": "/slow"}
        )
        == 0.0
    )


def _series_count(registry: CollectorRegistry) -> int:
    return sum(len(metric.samples) for metric in registry.collect())


def test_unmatched_path_scan_adds_no_series(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    # 10,000 access lines would only slow this down; test_logs checks them under load.
    client = app_factory(OBSERVE_ACCESS_LOG=False).test_client()
    client.get("/no-such-page")
    before = _series_count(registry)
    rng = random.Random(1234)
    alphabet = string.ascii_letters + string.digits + "-._~%/"
    for _ in range(10_000):
        path = "/x" + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        client.get(path)
    assert _series_count(registry) == before
    assert (
        registry.get_sample_value(
            "http_requests_total", {"method": "GET", "endpoint": "<unmatched>", "status": "404"}
        )
        == 10_001.0
    )


def test_made_up_methods_share_one_label_value(client: Any, registry: CollectorRegistry) -> None:
    for i in range(50):
        client.open("/orders/1", method=f"BREW{i}")
    value = registry.get_sample_value(
        "http_requests_total",
        {"method": "_OTHER", "endpoint": "/orders/<int:order_id>", "status": "405"},
    )
    assert value == 50.0


def test_method_not_allowed_is_labelled_with_the_route(
    client: Any, registry: CollectorRegistry
) -> None:
    assert client.delete("/orders/1").status_code == 405
    assert client.get("/orders").status_code == 405
    for method, endpoint in (("DELETE", "/orders/<int:order_id>"), ("GET", "/orders")):
        labels = {"method": method, "endpoint": endpoint, "status": "405"}
        assert registry.get_sample_value("http_requests_total", labels) == 1.0, labels


def test_group_by_endpoint_uses_the_view_name(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory(OBSERVE_GROUP_BY="endpoint")
    app.test_client().get("/orders/5")
    assert (
        registry.get_sample_value(
            "http_requests_total", {"method": "GET", "endpoint": "get_order", "status": "200"}
        )
        == 1.0
    )


def test_excluded_paths_are_not_recorded(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory(OBSERVE_EXCLUDE_PATHS=["/orders", "/metrics"])
    client = app.test_client()
    client.get("/orders/5")
    client.post("/orders")
    client.get("/metrics")
    client.get("/async")
    endpoints = {
        s.labels["endpoint"]
        for m in registry.collect()
        if m.name == "http_requests"
        for s in m.samples
    }
    assert endpoints == {"/async"}


def test_metrics_and_health_paths_are_excluded_by_default(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory()

    @app.get("/healthz/live")
    def live() -> str:
        return "ok"

    client = app.test_client()
    client.get("/metrics")
    client.get("/healthz/live")
    assert _series_count_of(registry, "http_requests") == 0


def _series_count_of(registry: CollectorRegistry, name: str) -> int:
    return sum(len(m.samples) for m in registry.collect() if m.name == name)


def test_metrics_can_be_turned_off(app_factory: AppFactory, registry: CollectorRegistry) -> None:
    app = app_factory(OBSERVE_METRICS_ENABLED=False)
    client = app.test_client()
    client.get("/orders/1")
    assert client.get("/metrics").status_code == 404
    assert _series_count_of(registry, "http_requests") == 0


def test_blueprint_routes_are_labelled_with_their_full_template(
    registry: CollectorRegistry,
) -> None:
    from flask import Blueprint

    from flask_observe import Observe

    app = Flask("shop")
    api = Blueprint("api", __name__, url_prefix="/api/v1")

    @api.get("/users/<user_id>")
    def user(user_id: str) -> str:
        return user_id

    app.register_blueprint(api)
    Observe(app, registry=registry)
    app.test_client().get("/api/v1/users/42")
    assert (
        registry.get_sample_value(
            "http_requests_total",
            {"method": "GET", "endpoint": "/api/v1/users/<user_id>", "status": "200"},
        )
        == 1.0
    )


def test_counts_are_exact_under_concurrency(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    """8 threads x 500 requests through a threaded werkzeug server on 127.0.0.1, scraped
    all the while."""
    app = app_factory(OBSERVE_ACCESS_LOG=False)
    threads, per_thread = 8, 500
    failures: list[str] = []

    def hammer() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for i in range(per_thread):
                conn.request("GET", f"/orders/{i + 1}")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(str(response.status))
        finally:
            conn.close()

    labels = {"method": "GET", "endpoint": "/orders/<int:order_id>"}
    seen: list[tuple[float, float]] = []  # (requests counted, requests in progress)

    def scrape_meanwhile(workers: list[threading.Thread]) -> None:
        """Scrapes over HTTP while the requests run: each one parses and is consistent."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            while any(w.is_alive() for w in workers) and len(seen) < 200:
                conn.request("GET", "/metrics")
                body = conn.getresponse().read().decode()
                values = {
                    (s.name, s.labels.get("status")): s.value
                    for f in text_string_to_metric_families(body)
                    for s in f.samples
                    if s.labels.get("endpoint") == labels["endpoint"]
                }
                seen.append(
                    (
                        values.get(("http_requests_total", "200"), 0.0),
                        values.get(("http_requests_in_progress", None), 0.0),
                    )
                )
        except Exception as exc:  # reported by the assertion below
            failures.append(f"scrape: {exc!r}")
        finally:
            conn.close()

    with serving(app) as port:
        workers = [threading.Thread(target=hammer) for _ in range(threads)]
        scraper = threading.Thread(target=scrape_meanwhile, args=(workers,))
        for worker in workers:
            worker.start()
        scraper.start()
        for worker in [*workers, scraper]:
            worker.join(timeout=60)
        assert not any(worker.is_alive() for worker in [*workers, scraper])
    assert failures == []
    assert seen, "no scrape ran while the requests did"
    counted = [c for c, _ in seen]
    assert counted == sorted(counted), "a scrape saw fewer requests than the one before"
    assert all(0 <= busy <= threads for _, busy in seen)
    assert registry.get_sample_value("http_requests_total", {**labels, "status": "200"}) == 4000
    assert registry.get_sample_value("http_request_duration_seconds_count", labels) == 4000
    assert registry.get_sample_value("http_requests_in_progress", labels) == 0.0


def test_unhandled_exception_class_is_the_label(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory()

    @app.get("/zero")
    def zero() -> str:
        return str(1 / 0)

    app.test_client().get("/zero")
    assert_one_500(registry, "/zero", "ZeroDivisionError")


def test_error_handler_response_keeps_its_status_and_counts_the_exception(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    app = app_factory()

    @app.errorhandler(500)
    def on_500(error: Exception) -> Any:
        return {"error": "sorry"}, 500

    assert app.test_client().get("/boom").get_json() == {"error": "sorry"}
    assert_one_500(registry, "/boom", "OrderError")


def test_in_progress_is_exact_for_requests_held_in_their_views(
    app_factory: AppFactory, registry: CollectorRegistry
) -> None:
    """Four requests wait inside their view on real server threads; a scrape counts four."""
    app = app_factory()
    arrived, release = threading.Semaphore(0), threading.Event()

    @app.get("/held/<int:n>")
    def held(n: int) -> str:
        arrived.release()
        release.wait(timeout=10)
        return "done"

    labels = {"method": "GET", "endpoint": "/held/<int:n>"}
    statuses: list[int] = []

    def fetch(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", f"/held/{n}")
            statuses.append(conn.getresponse().status)
        finally:
            conn.close()

    with serving(app) as port:
        clients = [threading.Thread(target=fetch, args=(n,)) for n in range(4)]
        try:
            for client in clients:
                client.start()
            for _ in clients:
                assert arrived.acquire(timeout=10)
            families = scrape(app.test_client())
            assert sample_value(families["http_requests_in_progress"], **labels) == 4.0
        finally:
            release.set()
            for client in clients:
                client.join(timeout=10)
    assert statuses == [200] * 4
    assert registry.get_sample_value("http_requests_in_progress", labels) == 0.0
    assert registry.get_sample_value("http_requests_total", {**labels, "status": "200"}) == 4.0
