"""Run by ``tests/test_multiprocess.py`` in a process of its own, started with
``PROMETHEUS_MULTIPROC_DIR`` set: proves that the values flask-observe writes in its own
files for the HTTP counters and histograms are those prometheus_client's metrics write.

For each example hypothesis makes (a list of finished requests), the requests are recorded
twice: by :class:`~flask_observe.multiprocess.MultiprocessRecorder`, and by prometheus_client's
``Counter`` and ``Histogram`` as a user would make them, with the same names, labels, help
and buckets. Each example has routes of its own, so the files of earlier examples do not
matter: the keys of its routes, read back from both pairs of files with prometheus_client's
reader, must be the same keys with the same values, to the bit. At the end the directory's
files are split in two directories, flask-observe's and prometheus_client's, and
prometheus_client's collector must read the same samples from each.

Prints the number of examples checked; exits non-zero on the first difference.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import shutil
import sys
import tempfile
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

from flask_observe.config import DEFAULT_SIZE_BUCKETS, SEED_BUCKETS
from flask_observe.metrics import HTTP_HELP, ROUTE_LABELS
from flask_observe.multiprocess import MultiprocessRecorder
from flask_observe.observation import Observation

DIRECTORY = os.environ["PROMETHEUS_MULTIPROC_DIR"]
PID = os.getpid()

ours = MultiprocessRecorder(CollectorRegistry(), SEED_BUCKETS, DEFAULT_SIZE_BUCKETS)

# prometheus_client's own, on no registry: the reference.
requests = Counter(
    "http_requests", HTTP_HELP["http_requests"], (*ROUTE_LABELS, "status"), registry=None
)
exceptions = Counter(
    "http_request_exceptions",
    HTTP_HELP["http_request_exceptions"],
    (*ROUTE_LABELS, "exception"),
    registry=None,
)
histograms = {
    name: Histogram(name, HTTP_HELP[name], ROUTE_LABELS, buckets=buckets, registry=None)
    for name, buckets in (
        ("http_request_duration_seconds", SEED_BUCKETS),
        ("http_request_size_bytes", DEFAULT_SIZE_BUCKETS),
        ("http_response_size_bytes", DEFAULT_SIZE_BUCKETS),
    )
}

examples = itertools.count()


def reference(observation: Observation) -> None:
    labels = (observation.method, observation.endpoint)
    histograms["http_request_duration_seconds"].labels(*labels).observe(observation.duration)
    histograms["http_request_size_bytes"].labels(*labels).observe(observation.request_size)
    histograms["http_response_size_bytes"].labels(*labels).observe(observation.response_size or 0)
    requests.labels(*labels, str(observation.status or 500)).inc()
    if observation.exception is not None:
        exceptions.labels(*labels, observation.exception).inc()


def values(kind: str, own: bool, endpoints: set[str]) -> dict[str, tuple[float, float]]:
    """The values of *endpoints* in this process's file of *kind*, flask-observe's or not."""
    name = f"{kind}_observe_{PID}.db" if own else f"{kind}_{PID}.db"
    path = os.path.join(DIRECTORY, name)
    return {
        key: (value, timestamp)
        for key, value, timestamp, _pos in MmapedDict.read_all_values_from_file(path)
        if any(f'"endpoint": {json.dumps(endpoint)}' in key for endpoint in endpoints)
    }


def bits(found: dict[str, tuple[float, float]]) -> dict[str, tuple[str, str]]:
    """Values compared to the bit (``float.hex``), a NaN equal to a NaN."""
    return {key: (value.hex(), timestamp.hex()) for key, (value, timestamp) in found.items()}


BOUNDS = sorted({*SEED_BUCKETS, *DEFAULT_SIZE_BUCKETS})
durations = st.one_of(
    st.floats(min_value=0, max_value=1e4, allow_nan=False), st.sampled_from(SEED_BUCKETS)
)
sizes = st.one_of(
    st.integers(min_value=0, max_value=10**9),
    st.sampled_from([int(b) for b in DEFAULT_SIZE_BUCKETS]),
    st.sampled_from([int(b) + 1 for b in DEFAULT_SIZE_BUCKETS]),
)
requests_made = st.lists(
    st.tuples(
        st.sampled_from(["GET", "POST", "DELETE"]),
        st.sampled_from(["/a", "/orders/<int:id>", '/quote"d\\', "/caf\u00e9"]),
        durations,
        sizes,
        st.one_of(st.none(), sizes),
        st.one_of(st.none(), st.sampled_from([200, 201, 404, 500, 503])),
        st.one_of(st.none(), st.sampled_from(["ValueError", "TimeoutError"])),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, database=None)
@given(requests_made)
def check(made: list[tuple[Any, ...]]) -> None:
    example = next(examples)
    endpoints: set[str] = set()
    for method, endpoint, duration, request_size, response_size, status, exception in made:
        observation = Observation(0.0, {})
        observation.method = method
        observation.endpoint = f"{example}{endpoint}"
        observation.duration = duration
        observation.request_size = request_size
        observation.response_size = response_size
        observation.status = status
        observation.exception = exception
        endpoints.add(observation.endpoint)
        ours.routed(observation)
        ours.finish(observation)
        reference(observation)
    for kind in ("counter", "histogram"):
        expected = bits(values(kind, False, endpoints))
        found = bits(values(kind, True, endpoints))
        assert found == expected, (kind, found, expected)


def collected(path: str) -> list[Any]:
    """Every sample prometheus_client's collector reads in *path*, sorted."""
    return sorted(
        (sample.name, sorted(sample.labels.items()), sample.value)
        for family in MultiProcessCollector(None, path).collect()  # type: ignore[no-untyped-call]
        if family.type != "gauge"
        for sample in family.samples
    )


def main() -> None:
    check()
    theirs, own = tempfile.mkdtemp(), tempfile.mkdtemp()
    try:
        for kind in ("counter", "histogram"):
            shutil.copy(os.path.join(DIRECTORY, f"{kind}_{PID}.db"), theirs)
            shutil.copy(
                os.path.join(DIRECTORY, f"{kind}_observe_{PID}.db"),
                os.path.join(own, f"{kind}_{PID}.db"),
            )
        expected, found = collected(theirs), collected(own)
        assert expected, "prometheus_client's collector read nothing"
        assert found == expected
    finally:
        shutil.rmtree(theirs)
        shutil.rmtree(own)
    files = sorted(os.path.basename(f) for f in glob.glob(os.path.join(DIRECTORY, "*.db")))
    print(next(examples), "examples;", " ".join(files))


if __name__ == "__main__":
    sys.exit(main())
