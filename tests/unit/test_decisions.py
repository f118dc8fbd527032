"""Pure decisions: where to go back to after login, who may pass, what the upstream is told."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from oidcproxy.authz import Policy
from oidcproxy.login import safe_return_to
from oidcproxy.model import Identity, Tokens
from oidcproxy.proxy import (
    Bearer,
    HeaderPolicy,
    Route,
    Router,
    owned_header,
    strip_cookies,
    upstream_headers,
)


@pytest.mark.parametrize(
    "rd",
    ["//evil.com", "/\\evil.com", "https://evil.com", "/%2F%2Fevil.com", "/%252F%252Fevil.com",
     "/%5cevil.com", "/\x00x", "/\r\nSet-Cookie:x", "evil", "", None, "\\\\evil"],
)  # fmt: skip
def test_return_to_rejects_anything_off_site(rd: str | None) -> None:
    assert safe_return_to(rd) == "/"


@pytest.mark.parametrize("rd", ["/", "/app?x=1", "/a/b%20c?q=%2F", "/oauth2/userinfo"])
def test_return_to_keeps_local_paths(rd: str) -> None:
    assert safe_return_to(rd) == rd


def who(email: str, verified: bool = True) -> Identity:
    return Identity("s", email, verified, email, "", ())


@pytest.mark.parametrize(
    ("email", "allowed"),
    [
        ("a@example.com", True),
        ("A@EXAMPLE.COM", True),
        ("a@example.com.evil.org", False),
        ("a@evilexample.com", False),
        ("a@evil.org@example.com", False),
        ("a@sub.example.com", False),
        ("example.com", False),
        ("@example.com", False),
    ],
)
def test_email_domain_exact(email: str, allowed: bool) -> None:
    assert Policy.build(["example.com"], []).evaluate(who(email)).allowed is allowed


def test_subdomain_rule_and_wildcard_and_file() -> None:
    sub = Policy.build([".example.com"], [])
    assert sub.evaluate(who("a@x.example.com")).allowed
    assert not sub.evaluate(who("a@example.com")).allowed
    assert not sub.evaluate(who("a@xexample.com")).allowed
    assert Policy.build(["*"], []).evaluate(who("a@anything.org")).allowed
    listed = Policy.build([], ["Bob@Other.org"])
    assert listed.evaluate(who("bob@other.org")).allowed
    assert not listed.evaluate(who("carol@other.org")).allowed


def test_unverified_email_refused_unless_allowed() -> None:
    assert not Policy.build(["*"], []).evaluate(who("a@x.org", verified=False)).allowed
    assert Policy.build(["*"], [], allow_unverified_email=True).evaluate(who("a@x.org", False)).allowed


def test_header_policy_drops_hop_by_hop_forged_and_own_cookies() -> None:
    incoming = CIMultiDict(
        [
            ("Host", "app.example.com"),
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "1"),
            ("Keep-Alive", "5"),
            ("X-Forwarded-Email", "root@example.com"),
            ("x-forwarded-user", "root"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("Cookie", "_oidcproxy=abc; theme=dark; _oidcproxy_1=def; _oidcproxy_csrf_x=1"),
            ("Accept", "text/html"),
        ]
    )
    ident = Identity("s", "alice@example.com", True, "alice", "al", ("a", "b"))
    out = upstream_headers(
        incoming,
        policy=HeaderPolicy(bearer=Bearer(upstream=True)),
        identity=ident,
        tokens=Tokens("idtok", "acc"),
        peer="10.0.0.9",
        scheme="https",
        host="app.example.com",
    )
    assert "X-Secret-Hop" not in out and "Keep-Alive" not in out and "Connection" not in out
    assert out.getall("X-Forwarded-Email") == ["alice@example.com"]
    assert out.getall("X-Forwarded-User") == ["alice"]
    assert out.getall("X-Forwarded-For") == ["10.0.0.9"]
    assert out["X-Forwarded-Groups"] == "a,b"
    assert out["Authorization"] == "Bearer idtok"
    assert out["Cookie"] == "theme=dark"
    assert out["Accept"] == "text/html"


def test_strip_cookies_only_ours() -> None:
    assert strip_cookies("_oidcproxy=1; _oidcproxyx=2; a=b", "_oidcproxy") == "_oidcproxyx=2; a=b"


def test_router_longest_prefix() -> None:
    router = Router([Route.parse("http://a:1/"), Route.parse("http://b:2/api/")])
    assert str(router.match("/api/x").base) == "http://b:2/"  # type: ignore[union-attr]
    assert str(router.match("/apix").base) == "http://a:1/"  # type: ignore[union-attr]
    assert Router([Route.parse("http://b:2/api/")]).match("/other") is None


@pytest.mark.parametrize(
    "name",
    ["X_Forwarded_User", "x-forwarded_email", "X_FORWARDED_GROUPS", "X-Auth-Request-Whatever", "x_real_ip"],
)
def test_our_headers_are_owned_in_any_spelling(name: str) -> None:
    assert owned_header(name)
    incoming = CIMultiDict([(name, "forged"), ("X_Custom", "kept"), ("Authorization_", "kept")])
    out = upstream_headers(
        incoming, policy=HeaderPolicy(), identity=None, tokens=None, peer="10.0.0.9", scheme="https", host="h"
    )
    assert "forged" not in out.values()
    assert out["X_Custom"] == "kept" and out["Authorization_"] == "kept"


def test_authorization_is_owned_only_when_the_proxy_sends_one() -> None:
    assert not owned_header("authorization") and owned_header("AUTHORIZATION", authorization=True)
    sent = CIMultiDict([("Authorization", "Bearer theirs")])
    kept = upstream_headers(
        sent, policy=HeaderPolicy(), identity=None, tokens=None, peer="", scheme="", host=""
    )
    assert kept["Authorization"] == "Bearer theirs"
    ours = HeaderPolicy(bearer=Bearer(upstream=True))
    tokens = Tokens("idtok", "acc")
    out = upstream_headers(
        sent, policy=ours, identity=Identity("s"), tokens=tokens, peer="", scheme="", host=""
    )
    assert out.getall("Authorization") == ["Bearer idtok"]
    swapped = HeaderPolicy(bearer=Bearer(upstream=True, access_token=True))
    out = upstream_headers(
        sent, policy=swapped, identity=Identity("s"), tokens=tokens, peer="", scheme="", host=""
    )
    assert out.getall("Authorization") == ["Bearer acc"]
