"""The package ships the console: a wheel built from the tree (not an editable install)
holds its templates and static files, and serves the console from a fresh virtual
environment.

The wheel is built from a copy of the tree with the test environment's setuptools and
wheel (no network). The fresh environment has no pip and no packages of its own but the
wheel; flask and the other dependencies come from the test environment's site-packages,
added after its own by a ``.pth`` line, whose own ``.pth`` files (the editable install of
flask-observe among them) are not run. The served app proves which copy it imported.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from ..e2e.servers import request, stop_process, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
#: What a wheel is built from.
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "flask_observe")
#: Seconds the build may take.
BUILD_TIMEOUT = 180

SERVE = textwrap.dedent(
    """
    import sys

    from flask import Flask
    from prometheus_client import CollectorRegistry
    from werkzeug.serving import make_server

    import flask_observe
    from flask_observe import Observe

    app = Flask("wheel")
    app.config["OBSERVE_CONSOLE_ENABLED"] = True
    app.config["OBSERVE_TRACING_SETUP"] = "always"
    app.config["OBSERVE_TRACING_EXPORTER"] = "none"
    Observe(app, registry=CollectorRegistry())

    @app.get("/hello")
    def hello():
        return "hello"

    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(server.server_port, flask_observe.__file__, flush=True)
    server.serve_forever()
    """
)


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    dist = tmp_path / "dist"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(dist),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr
    (wheel,) = dist.glob("flask_observe-*.whl")
    return wheel


def _fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        timeout=60,
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        check=True,
        timeout=BUILD_TIMEOUT,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    # After the venv's own: its flask_observe is the wheel's; the rest is the suite's.
    deps = sysconfig.get_paths()["purelib"]
    (Path(site) / "zz_test_dependencies.pth").write_text(deps + "\n")
    return python


def test_the_wheel_holds_the_console_and_serves_it_from_a_fresh_venv(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for name in (
        "flask_observe/console/templates/console/layout.html",
        "flask_observe/console/templates/console/routes.html",
        "flask_observe/console/static/console/console.css",
        "flask_observe/py.typed",
    ):
        assert name in names

    python = _fresh_venv(tmp_path, wheel)
    script = tmp_path / "serve.py"
    script.write_text(SERVE)
    server = subprocess.Popen(
        [str(python), "-I", str(script)],  # -I: neither this tree nor PYTHON* variables
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline().decode().split()
        assert len(first) == 2, "the server did not start"
        port, imported = int(first[0]), first[1]
        assert imported.startswith(str(tmp_path / "venv")), imported
        assert wait_for("/hello", lambda: request(port, "GET", "/hello").status == 200, 30)
        page = request(port, "GET", "/observe/")
        assert page.status == 200
        assert "Routes" in page.text
        assert "/hello" in page.text
        style = request(port, "GET", "/observe/static/console/console.css")
        assert style.status == 200
        assert style.headers["content-type"].startswith("text/css")
        assert b"--accent" in style.body
    finally:
        stop_process(server)
        if server.stdout is not None:
            server.stdout.close()
