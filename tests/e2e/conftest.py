"""Fixtures for the end-to-end tests: gunicorn masters that the test stops by PID."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Callable, Optional

import pytest

from .servers import Gunicorn

#: The app of :mod:`tests.e2e.app`, whose routes answer with known statuses.
E2E_APP = "tests.e2e.app:create_app()"

StartGunicorn = Callable[..., Gunicorn]


@pytest.fixture
def start_gunicorn(tmp_path: Path) -> Iterator[StartGunicorn]:
    """``start_gunicorn(app=E2E_APP, *, workers=4, env=None, args=())``: a gunicorn master
    with the example's ``gunicorn.conf.py`` on a free port of 127.0.0.1 and a fresh
    multiprocess directory, returned once every worker runs and one answers; each is
    stopped by its PID when the test ends, whatever happened."""
    started: list[Gunicorn] = []

    def start(
        app: str = E2E_APP,
        *,
        workers: int = 4,
        env: Optional[Mapping[str, str]] = None,
        args: tuple[str, ...] = (),
    ) -> Gunicorn:
        workdir = tmp_path / f"gunicorn-{len(started)}"
        workdir.mkdir()
        server = Gunicorn(app, workdir, workers=workers, env=env, args=args)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in reversed(started):
        server.stop()
