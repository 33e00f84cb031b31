"""prometheus_client's multiprocess mode: the same metrics as one process, and the checks.

prometheus_client decides how it stores values when it is first imported, from the
environment then; so the mode itself is tested in processes started with
``PROMETHEUS_MULTIPROC_DIR`` already set (here, and with real gunicorn workers in
``tests/e2e``), never by changing the environment of this one. Only the refusals at
``init_app`` are tested here in process: they happen before anything is recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from flask_observe import ConfigError

from . import scenario
from .conftest import AppFactory

ROOT = Path(__file__).resolve().parents[1]
ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"

Shape = dict[str, tuple[str, str, set[tuple[str, tuple[tuple[str, str], ...]]]]]


def python(
    args: list[str], multiproc_dir: Optional[Path], *, env: Optional[dict[str, str]] = None
) -> subprocess.CompletedProcess[str]:
    """Run Python in a process of its own, from the repository's root, with warnings as
    errors as in this suite and *multiproc_dir* as ``PROMETHEUS_MULTIPROC_DIR`` (unset for
    ``None``)."""
    environ = {**os.environ, **(env or {})}
    environ.pop(ENV_VAR, None)
    if multiproc_dir is not None:
        environ[ENV_VAR] = str(multiproc_dir)
    return subprocess.run(
        [sys.executable, "-W", "error", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def shape(families: Iterable[Metric]) -> Shape:
    """Family name -> its type, help and the (sample name, labels) of its samples, ``_created``
    series left out: the multiprocess files keep none."""
    found: Shape = {}
    for family in families:
        if family.name.endswith("_created"):  # the text format's gauge for a _created
            continue
        found[family.name] = (
            family.type,
            family.documentation,
            {
                (sample.name, tuple(sorted(sample.labels.items())))
                for sample in family.samples
                if not sample.name.endswith("_created")
            },
        )
    return found


#: Families whose values differ from run to run: times, and the process's own figures.
VARYING = ("duration", "wait_seconds", "process_")


def counts(families: Iterable[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample's value, but those of :data:`VARYING` families."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        if not any(part in family.name for part in VARYING)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


@pytest.fixture(scope="module")
def both_modes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """The scenario's scrapes in this process, and in one started in multiprocess mode."""
    multiproc_dir = tmp_path_factory.mktemp("multiproc")
    single, multi = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("multi")
    result = python(["-c", f"from tests.scenario import main; main({str(multi)!r})"], multiproc_dir)
    assert result.returncode == 0, result.stderr
    return {
        "single": scenario.run(CollectorRegistry(), str(single)),
        "multi": json.loads(result.stdout),
    }


@pytest.mark.parametrize(
    ("format_", "parse"), [("text", parse_text), ("openmetrics", parse_openmetrics)]
)
def test_both_modes_export_the_same_families_types_and_label_sets(
    both_modes: dict[str, dict[str, str]], format_: str, parse: Callable[[str], Any]
) -> None:
    single = shape(parse(both_modes["single"][format_]))
    multi = shape(parse(both_modes["multi"][format_]))
    assert sorted(multi) == sorted(single)
    for name in single:
        assert multi[name] == single[name], name
    # The contract's families are all there, with the samples the scenario made.
    assert {
        "http_requests",
        "http_request_duration_seconds",
        "http_requests_in_progress",
        "http_request_exceptions",
        "http_request_size_bytes",
        "http_response_size_bytes",
        "app_function_duration_seconds",
        "app_function_calls",
        "health_check_status",
        "health_check_duration_seconds",
        "flask_observe_errors",
        "flask_observe_spans_dropped",
        "db_pool_connections_in_use",
        "db_pool_connections_max",
        "db_pool_wait_seconds",
        "app_queue_depth",
        "app_queue_depth_errors",
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_threads",
        "http_client_requests",
        "http_client_request_duration_seconds",
    } <= set(single)
    assert all(samples for _type, _help, samples in single.values())


def test_saturation_adds_up_the_same_in_both_modes(
    both_modes: dict[str, dict[str, str]],
) -> None:
    """In multiprocess mode the pool's figures, the queues' depths and the process figures
    reach the files, and come out as one process gives them."""
    for mode in ("single", "multi"):
        families = {f.name: f for f in parse_openmetrics(both_modes[mode]["openmetrics"])}
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families.values()
            for s in f.samples
        }

        def value(name: str, samples: Any = samples, **labels: str) -> float:
            return float(samples[name, tuple(sorted(labels.items()))])

        assert value("db_pool_connections_in_use", pool="orders") == 2, mode
        assert value("db_pool_connections_max", pool="orders") == 3, mode
        assert value("app_queue_depth", queue="jobs") == 3, mode
        assert "broker" not in {s.labels.get("queue") for s in families["app_queue_depth"].samples}
        # Both scrapes read the broken depth: the second shows both failures.
        assert value("app_queue_depth_errors_total", queue="broker") == 2, mode
        assert value("process_resident_memory_bytes") > 0, mode
        assert value("process_cpu_seconds_total") > 0, mode
        assert value("process_threads") >= 1, mode


def test_both_modes_count_the_same(both_modes: dict[str, dict[str, str]]) -> None:
    single = counts(parse_openmetrics(both_modes["single"]["openmetrics"]))
    multi = counts(parse_openmetrics(both_modes["multi"]["openmetrics"]))
    assert multi == single
    total = sum(v for (name, _labels), v in single.items() if name == "http_requests_total")
    assert total == len(scenario.REQUESTS)


def test_flask_observe_info_keeps_its_info_type_in_multiprocess_mode(
    both_modes: dict[str, dict[str, str]],
) -> None:
    families = {f.name: f for f in parse_openmetrics(both_modes["multi"]["openmetrics"])}
    info = families["flask_observe"]
    assert info.type == "info"
    (sample,) = info.samples
    assert sample.name == "flask_observe_info"
    assert sample.labels["service"] == "shop"
    assert sample.value == 1.0


def test_exemplars_are_absent_in_multiprocess_mode_only(
    both_modes: dict[str, dict[str, str]],
) -> None:
    def exemplars(text: str) -> list[Any]:
        return [
            sample.exemplar
            for family in parse_openmetrics(text)
            for sample in family.samples
            if sample.exemplar is not None
        ]

    assert exemplars(both_modes["single"]["openmetrics"])
    assert exemplars(both_modes["multi"]["openmetrics"]) == []


#: As under gunicorn's preload_app: the app is made in a parent whose files are then
#: cleared (the on_starting hook), and a forked child serves the scrape.
FORKED = """
import os, sys
from flask_observe.gunicorn import clear_multiprocess_dir
from tests.conftest import make_app

app = make_app(None)
clear_multiprocess_dir()
pid = os.fork()
if pid == 0:
    response = app.test_client().get("/metrics")
    sys.stdout.write(response.get_data(as_text=True))
    sys.stdout.flush()
    os._exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_worker_forked_after_the_app_was_made_reports_the_info(tmp_path: Path) -> None:
    result = python(["-c", FORKED], tmp_path)
    assert result.returncode == 0, result.stderr
    families = {f.name: f for f in parse_text(result.stdout)}
    (sample,) = families["flask_observe_info"].samples
    assert sample.value == 1.0


#: An app with a registry of its own, and a @timed function called 3 times inside its app
#: context, 2 times outside any (a background thread's work, say), then once inside again.
INSIDE_AND_OUTSIDE = """
import sys
from prometheus_client import CollectorRegistry
from flask_observe import counted, timed
from tests.conftest import make_app

@timed
@counted
def reindex():
    pass

app = make_app(CollectorRegistry())
with app.app_context():
    for _ in range(3):
        reindex()
reindex()
reindex()
with app.app_context():
    reindex()
sys.stdout.write(app.test_client().get("/metrics").get_data(as_text=True))
"""


def test_calls_outside_an_app_context_add_up_with_the_apps_in_the_files(
    tmp_path: Path,
) -> None:
    # One process has one set of values per metric name and labels in the files; a second
    # family of the same name would write its own count over the first's.
    result = python(["-c", INSIDE_AND_OUTSIDE], tmp_path)
    assert result.returncode == 0, result.stderr
    samples = {
        sample.name: sample.value
        for family in parse_text(result.stdout)
        for sample in family.samples
        if sample.labels.get("function") == "__main__.reindex"
        and sample.labels.get("outcome") == "success"
    }
    assert samples["app_function_calls_total"] == 6
    assert samples["app_function_duration_seconds_count"] == 6


def test_the_values_flask_observe_writes_are_prometheus_clients_to_the_bit(
    tmp_path: Path,
) -> None:
    # The counters and histograms are written by flask-observe's own code, in files of its
    # own: the same requests through prometheus_client's metrics must leave the same keys
    # and values, and its collector must read the same samples (tests/multiprocess_values.py).
    result = python(["-m", "tests.multiprocess_values"], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    examples, files = result.stdout.split(";")
    assert int(examples.split()[0]) >= 50
    pid = files.split()[0].rsplit("_", 1)[1]
    assert set(files.split()) == {
        f"counter_{pid}",
        f"counter_observe_{pid}",
        f"histogram_{pid}",
        f"histogram_observe_{pid}",
        f"gauge_livesum_{pid}",
    }


#: Requests before and after a fork, in the parent and in the child: each process's values
#: go in its own files, as prometheus_client's do, and the scrape adds them up.
FORKED_REQUESTS = """
import os, sys
from prometheus_client import CollectorRegistry
from tests.conftest import make_app

app = make_app(CollectorRegistry())
client = app.test_client()
client.get("/orders/1")
pid = os.fork()
if pid == 0:
    for _ in range(3):
        app.test_client().get("/orders/1")
    os._exit(0)
os.waitpid(pid, 0)
client.get("/orders/1")
sys.stdout.write(client.get("/metrics").get_data(as_text=True))
"""


def test_a_fork_child_counts_in_files_of_its_own(tmp_path: Path) -> None:
    result = python(["-c", FORKED_REQUESTS], tmp_path)
    assert result.returncode == 0, result.stderr
    samples = {
        (sample.name, sample.labels.get("le")): sample.value
        for family in parse_text(result.stdout)
        for sample in family.samples
        if sample.labels.get("endpoint") == "/orders/<int:order_id>"
    }
    assert samples[("http_requests_total", None)] == 5
    assert samples[("http_request_duration_seconds_count", None)] == 5
    assert samples[("http_request_duration_seconds_bucket", "+Inf")] == 5
    assert samples[("http_requests_in_progress", None)] == 0
    own = sorted(p.name for p in tmp_path.glob("*_observe_*.db"))
    assert len(own) == 4, own  # counter and histogram files of two processes


# -- the refusals at init_app --


def refusal(app_factory: AppFactory) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        app_factory()
    assert raised.value.key == ENV_VAR
    assert str(raised.value).startswith(ENV_VAR)
    return raised.value


def test_a_missing_directory_is_refused_at_init_app(
    app_factory: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    error = refusal(app_factory)
    assert error.value == str(tmp_path / "missing")
    assert "an existing directory" in error.allowed


def test_a_file_is_no_directory(
    app_factory: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "a-file"))
    assert "an existing directory" in refusal(app_factory).allowed


def test_a_directory_no_file_can_be_written_in_is_refused(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not even root can make a file in /proc: a real unwritable directory for every user.
    monkeypatch.setenv(ENV_VAR, "/proc")
    assert "a directory this process can write files in" in refusal(app_factory).allowed


def test_a_variable_set_after_prometheus_client_was_imported_is_refused(
    app_factory: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert "before prometheus_client is first imported" in refusal(app_factory).allowed


def test_the_deprecated_lower_case_variable_alone_is_refused(tmp_path: Path) -> None:
    result = python(
        ["-c", "from tests.conftest import make_app; make_app(None)"],
        None,
        env={"prometheus_multiproc_dir": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "ConfigError: PROMETHEUS_MULTIPROC_DIR = None is invalid" in result.stderr
    assert "prometheus_multiproc_dir" in result.stderr
