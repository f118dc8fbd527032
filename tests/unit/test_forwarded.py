"""Trusted forwarded headers, host whitelists, rd targets and path normalisation: pure decisions."""

from __future__ import annotations

import logging

import pytest

from oidcproxy.forwarded import Edge, External, normalise_path, parse_forwarded
from oidcproxy.login import return_target

XF = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "dash.example.com", "X-Forwarded-For": "203.0.113.9"}


def test_forwarded_headers_count_only_from_a_trusted_peer_with_reverse_proxy() -> None:
    on = Edge.build(reverse_proxy=True, whitelist_domain=["dash.example.com"])
    seen = on.external(XF, peer="127.0.0.1", scheme="http", host="127.0.0.1:4180")
    assert (seen.scheme, seen.host, seen.client, seen.trusted) == (
        "https",
        "dash.example.com",
        "203.0.113.9",
        True,
    )
    from_outside = on.external(XF, peer="198.51.100.7", scheme="http", host="127.0.0.1:4180")
    assert (from_outside.scheme, from_outside.host, from_outside.client) == (
        "http",
        "127.0.0.1:4180",
        "198.51.100.7",
    )
    off = Edge.build(reverse_proxy=False, whitelist_domain=["dash.example.com"])
    assert off.external(XF, peer="127.0.0.1", scheme="http", host="h:1").scheme == "http"


def test_untrusted_peer_warned_once_naming_the_flag(caplog: pytest.LogCaptureFixture) -> None:
    edge = Edge.build(reverse_proxy=True)
    with caplog.at_level(logging.WARNING, logger="oidcproxy.forwarded"):
        for _ in range(3):
            edge.external(XF, peer="10.1.2.3", scheme="http", host="h")
        edge.external({}, peer="10.9.9.9", scheme="http", host="h")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "10.1.2.3" in lines[0] and "--trusted-proxy-ip=10.1.2.3/32" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="oidcproxy.forwarded"):
        Edge.build().external(XF, peer="127.0.0.1", scheme="http", host="h")
    assert "--reverse-proxy" in caplog.records[0].getMessage()


def test_forwarded_host_must_be_ours_or_whitelisted() -> None:
    edge = Edge.build(reverse_proxy=True, trusted_proxy_ip=["10.0.0.0/8"])
    evil = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example.net"}
    assert edge.external(evil, peer="10.0.0.5", scheme="http", host="app.local").host == "app.local"
    same = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.local"}
    assert edge.external(same, peer="10.0.0.5", scheme="http", host="app.local").base == "https://app.local"


def test_forwarded_port_and_rfc7239() -> None:
    edge = Edge.build(reverse_proxy=True, whitelist_domain=[".example.com"])
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "a.example.com", "X-Forwarded-Port": "8443"}
    assert edge.external(headers, peer="::1", scheme="http", host="h").base == "https://a.example.com:8443"
    rfc = {"Forwarded": 'for="[2001:db8::1]";proto=https;host=b.example.com, for=10.0.0.1'}
    seen = edge.external(rfc, peer="127.0.0.1", scheme="http", host="h")
    assert (seen.base, seen.client) == ("https://b.example.com", "2001:db8::1")
    assert parse_forwarded("For=1.2.3.4;Proto=http") == {"for": "1.2.3.4", "proto": "http"}


def test_client_is_rightmost_untrusted_hop() -> None:
    edge = Edge.build(reverse_proxy=True, trusted_proxy_ip=["127.0.0.0/8", "10.0.0.0/8"])
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.0.0.2"}
    assert edge.external(headers, peer="127.0.0.1", scheme="http", host="h").client == "203.0.113.9"


@pytest.mark.parametrize(
    ("rd", "expected"),
    [
        ("/app?x=1", "/app?x=1"),
        ("https://dash.example.com/x", "https://dash.example.com/x"),
        ("https://grafana.corp.example.com/d/1", "https://grafana.corp.example.com/d/1"),
        ("https://corp.example.com:8443/", "/"),  # whitelisted without a port: default port only
        ("https://ops.example.org:8443/", "https://ops.example.org:8443/"),
        ("https://ops.example.org/", "/"),
        ("https://evil.example.net/", "/"),
        ("https://dash.example.com@evil.example.net/", "/"),
        ("javascript:alert(1)", "/"),
        ("//evil.example.net/", "/"),
        ("/%2F%2Fevil.example.net", "/"),
        ("https://evil.example.net\\@dash.example.com/", "/"),
        ("https://xcorp.example.com/", "/"),
    ],
)
def test_rd_targets(rd: str, expected: str) -> None:
    edge = Edge.build(whitelist_domain=[".corp.example.com", "ops.example.org:8443"])
    ext = External("https", "dash.example.com", "", True)
    assert return_target(rd, lambda url: edge.safe_redirect(url, ext)) == expected


def test_websocket_origin_check() -> None:
    edge = Edge.build(whitelist_domain=[".example.com"])
    ext = External("https", "proxy.local:8443", "", True)
    assert edge.origin_allowed("https://proxy.local:8443", ext)
    assert edge.origin_allowed("https://app.example.com", ext)
    assert not edge.origin_allowed("https://proxy.local", ext)
    assert not edge.origin_allowed("https://evil.example.net", ext)
    assert not edge.origin_allowed("null", ext)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/public/../admin", "/admin"),
        ("/public/%2e%2e/admin", "/admin"),
        ("/public/%252e%252e/admin", "/admin"),
        ("//admin", "/admin"),
        ("/public/./x/", "/public/x/"),
        ("/../../etc", "/etc"),
        ("/public%2F..%2Fadmin", "/admin"),
        ("/public\\..\\admin", "/admin"),
    ],
)
def test_normalise_path(raw: str, normal: str) -> None:
    assert normalise_path(raw) == normal


@pytest.mark.parametrize(
    ("method", "path", "skipped"),
    [
        ("GET", "/public/logo.png", True),
        ("GET", "/public/../admin", False),
        ("GET", "/public/%2e%2e/admin", False),
        ("GET", "//public/x", True),
        ("GET", "/x/public/", False),
        ("POST", "/hooks/github", True),
        ("GET", "/hooks/github", False),
    ],
)
def test_skip_auth_routes_on_normalised_path(method: str, path: str, skipped: bool) -> None:
    edge = Edge.build(skip_auth_route=["^/public/", "POST=^/hooks/"])
    assert edge.skips_auth(method, path, {}) is skipped


def test_preflight_and_api_routes() -> None:
    edge = Edge.build(skip_auth_preflight=True, api_route=["^/api/"])
    assert edge.skips_auth("OPTIONS", "/api/x", {"Access-Control-Request-Method": "POST"})
    assert not edge.skips_auth("OPTIONS", "/api/x", {})
    assert edge.is_api("GET", "/api/v1") and not edge.is_api("GET", "/app/api/")
