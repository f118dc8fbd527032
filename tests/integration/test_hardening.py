"""Issue 10 through the real proxy: identity headers smuggled in other spellings, request targets that
name another host, and one meaning for --oidc-use-access-token in both topologies.

A real upstream (echo), the npm oidc-provider, and raw sockets where aiohttp's client would not send
what an attacker sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from oidcproxy.proxy import owned_header
from tests.factories import walk_login

pytestmark = pytest.mark.parametrize("provider", ["node"], indirect=True)

JSON = {"Accept": "application/json"}
# What an attacker sends, spelt as upstream stacks that fold `_` into `-` and ignore case read it.
FORGED = [
    ("X_Forwarded_User", "root"),
    ("x-forwarded_email", "root@example.com"),
    ("X_FORWARDED_GROUPS", "admins"),
    ("X-Forwarded_Preferred_Username", "root"),
    ("X_Forwarded_Access_Token", "forged"),
    ("X-Auth-Request-Email", "root@example.com"),
    ("X_Auth_Request_User", "root"),
    ("x-auth-request-access-token", "forged"),
    ("X-Auth-Request-Anything", "forged"),
    ("X_Forwarded_For", "6.6.6.6"),
    ("X_Real_IP", "6.6.6.6"),
    ("X_Request_Id", "forged"),
    ("Authorization_", "ignored"),  # not a name we own: passes
    ("X_Custom_Header", "kept"),  # underscores alone are fine: only our names are stripped
]


def _owned(seen: dict[str, Any], *, authorization: bool = False) -> list[tuple[str, str]]:
    """The headers the upstream got whose name the proxy owns in any spelling, normalised."""
    return sorted(
        (k.lower().replace("_", "-"), v)
        for k, v in seen["header_list"]
        if owned_header(k, authorization=authorization)
    )


async def test_forged_identity_headers_in_any_spelling_never_reach_the_upstream(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any
) -> None:
    proxy = await proxy_factory(pass_authorization_header=True, skip_auth_route=["^/public/"])
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    sent = [*FORGED, ("Authorization", "Bearer forged")]
    seen = await (await browser.get(proxy.make_url("/who"), headers=sent)).json()
    owned = dict(_owned(seen, authorization=True))
    assert owned["x-forwarded-email"] == "alice@example.com"
    assert owned["x-forwarded-user"] == "alice@example.com"
    assert owned["x-forwarded-groups"] == "admins,dev"
    assert owned["authorization"].startswith("Bearer ey")
    assert len(_owned(seen, authorization=True)) == len(owned), "one copy of each, ours"
    assert not [k for k in owned if k.startswith("x-auth-request-")]
    assert "forged" not in json.dumps(owned) and "6.6.6.6" not in json.dumps(owned)
    names = [k for k, _ in seen["header_list"]]
    assert "X_Custom_Header" in names and "Authorization_" in names

    # The same on a skip-auth route, where nobody is signed in: none of our names at all but ours.
    anonymous = await (await browser.get(proxy.make_url("/public/x"), headers=sent)).json()
    assert {k for k, _ in _owned(anonymous)} == {
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-request-id",  # ours: a client's id is not taken (README: Logs)
    }
    assert "forged" not in json.dumps(_owned(anonymous))
    assert "6.6.6.6" not in json.dumps(_owned(anonymous))


async def test_forged_identity_headers_stripped_on_websocket_upgrades(
    proxy: TestServer, browser: aiohttp.ClientSession, provider: Any
) -> None:
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    async with browser.ws_connect(proxy.make_url("/ws"), headers=FORGED) as ws:
        hello = (await ws.receive_json())["hello"]
    owned = {k.lower().replace("_", "-"): v for k, v in hello.items() if owned_header(k)}
    assert owned["x-forwarded-email"] == "alice@example.com"
    assert not [k for k in hello if "_" in k and owned_header(k)]
    assert not [k for k in owned if k.startswith("x-auth-request-")]


async def test_auth_answer_carries_only_the_sessions_identity(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any
) -> None:
    proxy = await proxy_factory(set_xauthrequest=True)
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    ok = await browser.get(proxy.make_url("/oauth2/auth"), headers=FORGED)
    assert ok.status == 202
    answer = [(k, v) for k, v in ok.headers.items() if owned_header(k)]
    assert dict(answer)["X-Auth-Request-Email"] == "alice@example.com"
    assert len(answer) == len(dict(answer)) and "forged" not in json.dumps(answer)


# --- request targets: only origin-form, and never another host ---------------------------------------


@pytest.fixture
async def canary(aiohttp_server: Any) -> TestServer:
    """Another host on the network: it must never hear from the proxy."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        hits.append(request.raw_path)
        return web.Response(text="canary")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server: TestServer = await aiohttp_server(app)
    server.hits = hits  # type: ignore[attr-defined]
    return server


async def raw(port: int, line: str, *headers: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request line over a plain socket, as aiohttp's client would never write it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = "\r\n".join([line, "Host: 127.0.0.1", "Connection: close", *headers]) + "\r\n\r\n"
        writer.write(head.encode("latin-1") + body)  # latin-1: a header may carry any byte
        answer = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    top, _, body = answer.partition(b"\r\n\r\n")
    return int(top.split()[1]), body


async def test_absolute_asterisk_and_authority_targets_get_400_and_reach_nobody(
    proxy_factory: Any, canary: TestServer, upstream: TestServer
) -> None:
    proxy = await proxy_factory(skip_auth_route=["^/"])
    other = f"127.0.0.1:{canary.port}"
    for line in (
        f"GET http://{other}/admin HTTP/1.1",
        f"GET https://{other}/admin HTTP/1.1",
        f"GET http://127.0.0.1:{proxy.port}/admin HTTP/1.1",
        "OPTIONS * HTTP/1.1",
        f"CONNECT {other} HTTP/1.1",
        f"GET {other} HTTP/1.1",
    ):
        status, body = await raw(proxy.port, line, "Accept: application/json")
        assert status == 400, (line, body)
    assert canary.hits == []  # type: ignore[attr-defined]


async def test_a_path_that_looks_like_a_host_stays_on_the_upstream(
    proxy_factory: Any, canary: TestServer, upstream: TestServer
) -> None:
    proxy = await proxy_factory(skip_auth_route=["^/"])
    target = f"//127.0.0.1:{canary.port}/admin"
    status, body = await raw(proxy.port, f"GET {target} HTTP/1.1")
    assert status == 200 and json.loads(body)["path"] == target
    assert canary.hits == []  # type: ignore[attr-defined]


# --- one meaning for --oidc-use-access-token ---------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [{}, {"pass_authorization_header": True, "set_authorization_header": True}],
    ids=["alone", "with-authorization-flags"],
)
async def test_use_access_token_gives_the_same_bearer_as_sidecar_and_behind_auth_request(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any, flags: dict[str, bool]
) -> None:
    proxy = await proxy_factory(
        oidc_use_access_token=True, pass_access_token=True, set_xauthrequest=True, **flags
    )
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    sidecar = (await (await browser.get(proxy.make_url("/who"), headers=JSON)).json())["headers"]
    access = sidecar["X-Forwarded-Access-Token"]
    assert sidecar["Authorization"] == f"Bearer {access}"
    auth = await browser.get(proxy.make_url("/oauth2/auth"))
    assert auth.status == 202
    assert auth.headers["X-Auth-Request-Access-Token"] == access
    assert auth.headers["Authorization"] == f"Bearer {access}"


async def test_without_use_access_token_both_topologies_send_the_id_token(
    proxy_factory: Any, browser: aiohttp.ClientSession, provider: Any
) -> None:
    proxy = await proxy_factory(
        pass_authorization_header=True, set_authorization_header=True, pass_access_token=True
    )
    await walk_login(browser, proxy.make_url("/"), "/", provider.login, login="alice")
    sidecar = (await (await browser.get(proxy.make_url("/who"), headers=JSON)).json())["headers"]
    auth = await browser.get(proxy.make_url("/oauth2/auth"))
    assert sidecar["Authorization"] == auth.headers["Authorization"]
    assert sidecar["Authorization"] != f"Bearer {sidecar['X-Forwarded-Access-Token']}"
    assert sidecar["Authorization"].startswith("Bearer ey")  # a JWT: the ID token


async def test_an_unknown_expect_gets_417_not_500(proxy_factory: Any, upstream: TestServer) -> None:
    """Found by tests/property: aiohttp's own 417 quoted a non-ASCII Expect and failed with a 500."""
    proxy = await proxy_factory(skip_auth_route=["^/"])
    for value in ("\x80", "something-else"):
        status, _ = await raw(proxy.port, "GET /x HTTP/1.1", f"Expect: {value}")
        assert status == 417, value
    status, answer = await raw(
        proxy.port, "POST /x HTTP/1.1", "Expect: 100-Continue", "Content-Length: 2", body=b"hi"
    )
    assert status == 100 and b"HTTP/1.1 200" in answer
