"""``python -m example_app``: serve the order service with werkzeug's threaded server, and
the inventory service it calls over HTTP next to it (on a free port of 127.0.0.1), unless
``EXAMPLE_INVENTORY_URL`` names one already."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Optional

from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from . import create_app
from .inventory import create_inventory_app
from .settings import INVENTORY_URL

__all__ = ["banner", "main"]


def _url_host(host: str) -> str:
    """*host* as it goes in a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def _loopback_for(host: str) -> Optional[str]:
    """The loopback address that reaches a server bound to *host*, if one does."""
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback:
        return host
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return None


def banner(
    host: str,
    port: int,
    metrics_path: Optional[str] = "/metrics",
    health_path: Optional[str] = "/healthz",
    inventory_url: Optional[str] = None,
    console_path: Optional[str] = None,
) -> str:
    """What to print before serving: the service's URLs and how to send it traffic."""
    base = f"http://{_url_host(host)}:{port}"
    lines = [
        "The flask-observe example order service is running.",
        f"  index    {base}/",
        f"  orders   {base}/orders",
    ]
    if metrics_path:
        lines.append(f"  metrics  {base}{metrics_path}")
    if health_path:
        lines.append(f"  health   {base}{health_path}")
    if console_path:
        lines.append(f"  console  {base}{console_path}/  (from this machine only)")
    if inventory_url:
        lines.append(f"  inventory service (called by the checkout)  {inventory_url}")
    loopback = _loopback_for(host)
    if loopback is not None:
        lines += [
            "Send it traffic from another terminal:",
            f"  {_python()} -m example_app.load --url http://{_url_host(loopback)}:{port}",
        ]
    else:
        lines.append(
            f"{_python()} -m example_app.load only sends traffic to this machine's loopback "
            "addresses; serve on 127.0.0.1 to use it."
        )
    lines.append("Press Ctrl+C to stop.")
    return "\n".join(lines)


@contextlib.contextmanager
def inventory_service() -> Iterator[str]:
    """Serve the inventory service on a free port of 127.0.0.1 in a thread; its URL. Its
    metrics stay apart from the order service's, and the order service's log handler
    writes its lines (one process, one handler: see :doc:`/example`)."""
    app = create_inventory_app({"OBSERVE_LOG_JSON": False}, registry=CollectorRegistry())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="inventory", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _python() -> str:
    """The interpreter serving the example, as another terminal can run it: ``make demo``'s
    is ``.venv/bin/python``, and a fresh Debian has no ``python`` on the PATH."""
    executable = sys.executable or "python3"
    try:
        relative = os.path.relpath(executable)
    except ValueError:  # another drive, on Windows
        return executable
    return relative if not relative.startswith("..") else executable


def main(argv: Optional[list[str]] = None) -> int:
    """Parse the command line, print the URLs, and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m example_app", description="Run the flask-observe example order service."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (5000)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be from 0 to 65535, not {args.port}")

    # flask-observe writes the app's log lines and one access line per request as JSON;
    # werkzeug's own line per request would say the same thing again, unstructured.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with contextlib.ExitStack() as stack:
        config: dict[str, str] = {}
        if not os.environ.get(INVENTORY_URL):
            try:
                config[INVENTORY_URL] = stack.enter_context(inventory_service())
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        status = _serve(args.host, args.port, config)
    return status


def _serve(host: str, port: int, config: dict[str, str]) -> int:
    try:
        app = create_app(config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    health_path = (
        app.config["OBSERVE_HEALTH_PATH"] if app.config["OBSERVE_HEALTH_ENABLED"] else None
    )
    settings = app.extensions["observe"].settings
    text = banner(
        host,
        server.server_port,
        app.config.get("OBSERVE_METRICS_PATH"),
        health_path,
        app.extensions["example_app"].settings.checkout.inventory_url,
        settings.console_path if settings.console_enabled else None,
    )
    print(text, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.extensions["example_app"].jobs.stop()
        app.extensions["example_app"].database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
