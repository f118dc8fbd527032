"""The real npm oidc-provider driven as the integration tests need it: its users, a counting tap in
front of it, its signing key for crafted tokens, and a code flow for another client (a CLI).

Shared by test_tokens.py, test_refresh.py, test_bearer.py and test_workers_shared_state.py; the
fixtures that start providers and proxies are in tests/integration/conftest.py.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from tests.factories import walk_login
from tests.support.nodeidp import NodeIdP, provider_login

__all__ = ["KUBECTL", "USERS", "IdPTap", "code_flow_id_token", "provider_key", "sign_in"]

KUBECTL = {
    "client_id": "kubectl",
    "client_secret": "kubectl-secret",
    "redirect_uris": ["http://127.0.0.1/cb"],
}


USERS: dict[str, dict[str, Any]] = {
    "alice": {
        "email": "alice@example.com",
        "email_verified": True,
        "preferred_username": "alice",
        "groups": ["admins", "dev"],
    },
    "bob": {"email": "bob@example.com", "email_verified": True, "preferred_username": "bob", "groups": []},
    # Keycloak's shape: roles nested under realm_access, plus a comma-separated group string
    # (released by the provider through its `extra_claims`).
    "kc": {
        "email": "kc@example.com",
        "email_verified": True,
        "preferred_username": "ops, audit",
        "realm_access": {"roles": ["realm-admin", "viewer"]},
        "team_csv": "ops, audit",
        "groups": [],
    },
    "nomail": {"email_verified": True, "preferred_username": "nomail", "groups": ["dev"]},
}


async def sign_in(browser: aiohttp.ClientSession, proxy: TestServer, login: str) -> aiohttp.ClientResponse:
    return await walk_login(browser, proxy.make_url("/"), "/who", provider_login, login=login)


class IdPTap:
    """A plain reverse proxy in front of the provider that counts requests by method and path, and
    the token endpoint's requests by grant type.

    `rewrite` may change a JSON answer of the token endpoint: used only for the Entra ID access
    token, which oidc-provider as configured here cannot issue (its access tokens are opaque).
    """

    def __init__(self, target: str) -> None:
        self.target = URL(target)
        self.seen: Counter[str] = Counter()
        self.grants: Counter[str] = Counter()
        self.rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.server: TestServer | None = None

    async def start(self, aiohttp_server: Any) -> IdPTap:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.server = await aiohttp_server(app)
        return self

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.seen[f"{request.method} {request.path}"] += 1
        body = await request.read()
        if _is_token_endpoint(request.path):
            form = dict(x.split("=", 1) for x in body.decode().split("&") if "=" in x)
            self.grants[form.get("grant_type", "")] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        try:
            async with aiohttp.ClientSession(auto_decompress=False) as http:
                url = self.target.with_path(request.path).with_query(request.query)
                async with http.request(request.method, url, data=body, headers=headers) as resp:
                    data = await resp.read()
                    status, ctype = resp.status, resp.headers.get("Content-Type", "")
        except aiohttp.ClientError:
            return web.Response(status=502, text="provider down")
        if self.rewrite is not None and _is_token_endpoint(request.path) and status == 200:
            data = json.dumps(self.rewrite(json.loads(data))).encode()
        return web.Response(status=status, body=data, headers={"Content-Type": ctype})


def _is_token_endpoint(path: str) -> bool:
    """oidc-provider's /token, Keycloak's /realms/NAME/protocol/openid-connect/token, Hydra's /oauth2/token"""
    return path == "/token" or path.endswith(("/openid-connect/token", "/oauth2/token"))


def provider_key(idp: NodeIdP) -> tuple[Any, str]:
    """The provider's current private signing key and kid, read from its key file (for crafted tokens)."""
    with open(idp.config["key_file"]) as f:
        first = json.load(f)["keys"][0]
    return jwt.PyJWK(first).key, first["kid"]


async def code_flow_id_token(idp: NodeIdP, client: dict[str, Any], login: str) -> str:
    """An ID token issued by the provider to another client (a CLI such as kubectl)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        meta = await (await s.get(idp.discovery_url)).json()
        redirect = client["redirect_uris"][0]
        query = {
            "client_id": client["client_id"],
            "response_type": "code",
            "scope": "openid email profile",
            "redirect_uri": redirect,
            "state": "s",
            "nonce": "n",
        }
        back = await provider_login(
            s, str(URL(meta["authorization_endpoint"]).with_query(query)), login=login
        )
        code = URL(back).query["code"]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
        auth = {"Authorization": aiohttp.encode_basic_auth(client["client_id"], client["client_secret"])}
        async with s.post(meta["token_endpoint"], data=form, headers=auth) as resp:
            reply = await resp.json()
            assert resp.status == 200, reply
            return str(reply["id_token"])
