"""Real servers for the end-to-end tests: gunicorn on 127.0.0.1, and a plain HTTP client.

Every process is started here with :class:`subprocess.Popen` and stopped by its PID
(``SIGTERM``, then ``SIGKILL`` after a bound, then waited for). gunicorn listens on a socket
the test binds to port 0 and hands over as ``fd://N``, so no port is picked and then
raced for; :func:`free_port` is for programs that take only a port number.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Callable, Optional, TypeVar

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
#: The example's gunicorn config: its hooks are the ones under test.
GUNICORN_CONF = ROOT / "example_app" / "gunicorn.conf.py"
#: Seconds any one HTTP request may take.
HTTP_TIMEOUT = 10.0
#: Seconds a server may take to start answering, and to stop.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], Optional[T]], timeout: float) -> T:
    """Call *check* until it returns something other than ``None`` or ``False``, at most
    *timeout* seconds; fail naming *what* otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 a moment ago, for a program that binds it itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Reply:
    """One HTTP response, read in full."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def request(
    port: int,
    method: str,
    path: str,
    *,
    body: Optional[bytes] = None,
    headers: Optional[Mapping[str, str]] = None,
) -> Reply:
    """Send one request to 127.0.0.1:*port* on a connection of its own, read the whole
    response, and close the connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def scrape(port: int, path: str = "/metrics") -> dict[str, Metric]:
    """GET the metrics page in the Prometheus text format, parsed by prometheus_client."""
    reply = request(port, "GET", path)
    assert reply.status == 200, reply.text
    return {family.name: family for family in text_string_to_metric_families(reply.text)}


def children(pid: int) -> set[int]:
    """The PIDs of the live child processes of *pid*, from ``/proc``."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found.update(int(child) for child in (task / "children").read_text().split())
    return found


def _alive(pid: int) -> bool:
    """Whether *pid* runs and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """``SIGTERM`` the process, ``SIGKILL`` it if it is still running after *timeout*, and
    wait for it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


class Gunicorn:
    """A gunicorn master started by a test, with its workers and its multiprocess directory.

    :param app: the app, as gunicorn takes it (``"tests.e2e.app:create_app()"``).
    :param workdir: a fresh directory for this server: the multiprocess files go in
        ``prometheus-multiproc`` there and gunicorn's output in ``gunicorn.log``.
    :param workers: how many worker processes.
    :param env: variables added to the environment of the server.
    :param args: more gunicorn command-line options.
    """

    def __init__(
        self,
        app: str,
        workdir: Path,
        *,
        workers: int = 4,
        env: Optional[Mapping[str, str]] = None,
        args: Iterable[str] = (),
    ) -> None:
        self.workers = workers
        self.multiproc_dir = workdir / "prometheus-multiproc"
        self.multiproc_dir.mkdir()
        self.log_path = workdir / "gunicorn.log"
        # gunicorn >= 25.1 opens a control socket in XDG_RUNTIME_DIR, else in ~/.gunicorn,
        # where every server on the machine would use the same one.
        environ = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(self.multiproc_dir),
            "XDG_RUNTIME_DIR": str(workdir),
        }
        environ.update(env or {})
        with contextlib.ExitStack() as stack:
            listener = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            self.port: int = listener.getsockname()[1]
            log = stack.enter_context(self.log_path.open("wb"))
            command = [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(GUNICORN_CONF),
                "--workers",
                str(workers),
                "--bind",
                f"fd://{listener.fileno()}",
                "--graceful-timeout",
                "5",
                *args,
                app,
            ]
            # The socket is the child's now; this process's copy closes with the stack.
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
            )
        self.pid = self.process.pid
        #: Every worker PID seen, so that :meth:`stop` can make sure none outlives the test.
        self._seen: set[int] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """What gunicorn and its workers have written so far."""
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> set[int]:
        """The PIDs of the master's live workers."""
        pids = {pid for pid in children(self.pid) if _alive(pid)}
        self._seen |= pids
        return pids

    def wait_ready(self, timeout: float = START_TIMEOUT, exclude: Iterable[int] = ()) -> set[int]:
        """Wait until all the workers run (none of *exclude* among them) and one answers
        ``/healthz/live``; return the workers' PIDs."""
        gone = set(exclude)

        def ready() -> Optional[set[int]]:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"gunicorn exited with {self.process.returncode}:\n{self.log()}"
                )
            pids = self.worker_pids()
            if len(pids) != self.workers or pids & gone:
                return None
            try:
                answered = request(self.port, "GET", "/healthz/live").status == 200
            except OSError:
                return None
            return pids if answered else None

        try:
            return wait_for("gunicorn's workers to answer", ready, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log()}") from None

    def request(self, method: str, path: str, *, body: Optional[bytes] = None) -> Reply:
        return request(self.port, method, path, body=body)

    def scrape(self) -> dict[str, Metric]:
        return scrape(self.port)

    def stop(self) -> None:
        """Stop the master by its PID and wait for it; then make sure no worker it had is
        left running (a master that had to be killed cannot stop its workers)."""
        self.worker_pids()
        stop_process(self.process)
        for pid in self._seen:
            with contextlib.suppress(OSError):
                if _alive(pid) and b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
