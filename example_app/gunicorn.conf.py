"""gunicorn settings for the order service in its production shape: ``make demo-prod``.

Four worker processes share their metrics through prometheus_client's multiprocess mode,
which needs ``PROMETHEUS_MULTIPROC_DIR`` set, to an existing directory, in the environment
gunicorn starts in (``make demo-prod`` makes one under a temporary folder)::

    PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) gunicorn -c example_app/gunicorn.conf.py

Options on the command line take precedence over these, as ``--bind`` does in the Makefile.
"""

from __future__ import annotations

from typing import Any

# gunicorn looks its hooks up by name in this module: these clear the metric files of an
# earlier run at start, and drop a dead worker's live gauges.
from flask_observe.gunicorn import child_exit, on_starting  # noqa: F401

wsgi_app = "example_app:create_app()"
bind = "127.0.0.1:5000"
workers = 4
# flask-observe writes one JSON access line per request; gunicorn's own would say it again.
accesslog = None


def when_ready(server: Any) -> None:
    """Print the service's URLs once gunicorn listens, as ``python -m example_app`` does."""
    from example_app.__main__ import banner

    address = server.LISTENERS[0].getsockname()
    if isinstance(address, tuple):  # not a Unix socket
        print(banner(address[0], address[1]), flush=True)
