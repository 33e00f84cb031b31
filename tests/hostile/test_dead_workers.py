"""The files of dead workers are folded into archives: no count is lost, and the directory
does not grow with every worker that ever lived.

The files are prometheus_client's own format (flask-observe's own files too), written with
its ``MmapedDict`` as its multiprocess values write them, one set per simulated worker PID;
what a scrape makes of the directory is read with its ``MultiProcessCollector`` before and
after.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from flask_observe.multiprocess import compact_dead_worker

#: (file kind, metric, sample name, help): one series of each kind a worker may write.
SERIES = [
    ("counter", "orders", "orders_total", "Orders."),
    ("histogram", "latency", "latency_sum", "Latency."),
    ("histogram", "latency", "latency_bucket", "Latency."),
    ("gauge_sum", "queued", "queued", "Queued."),
    ("gauge_max", "peak", "peak", "Peak."),
    ("gauge_min", "low", "low", "Low."),
    ("gauge_mostrecent", "last", "last", "Last."),
    ("gauge_all", "per_process", "per_process", "Per process."),
    ("gauge_livesum", "in_progress", "in_progress", "In progress."),
    # flask-observe's own files of the HTTP counters and histograms.
    ("counter_observe", "served", "served_total", "Served."),
    ("histogram_observe", "took", "took_bucket", "Took."),
]


def write_worker(directory: Path, pid: int, values: list[float]) -> None:
    """Write one worker's files: one value per series, timestamps growing with the PID."""
    files: dict[str, Any] = {}
    for (kind, metric, sample, help_text), value in zip(SERIES, values):
        mapped = files.get(kind)
        if mapped is None:
            mapped = files[kind] = MmapedDict(str(directory / f"{kind}_{pid}.db"))
        labels = {"route": "/orders"}
        if sample.endswith("_bucket"):
            labels["le"] = "0.5"
        key = mmap_key(metric, sample, list(labels), list(labels.values()), help_text)
        mapped.write_value(key, value, float(pid))
    for mapped in files.values():
        mapped.close()


def scraped(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    collector = MultiProcessCollector(None, str(directory))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in collector.collect()
        for sample in metric.samples
    }


VALUES = st.lists(st.floats(0, 1e6, allow_nan=False), min_size=len(SERIES), max_size=len(SERIES))


@settings(max_examples=40, deadline=None)
@given(workers=st.lists(VALUES, min_size=2, max_size=5), dying=st.data())
def test_folding_dead_workers_keeps_what_a_scrape_reads(
    tmp_path_factory: Any, workers: list[list[float]], dying: st.DataObject
) -> None:
    directory = tmp_path_factory.mktemp("multiproc")
    pids = list(range(100, 100 + len(workers)))
    for pid, values in zip(pids, workers):
        write_worker(directory, pid, values)
    dead = dying.draw(st.lists(st.sampled_from(pids), unique=True, min_size=1))
    before = scraped(directory)
    for pid in dead:
        compact_dead_worker(pid, str(directory))
    after = scraped(directory)
    for (name, labels), value in before.items():
        labels_of = dict(labels)
        if name in ("per_process", "in_progress"):
            # Per process, or live only: the dead processes' are gone, the rest unchanged.
            if name == "per_process":
                assert (labels_of["pid"] in map(str, dead)) == ((name, labels) not in after)
            continue
        # Added in another order than the scrape adds them: equal but for the last bit.
        assert after[(name, labels)] == pytest.approx(value, rel=1e-12), name
    # Only live workers' files and the archives are left.
    names = set(os.listdir(directory)) - {".flask-observe.lock"}
    assert not any(f"_{pid}.db" in name for name in names for pid in dead)
    assert all(name.endswith(("_archive.db",)) or "_1" in name for name in names)


def test_archives_stay_few_however_many_workers_die(tmp_path: Path) -> None:
    for pid in range(1000, 1200):
        write_worker(tmp_path, pid, [1.0] * len(SERIES))
        compact_dead_worker(pid, str(tmp_path))
    archives = sorted(os.listdir(tmp_path))
    assert archives == [
        ".flask-observe.lock",
        "counter_archive.db",
        "gauge_max_archive.db",
        "gauge_min_archive.db",
        "gauge_mostrecent_archive.db",
        "gauge_sum_archive.db",
        "histogram_archive.db",
    ]
    totals = scraped(tmp_path)
    route = (("route", "/orders"),)
    assert totals[("orders_total", route)] == 200.0
    assert totals[("latency_count", route)] == 200.0
    assert totals[("queued", route)] == 200.0
    assert totals[("peak", route)] == 1.0
    assert totals[("served_total", route)] == 200.0
    assert totals[("took_bucket", (("le", "0.5"), *route))] == 200.0


def test_files_of_other_kinds_and_other_pids_are_left_alone(tmp_path: Path) -> None:
    write_worker(tmp_path, 7, [1.0] * len(SERIES))
    write_worker(tmp_path, 77, [1.0] * len(SERIES))
    (tmp_path / "notes_7.db").write_bytes(b"")
    (tmp_path / "unrelated.txt").write_text("x")
    compact_dead_worker(7, str(tmp_path))
    left = set(os.listdir(tmp_path))
    assert {"notes_7.db", "unrelated.txt", "counter_77.db"} <= left
    assert "counter_7.db" not in left
    assert "counter_observe_7.db" not in left
    assert "histogram_observe_77.db" in left
