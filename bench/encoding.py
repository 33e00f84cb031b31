"""What encoding a batch of spans for OTLP costs: the SDK's encoder, and flask-observe's.

Run with ``make bench`` or ``python bench/encoding.py``. The spans are the SDK's own,
made and ended by a ``TracerProvider`` as a request span is: kind ``SERVER``, the ten
attributes of a ``GET /orders/42`` that flask-observe sets, a resource with
``service.name`` and the SDK's ``telemetry.sdk.*`` attributes, and an instrumentation
scope. Each round encodes the same batch with both encoders, in an order shuffled every
round, with the garbage collector paused:

- the SDK's: ``encode_spans(spans).SerializePartialToString()`` from
  opentelemetry-exporter-otlp-proto-common, what its OTLP/HTTP exporter sends;
- flask-observe's: ``flask_observe.export.encoder.encode_spans(spans)``.

Medians over the rounds, in microseconds per span, and the size of the request per span
(raw, and gzipped as with ``OTEL_EXPORTER_OTLP_COMPRESSION=gzip``). The two bodies are
checked to be the same bytes first. The numbers are for reading, not for CI.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any, Callable, Optional

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind

from flask_observe.export.encoder import encode_spans

#: The attributes of the server span of ``GET /orders/42``.
REQUEST_ATTRIBUTES = {
    "http.request.method": "GET",
    "url.scheme": "http",
    "server.address": "127.0.0.1",
    "server.port": 5000,
    "network.protocol.version": "1.1",
    "url.path": "/orders/42",
    "client.address": "127.0.0.1",
    "user_agent.original": "bench",
    "http.route": "/orders/<int:order_id>",
    "http.response.status_code": 200,
}


def request_spans(count: int) -> list[ReadableSpan]:
    """*count* ended request spans, as a batch processor hands them to its exporter."""
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    tracer = provider.get_tracer("flask_observe", version("flask-observe"))
    spans = []
    for _ in range(count):
        span = tracer.start_span(
            "GET /orders/<int:order_id>", kind=SpanKind.SERVER, attributes=REQUEST_ATTRIBUTES
        )
        span.end()
        spans.append(span)
    provider.shutdown()
    return spans  # type: ignore[return-value]  # the SDK's Span is a ReadableSpan


def _sdk(spans: Sequence[ReadableSpan]) -> bytes:
    return sdk_encode(spans).SerializePartialToString()


ENCODERS: dict[str, Callable[[Sequence[ReadableSpan]], bytes]] = {
    "sdk": _sdk,
    "flask_observe": encode_spans,
}


def _timed(encode: Callable[[Sequence[ReadableSpan]], Any], spans: list[ReadableSpan]) -> float:
    """Microseconds of CPU per span to encode *spans* once, with the garbage collector
    paused. CPU time, not wall time: the encoding never waits, and on a shared machine the
    time other processes take the CPU would count otherwise."""
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        encode(spans)
        return (time.process_time() - start) / len(spans) * 1e6
    finally:
        gc.enable()


def encoding_floor(batch: int = 512, rounds: int = 30, seed: int = 1) -> dict[str, float]:
    """Encode a batch of *batch* request spans *rounds* times with each encoder.

    :returns: ``sdk`` and ``flask_observe``, the median microseconds per span of each;
        ``bytes`` and ``gzip_bytes``, the request's size per span, raw and gzipped.
    """
    spans = request_spans(batch)
    body = encode_spans(spans)
    if body != _sdk(spans):
        raise SystemExit("flask-observe's encoding differs from the SDK's")
    for encode in ENCODERS.values():
        encode(spans)  # warm up: imports, caches
    order = list(ENCODERS)
    shuffle = random.Random(seed).shuffle
    times: dict[str, list[float]] = {name: [] for name in ENCODERS}
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            times[name].append(_timed(ENCODERS[name], spans))
    result = {name: statistics.median(values) for name, values in times.items()}
    result["bytes"] = len(body) / batch
    result["gzip_bytes"] = len(gzip.compress(body)) / batch
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=512, help="spans per batch (512)")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (30)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the round order (1)")
    args = parser.parse_args(argv)
    print(
        f"Python {platform.python_version()}, opentelemetry-sdk {version('opentelemetry-sdk')}, "
        f"protobuf {version('protobuf')}, flask-observe {version('flask-observe')}"
    )
    print(
        f"A request span with {len(REQUEST_ATTRIBUTES)} attributes, batches of {args.batch}: "
        f"{args.rounds} interleaved rounds, medians"
    )
    floor = encoding_floor(args.batch, args.rounds, args.seed)
    print(f"  {'':34}{'us/span':>10}")
    print(f"  {'SDK encoder (protobuf objects)':34}{floor['sdk']:>10.2f}")
    print(f"  {'flask-observe encoder':34}{floor['flask_observe']:>10.2f}")
    print(f"  {'':34}{floor['sdk'] / floor['flask_observe']:>9.1f}x faster")
    print(
        f"  the same bytes from both: {floor['bytes']:.1f} bytes/span, "
        f"{floor['gzip_bytes']:.1f} gzipped"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
