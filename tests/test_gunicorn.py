"""The gunicorn hooks, on a real directory of files named as prometheus_client names them.

gunicorn itself runs them in ``tests/e2e``; here the server and worker are stand-ins with
the two attributes the hooks read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from flask_observe.gunicorn import child_exit, clear_multiprocess_dir, on_starting, when_ready

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
LOG = logging.getLogger("tests.gunicorn")


#: The request count each worker's counter file holds.
COUNTED = {"42": 5.0, "43": 7.0}
KEY = mmap_key("http_requests", "http_requests_total", ["status"], ["200"], "Requests.")


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A multiprocess directory with the files of workers 42 and 43, and two strangers."""
    for name in (
        "counter_42.db",
        "counter_43.db",
        "histogram_42.db",
        "gauge_livesum_42.db",
        "gauge_livemax_42.db",
        "gauge_livemostrecent_42.db",
        "gauge_livesum_43.db",
    ):
        written = MmapedDict(str(tmp_path / name))
        if name.startswith("counter_"):
            written.write_value(KEY, COUNTED[name[8:10]], 0.0)
        written.close()
    (tmp_path / "notes.txt").write_bytes(b"")
    (tmp_path / "kept.db").mkdir()
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    return tmp_path


def names(path: Path) -> set[str]:
    return {entry.name for entry in path.iterdir()}


def test_on_starting_removes_the_files_of_an_earlier_run(
    files: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, LOG.name):
        on_starting(SimpleNamespace(master_pid=0, log=LOG))
    assert names(files) == {"notes.txt", "kept.db"}
    assert "removed 7 metric files of an earlier run" in caplog.text


def test_when_ready_is_the_same_hook_for_configs_with_their_own_on_starting() -> None:
    assert when_ready is on_starting


def test_a_new_master_beside_a_running_one_keeps_the_files(files: Path) -> None:
    before = names(files)
    on_starting(SimpleNamespace(master_pid=1234, log=LOG))  # started by USR2
    assert names(files) == before


def test_child_exit_drops_the_dead_workers_live_gauges_and_keeps_its_counts(files: Path) -> None:
    child_exit(SimpleNamespace(log=LOG), SimpleNamespace(pid=42))
    assert names(files) == {
        ".flask-observe.lock",
        "counter_archive.db",
        "histogram_archive.db",
        "counter_43.db",
        "gauge_livesum_43.db",
        "notes.txt",
        "kept.db",
    }
    counters = [str(files / "counter_archive.db"), str(files / "counter_43.db")]
    (family,) = MultiProcessCollector.merge(counters)
    (sample,) = family.samples
    assert sample.value == COUNTED["42"] + COUNTED["43"]  # the dead worker's count kept


def test_clearing_needs_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR is not set"):
        clear_multiprocess_dir()


def test_clearing_needs_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match="is not a directory: create it first"):
        clear_multiprocess_dir()
