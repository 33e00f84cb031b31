"""Who may see the console.

Without :data:`OBSERVE_CONSOLE_TOKEN`, only a client on a loopback address whose request
carries no forwarding header (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``): behind a
proxy on the same host every request arrives from a loopback address, so a forwarded one
is somebody else's. The ``Host`` must name the machine itself as well (``localhost`` or a
loopback address): a web page the developer visits could otherwise have its own name
resolve to 127.0.0.1 (DNS rebinding) and read the console as if it were its own origin.
Anybody else gets a 404, as if there were no console.

With a token, every client must present it: ``Authorization: Bearer <token>``, or the
cookie the console's login form sets. The cookie holds an HMAC of the token, never the
token, and is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (a browser sends it
only with requests that start on the console's own site, so another site cannot make a
logged-in browser post to the console: the form's CSRF protection) and ``Secure`` when the
request came over HTTPS. Tokens and cookies are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Optional

from flask import Request, Response

from ..exposition import bearer_matches, client_ips

__all__ = [
    "COOKIE",
    "FORWARDING_HEADERS",
    "SECURITY_HEADERS",
    "cookie_value",
    "is_local",
    "secure",
    "verdict",
]

#: The cookie of a console login.
COOKIE = "flask_observe_console"
#: Headers that say a proxy forwarded the request: the client is not the peer.
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")

#: Every console response: its pages load only what the app serves (no inline script, no
#: other origin), are never framed, cached or sent on as a referrer.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _loopback(address: Optional[str]) -> bool:
    return any(ip.is_loopback for ip in client_ips(address))


def _local_host(host: str) -> bool:
    """Whether a ``Host`` header names this machine: ``localhost`` (or a name below it,
    which resolvers keep local) or a loopback address, with any port."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    return _loopback(name)


def is_local(request: Request) -> bool:
    """Whether *request* comes from this machine, directly: see the module's docstring."""
    if any(header in request.headers for header in FORWARDING_HEADERS):
        return False
    return _loopback(request.remote_addr) and _local_host(request.host)


def cookie_value(token: str) -> str:
    """What the login cookie holds for *token*: an HMAC-SHA256 of a fixed message under
    the token, so the cookie is worthless once the token changes, and tells nothing of it."""
    return hmac.new(token.encode("utf-8"), b"flask-observe console", hashlib.sha256).hexdigest()


def verdict(request: Request, token: Optional[str]) -> Optional[str]:
    """``None`` if *request* may see the console; else why not: ``"hidden"`` (no token
    is set and the request is not local) or ``"login"`` (a token is set and the request
    does not carry it)."""
    if token is None:
        return None if is_local(request) else "hidden"
    if bearer_matches(request.headers.get("Authorization"), token):
        return None
    cookie = request.cookies.get(COOKIE)
    if cookie is not None and hmac.compare_digest(
        cookie.encode("utf-8", "replace"), cookie_value(token).encode("ascii")
    ):
        return None
    return "login"


def secure(response: Response) -> Response:
    """*response* with :data:`SECURITY_HEADERS`."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response
