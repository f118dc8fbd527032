"""The doctor's judgements on answers real providers give, and on edge and cookie settings.

The provider answers below are the shapes Keycloak, Entra ID, Google and Auth0 send for a redirect
URI they do not know (no such provider can run here; the npm oidc-provider and our own are tested
over sockets in tests/integration/test_doctor.py).
"""

from __future__ import annotations

import pytest

from oidcproxy.doctor.checks import clock_skew, cookie_security, redirect_verdict, trusted_proxies
from tests.factories import make_settings

CB = "https://app.example.com/oauth2/callback"


@pytest.mark.parametrize(
    ("status", "location", "body"),
    [
        (400, "", "<html><body><p>Invalid parameter: redirect_uri</p></body></html>"),  # Keycloak
        (200, "", "<div>AADSTS50011: The redirect URI specified in the request does not match</div>"),
        (400, "", "<h1>Error 400: redirect_uri_mismatch</h1>"),  # Google
        (
            302,
            "https://tenant.auth0.com/error?error=invalid_request&error_description=Callback%20URL%20mismatch",
            "",
        ),
    ],
)
def test_refusals_of_the_redirect_uri_are_named(status: int, location: str, body: str) -> None:
    finding = redirect_verdict(CB, status, location, body)
    assert finding.status == "problem" and f"refuses the redirect URI {CB}" in finding.summary
    assert finding.fix.startswith(f"register {CB} exactly")


@pytest.mark.parametrize(
    ("status", "location", "body"),
    [
        (302, "https://idp.example.com/interaction/abc", ""),  # oidc-provider, Auth0: login is next
        (200, "", '<form><input type="hidden" name="redirect_uri" value="x"></form>'),  # Keycloak login
        (302, f"{CB}?error=login_required&state=s", ""),  # prompt=none: the URI was accepted
    ],
)
def test_accepted_redirect_uris(status: int, location: str, body: str) -> None:
    assert redirect_verdict(CB, status, location, body).status == "ok"


def test_other_refusals_are_problems_too() -> None:
    back = redirect_verdict(CB, 302, f"{CB}?error=invalid_scope&error_description=groups", "")
    assert back.status == "problem" and "invalid_scope groups" in back.summary and "--scope" in back.fix
    client = redirect_verdict(CB, 400, "", '{"error":"invalid_client","error_description":"unknown"}')
    assert client.status == "problem" and "invalid_client: unknown" in client.summary
    assert "--client-id" in client.fix


def test_clock_skew_within_and_beyond_the_limit() -> None:
    date = "Sun, 06 Nov 1994 08:49:37 GMT"
    assert clock_skew(date, 784111777 + 3).status == "ok"
    late = clock_skew(date, 784111777 - 120)
    assert late.status == "problem" and "120 s behind" in late.summary
    assert clock_skew("", 0).status == "skipped"


def test_secure_cookies_against_the_external_scheme() -> None:
    assert cookie_security(make_settings(redirect_url=CB, cookie_secure=True)).status == "ok"
    lax = cookie_security(make_settings(redirect_url=CB, cookie_secure=False))
    assert lax.status == "problem" and lax.fix == "set --cookie-secure=true"
    plain = cookie_security(make_settings(redirect_url="http://app.example.com/oauth2/callback"))
    assert plain.status == "problem" and "https" in plain.fix
    assert cookie_security(make_settings(redirect_url="")).status == "note"


def test_an_ingress_whose_forwarded_headers_are_ignored() -> None:
    (finding,) = trusted_proxies(make_settings(redirect_url=CB, http_address="0.0.0.0:4180"))
    assert finding.status == "problem" and "X-Forwarded-* headers are ignored" in finding.summary
    assert finding.fix.startswith("start with --reverse-proxy and --trusted-proxy-ip=")
    loopback_only = make_settings(redirect_url=CB, http_address="0.0.0.0:4180", reverse_proxy=True)
    (finding,) = trusted_proxies(loopback_only)
    assert finding.status == "problem" and "127.0.0.0/8" in finding.fix


def test_a_trusted_ingress_and_a_trust_everyone_setting() -> None:
    good = make_settings(
        redirect_url=CB, http_address="0.0.0.0:4180", reverse_proxy=True, trusted_proxy_ip=["10.0.0.0/8"]
    )
    (finding,) = trusted_proxies(good)
    assert finding.status == "ok"
    assert "from 10.0.0.1" in finding.summary and "seen as https://app.example.com" in finding.summary
    anyone = make_settings(
        redirect_url=CB, http_address="0.0.0.0:4180", reverse_proxy=True, trusted_proxy_ip=["0.0.0.0/0"]
    )
    assert any(f.status == "problem" and "trusts every address" in f.summary for f in trusted_proxies(anyone))
