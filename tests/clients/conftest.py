"""Fixtures of the client tests: service B on a real server of 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..conftest import serving
from .helpers import backend


@pytest.fixture(scope="module")
def b_url() -> Iterator[str]:
    """The base URL of service B, served for the module's tests."""
    with serving(backend()) as port:
        yield f"http://127.0.0.1:{port}"
