"""``python -m example_app.load``: a bounded burst of traffic for the order service.

Only the standard library: :mod:`urllib.request` and a few threads. The mix creates orders
(a few of them invalid), reads orders that exist and orders that do not, lists them, and asks
for paths the app does not have, so every metric of flask-observe has something to show. It
stops at the request count or the duration, whichever comes first, and only ever sends to
this machine's loopback addresses.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any, Optional

__all__ = ["LoadError", "check_arguments", "check_url", "is_loopback", "main", "run"]

#: Most threads :func:`run` will use: enough to show saturation, few enough to stay polite.
MAX_CONCURRENCY = 32
#: Seconds to wait for any one response.
TIMEOUT = 10.0

_SKUS = ("BOOK-0451", "MUG-0042", "PEN-0007", "SHIRT-0123", "LAMP-0999", "SOCKS-0002")
_UNMATCHED = ("/favicon.ico", "/admin", "/orders/latest", "/api/v1/orders", "/robots.txt")
_INVALID_BODIES: tuple[Any, ...] = (
    {"user_id": "alice", "items": [{"sku": "MUG-0042", "quantity": 1}], "total_cents": 1200},
    {"user_id": 7, "items": [], "total_cents": 0},
    {"user_id": 7, "items": [{"sku": "MUG-0042", "quantity": 0}], "total_cents": 1200},
    {"user_id": 7, "items": [{"sku": "", "quantity": 1}], "total_cents": -5},
    ["not", "an", "object"],
)
#: What each request does, and how often (weights add up to 100).
_MIX = (
    ("create", 40),
    ("create_invalid", 8),
    ("get", 25),
    ("get_missing", 10),
    ("list", 12),
    ("unmatched", 5),
)


class LoadError(ValueError):
    """The arguments of :func:`run` are unusable, or the URL is not on this machine."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and for addresses in 127.0.0.0/8 or ``::1``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """The base URL to send to, without a trailing slash.

    :raises LoadError: unless *url* is an ``http`` or ``https`` URL of a loopback host.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadError(f"{url!r} is not an http:// URL, such as http://127.0.0.1:5000")
    if not is_loopback(parts.hostname):
        raise LoadError(
            f"refusing to send traffic to {parts.hostname!r}: the load generator only sends to "
            "this machine's loopback addresses (127.0.0.0/8, localhost, ::1)"
        )
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise LoadError(f"{url!r} has an invalid port") from None
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report redirects as their status instead of following them off this machine."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Traffic:
    """Picks requests and sends them; shared by the worker threads."""

    def __init__(self, base: str) -> None:
        self.base = base
        # No proxies (a loopback request must stay on this machine) and no redirects.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        self.lock = threading.Lock()
        self.order_ids: list[int] = []

    def pick(self, rng: random.Random) -> tuple[str, str, Optional[bytes]]:
        """A request as ``(method, path, body)``."""
        kind = rng.choices([k for k, _ in _MIX], weights=[w for _, w in _MIX])[0]
        with self.lock:
            known = rng.choice(self.order_ids) if self.order_ids else None
        if kind == "get" and known is None:
            kind = "create"
        if kind == "create":
            items = [
                {"sku": sku, "quantity": rng.randint(1, 3)}
                for sku in rng.sample(_SKUS, rng.randint(1, 3))
            ]
            body = {
                "user_id": rng.randint(1, 50),
                "items": items,
                "total_cents": rng.randint(500, 20000),
            }
            return "POST", "/orders", json.dumps(body).encode()
        if kind == "create_invalid":
            if rng.random() < 0.2:
                return "POST", "/orders", b"{this is not json"
            return "POST", "/orders", json.dumps(rng.choice(_INVALID_BODIES)).encode()
        if kind == "get":
            return "GET", f"/orders/{known}", None
        if kind == "get_missing":
            return "GET", f"/orders/{rng.randint(10**8, 10**9)}", None
        if kind == "list":
            return "GET", f"/orders?limit={rng.choice((5, 20, 50))}", None
        return "GET", rng.choice(_UNMATCHED), None

    def send(self, method: str, path: str, body: Optional[bytes]) -> Optional[int]:
        """Send one request; its status, or None if no HTTP answer came back."""
        headers = {"Accept": "application/json", "User-Agent": "example_app.load"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.base + path, data=body, headers=headers, method=method
        )
        try:
            with self.opener.open(request, timeout=TIMEOUT) as response:
                status: int = response.status
                data = response.read()
        except urllib.error.HTTPError as error:
            with error:
                error.read()
            return error.code
        except (OSError, http.client.HTTPException):
            return None  # refused, reset or timed out (URLError is an OSError)
        if status == 201:
            try:
                order_id = json.loads(data).get("id")
            except (ValueError, AttributeError):
                order_id = None
            if isinstance(order_id, int):
                with self.lock:
                    self.order_ids.append(order_id)
        return status


def check_arguments(url: str, requests: int, duration: float, concurrency: int) -> str:
    """Check the arguments of :func:`run`; the base URL, as :func:`check_url` gives it.

    :raises LoadError: naming the argument that is out of range.
    """
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise LoadError(f"requests must be a positive integer, not {requests!r}")
    number = isinstance(duration, (int, float)) and not isinstance(duration, bool)
    if not (number and 0 < duration < float("inf")):
        raise LoadError(f"duration must be a positive number of seconds, not {duration!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise LoadError(f"concurrency must be an integer, not {concurrency!r}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise LoadError(f"concurrency must be from 1 to {MAX_CONCURRENCY}, not {concurrency}")

    return check_url(url)


def run(
    url: str,
    requests: int = 300,
    duration: float = 60.0,
    concurrency: int = 4,
    *,
    seed: Optional[int] = None,
) -> Counter[Optional[int]]:
    """Send up to *requests* requests for at most *duration* seconds, *concurrency* at a time.

    :param url: the app's base URL, on a loopback address.
    :param seed: makes the mix of requests repeatable.
    :returns: how many requests got each HTTP status; ``None`` counts those that got no
        answer (the connection was refused, reset or timed out).
    :raises LoadError: if the URL is not a loopback one, or a number is out of range.
    """
    base = check_arguments(url, requests, duration, concurrency)
    traffic = _Traffic(base)
    deadline = time.monotonic() + duration
    counts: Counter[Optional[int]] = Counter()
    issued = 0
    lock = threading.Lock()

    def worker(index: int) -> None:
        nonlocal issued
        rng = random.Random(None if seed is None else seed * 1000 + index)
        while True:
            with lock:
                if issued >= requests or time.monotonic() >= deadline:
                    return
                issued += 1
            status = traffic.send(*traffic.pick(rng))
            with lock:
                counts[status] += 1

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"load-{i}", daemon=True)
        for i in range(min(concurrency, requests))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def _summary(counts: Counter[Optional[int]], elapsed: float) -> str:
    total = sum(counts.values())
    rate = total / elapsed if elapsed > 0 else 0.0
    lines = [f"Sent {total} requests in {elapsed:.1f} s ({rate:.1f} per second)."]
    for status in sorted(s for s in counts if s is not None):
        lines.append(f"  {status}  {counts[status]:>6}")
    if counts[None]:
        lines.append(f"  no answer  {counts[None]}  (is the app running? python -m example_app)")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Parse the command line, send the traffic, and print a summary."""
    parser = argparse.ArgumentParser(
        prog="python -m example_app.load",
        description="Send a bounded burst of traffic to the example order service.",
    )
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="the app (loopback only)")
    parser.add_argument("--requests", type=int, default=300, help="most requests to send (300)")
    parser.add_argument("--duration", type=float, default=60.0, help="most seconds to run (60)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests at a time (4)")
    parser.add_argument("--seed", type=int, default=None, help="make the mix repeatable")
    args = parser.parse_args(argv)

    try:
        base = check_arguments(args.url, args.requests, args.duration, args.concurrency)
        print(
            f"Sending up to {args.requests} requests to {base} for at most "
            f"{args.duration:g} s, {args.concurrency} at a time...",
            flush=True,
        )
        start = time.monotonic()
        counts = run(base, args.requests, args.duration, args.concurrency, seed=args.seed)
    except LoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(_summary(counts, time.monotonic() - start))
    if sum(counts.values()) == counts[None]:
        return 1
    print(f"Now look at {base}/metrics")
    return 0


if __name__ == "__main__":
    sys.exit(main())
