"""Pure parts of the development provider: subjects, redirect matching, config checks, keys,
the warning text."""

from __future__ import annotations

import pytest

from oidcproxy.idp import DevUser, IdPClient, IdPConfig, subject_for, warning_text
from oidcproxy.idp.config import is_loopback_uri
from oidcproxy.idp.keys import KeyRing

CLIENT = IdPClient("app", "s3cret-value", ("https://app.example/oauth2/callback",))


def test_subject_is_stable_opaque_and_case_insensitive() -> None:
    sub = subject_for("Alice@Example.com")
    assert sub == subject_for("alice@example.com ")
    assert sub != subject_for("bob@example.com")
    assert len(sub) == 22
    assert "alice" not in sub


def test_user_claims() -> None:
    user = DevUser("carol@example.com", groups=("ops",))
    claims = user.claims()
    assert claims["name"] == "carol"
    assert claims["preferred_username"] == "carol"
    assert claims["email_verified"] is True
    assert claims["groups"] == ["ops"]


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        ("https://app.example/oauth2/callback", True),
        ("https://app.example/oauth2/callback/", False),
        ("https://app.example/oauth2/callback?x=1", False),
        ("http://app.example/oauth2/callback", False),
        ("http://127.0.0.1:4180/oauth2/callback", False),
    ],
)
def test_redirects_match_exactly(uri: str, ok: bool) -> None:
    assert CLIENT.accepts_redirect(uri) is ok


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        ("http://127.0.0.1:4180/cb", True),
        ("http://localhost/cb", True),
        ("http://[::1]:8080/cb", True),
        ("http://127.0.0.1.evil.example/cb", False),
        ("http://user@127.0.0.1/cb", False),
        ("javascript://127.0.0.1/%0aalert(1)", False),
        ("http://10.0.0.1/cb", False),
    ],
)
def test_loopback_uris(uri: str, ok: bool) -> None:
    assert is_loopback_uri(uri) is ok


def test_loopback_redirects_only_when_allowed() -> None:
    loose = IdPClient("cli", "x", allow_loopback_redirects=True)
    assert loose.accepts_redirect("http://127.0.0.1:1234/anything")
    assert not loose.accepts_redirect("https://app.example/cb")
    assert not CLIENT.accepts_redirect("http://127.0.0.1:1234/anything")


def test_secrets_stay_out_of_reprs() -> None:
    config = IdPConfig("https://idp.example", (CLIENT,))
    assert "s3cret-value" not in repr(CLIENT)
    assert "s3cret-value" not in repr(config)


@pytest.mark.parametrize(
    "issuer", ["https://idp.example/", "idp.example", "https://idp.example?x=1", "ftp://idp"]
)
def test_bad_issuers_are_refused(issuer: str) -> None:
    with pytest.raises(ValueError, match="issuer"):
        IdPConfig(issuer, (CLIENT,))


def test_bad_alg_and_duplicate_clients_are_refused() -> None:
    with pytest.raises(ValueError, match="signing_alg"):
        IdPConfig("https://idp.example", (CLIENT,), signing_alg="HS256")
    with pytest.raises(ValueError, match="unique"):
        IdPConfig("https://idp.example", (CLIENT, CLIENT))


def test_endpoints_derive_from_the_issuer() -> None:
    config = IdPConfig("http://127.0.0.1:4180/dev-idp", (CLIENT,))
    assert config.endpoint("/token") == "http://127.0.0.1:4180/dev-idp/token"


def test_key_ring_rotation_keeps_old_public_keys() -> None:
    ring = KeyRing("ES256")
    first = ring.current.kid
    second = ring.rotate().kid
    assert ring.current.kid == second != first
    keys = ring.jwks()["keys"]
    assert isinstance(keys, list)
    assert [k["kid"] for k in keys] == [second, first]
    assert all("d" not in k and k["use"] == "sig" and k["alg"] == "ES256" for k in keys)


def test_warning_is_loud_and_louder_when_remote() -> None:
    local, remote = warning_text(remote=False), warning_text(remote=True)
    assert "NOT FOR PRODUCTION" in local
    assert len(local.splitlines()) >= 4
    assert len(remote) > len(local)
    assert "OTHER MACHINES" in remote
