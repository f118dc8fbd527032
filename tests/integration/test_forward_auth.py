"""/oauth2/auth for ingresses other than NGINX: the original request from X-Forwarded-Method/-Uri
(trusted peers only) or from the path after /oauth2/auth (Envoy's path_prefix); a bare 401 unless
--forward-auth-redirect. Caddy itself runs in tests/e2e/test_caddy.py."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from oidcproxy.web.app import build_app
from tests.factories import make_settings

HTML = {"Accept": "text/html"}


async def _proxy(aiohttp_server: Any, **overrides: Any) -> TestServer:
    values: dict[str, Any] = {"reverse_proxy": True, "skip_auth_route": ["GET=^/public/"], **overrides}
    server: TestServer = await aiohttp_server(build_app(make_settings(**values)))
    return server


async def test_by_default_an_unauthenticated_browser_gets_a_bare_401(aiohttp_server: Any) -> None:
    proxy = await _proxy(aiohttp_server)
    async with aiohttp.ClientSession() as client:
        asked = {**HTML, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/dash"}
        response = await client.get(proxy.make_url("/oauth2/auth"), headers=asked, allow_redirects=False)
        assert response.status == 401
        public = {**HTML, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/public/a?b=1"}
        response = await client.get(proxy.make_url("/oauth2/auth"), headers=public, allow_redirects=False)
        assert response.status == 202


async def test_forwarded_uri_from_an_untrusted_peer_is_ignored(aiohttp_server: Any) -> None:
    proxy = await _proxy(aiohttp_server, trusted_proxy_ip=["10.0.0.0/8"], forward_auth_redirect=True)
    async with aiohttp.ClientSession() as client:
        public = {**HTML, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/public/a"}
        response = await client.get(proxy.make_url("/oauth2/auth"), headers=public, allow_redirects=False)
        assert response.status == 401  # neither skipped nor redirected: the original is unknown


async def test_envoy_path_prefix_names_the_original_request(aiohttp_server: Any) -> None:
    proxy = await _proxy(aiohttp_server, trusted_proxy_ip=["10.0.0.0/8"], forward_auth_redirect=True)
    async with aiohttp.ClientSession() as client:
        public = await client.get(proxy.make_url("/oauth2/auth/public/a?b=1"), allow_redirects=False)
        assert public.status == 202
        posted = await client.post(proxy.make_url("/oauth2/auth/public/a"), allow_redirects=False)
        assert posted.status == 401  # the rule is GET only; Envoy asks with the original method
        page = await client.get(proxy.make_url("/oauth2/auth/dash?x=1"), headers=HTML, allow_redirects=False)
        assert page.status == 302
        assert page.headers["Location"].startswith("/oauth2/start?rd=http%3A%2F%2F127.0.0.1%3A")
        assert page.headers["Location"].endswith("%2Fdash%3Fx%3D1")
