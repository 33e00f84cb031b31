"""Who sees the console: loopback clients without forwarding headers when no token is set;
with a token, a bearer header or the login form's cookie; and every response's headers."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from flask_observe.console.access import COOKIE, SECURITY_HEADERS, cookie_value

from .conftest import ConsoleApp

TOKEN = "console-s3cret"
REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


def _get(client: FlaskClient, path: str = "/observe/", **environ: Any) -> Any:
    headers = environ.pop("headers", {})
    return client.get(path, headers=headers, environ_base=environ)


@pytest.mark.parametrize("path", ["/observe/", "/observe/api/routes", "/observe/logs"])
def test_a_local_client_sees_the_console_without_a_token(
    console_app: ConsoleApp, path: str
) -> None:
    response = _get(console_app().test_client(), path)
    assert response.status_code == 200
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


@pytest.mark.parametrize("address", ["::1", "127.0.0.5", "::ffff:127.0.0.1"])
def test_every_loopback_address_is_local(console_app: ConsoleApp, address: str) -> None:
    assert _get(console_app().test_client(), REMOTE_ADDR=address).status_code == 200


@pytest.mark.parametrize("path", ["/observe/", "/observe/api/logs", "/observe/traces/" + "a" * 32])
def test_a_remote_client_gets_a_404_as_if_there_were_no_console(
    console_app: ConsoleApp, path: str
) -> None:
    response = _get(console_app().test_client(), path, **REMOTE)
    assert response.status_code == 404
    assert b"console" not in response.data.lower()


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=203.0.113.9"},
        {"X-Real-IP": "203.0.113.9"},
        {"X-Forwarded-For": "127.0.0.1"},  # whatever it says: a proxy passed it on
    ],
)
def test_a_request_through_a_local_proxy_is_not_local(
    console_app: ConsoleApp, header: dict[str, str]
) -> None:
    assert _get(console_app().test_client(), headers=header).status_code == 404


@pytest.mark.parametrize("host", ["evil.example:5000", "10.0.0.1", "127.0.0.1.evil.example"])
def test_a_host_that_is_not_this_machine_is_refused(console_app: ConsoleApp, host: str) -> None:
    # DNS rebinding: a page's own name resolved to 127.0.0.1 would read the console.
    client = console_app().test_client()
    assert _get(client, headers={"Host": host}).status_code == 404


@pytest.mark.parametrize(
    "host", ["localhost:5000", "127.0.0.1:8000", "[::1]:5000", "app.localhost"]
)
def test_local_host_names_are_taken(console_app: ConsoleApp, host: str) -> None:
    assert _get(console_app().test_client(), headers={"Host": host}).status_code == 200


def test_with_a_token_a_bearer_header_opens_every_page(console_app: ConsoleApp) -> None:
    client = console_app(OBSERVE_CONSOLE_TOKEN=TOKEN).test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert _get(client, headers=auth, **REMOTE).status_code == 200
    assert _get(client, "/observe/api/routes", headers=auth, **REMOTE).status_code == 200


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"]
)
def test_with_a_token_anything_else_is_asked_to_log_in(
    console_app: ConsoleApp, authorization: Any
) -> None:
    client = console_app(OBSERVE_CONSOLE_TOKEN=TOKEN).test_client()
    headers = {} if authorization is None else {"Authorization": authorization}
    page = _get(client, headers=headers)  # local, too: the token is for everybody
    assert page.status_code == 401
    assert b'name="token"' in page.data
    assert page.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    api = _get(client, "/observe/api/traces", headers=headers)
    assert api.status_code == 401
    assert api.headers["WWW-Authenticate"] == "Bearer"
    assert "token" in api.get_json()["error"]


def test_the_login_form_sets_a_strict_http_only_cookie_that_is_not_the_token(
    console_app: ConsoleApp,
) -> None:
    client = console_app(OBSERVE_CONSOLE_TOKEN=TOKEN).test_client()
    assert client.get("/observe/login", environ_base=REMOTE).status_code == 200
    response = client.post("/observe/login", data={"token": TOKEN}, environ_base=REMOTE)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/observe/")
    cookie = response.headers["Set-Cookie"]
    assert f"{COOKIE}={cookie_value(TOKEN)}" in cookie
    assert TOKEN not in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/observe/" in cookie
    assert "Secure" not in cookie
    assert _get(client, **REMOTE).status_code == 200  # the client sends the cookie back


def test_the_cookie_is_secure_over_https(console_app: ConsoleApp) -> None:
    client = console_app(OBSERVE_CONSOLE_TOKEN=TOKEN).test_client()
    response = client.post("/observe/login", data={"token": TOKEN}, base_url="https://shop.example")
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_wrong_token_in_the_form_sets_nothing_and_says_so(console_app: ConsoleApp) -> None:
    client = console_app(OBSERVE_CONSOLE_TOKEN=TOKEN).test_client()
    response = client.post("/observe/login", data={"token": "guess<script>"})
    assert response.status_code == 401
    assert "Set-Cookie" not in response.headers
    assert b"That is not the token" in response.data
    assert b"guess" not in response.data


def test_a_forged_or_stale_cookie_opens_nothing(console_app: ConsoleApp) -> None:
    client = console_app(OBSERVE_CONSOLE_TOKEN=TOKEN).test_client()
    for value in (TOKEN, cookie_value("an-older-token"), "x"):
        client.set_cookie(COOKIE, value, path="/observe/")
        assert _get(client).status_code == 401


def test_logging_out_forgets_the_cookie(console_app: ConsoleApp) -> None:
    client = console_app(OBSERVE_CONSOLE_TOKEN=TOKEN).test_client()
    client.post("/observe/login", data={"token": TOKEN})
    assert _get(client).status_code == 200
    response = client.post("/observe/logout")
    assert response.status_code == 303
    assert _get(client).status_code == 401


def test_static_files_are_served_to_the_login_page(console_app: ConsoleApp) -> None:
    client = console_app(OBSERVE_CONSOLE_TOKEN=TOKEN).test_client()
    with client.get("/observe/static/console/console.css", environ_base=REMOTE) as response:
        assert response.status_code == 200
        assert response.mimetype == "text/css"


def test_without_a_token_the_login_form_leads_to_the_console(console_app: ConsoleApp) -> None:
    response = console_app().test_client().get("/observe/login")
    assert response.status_code == 303
