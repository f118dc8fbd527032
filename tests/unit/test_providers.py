"""Several providers, pure parts: the [[providers]] options and their env scheme, problems named per
entry, the session codec's provider id (old cookies open as "default"), the login state binding the
provider, RFC 9207's iss check, and the registry's lookups (Entra's two issuers)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from oidcproxy.config import Settings, load_settings
from oidcproxy.coordination import LocalState
from oidcproxy.errors import ConfigError, LoginFailed, NotAuthenticated
from oidcproxy.login import LoginFlow
from oidcproxy.model import FakeClock, Identity, Session, Tokens
from oidcproxy.oidc import (
    ClaimMapping,
    OIDCClient,
    Provider,
    ProviderConfig,
    Providers,
    authorization_iss_problem,
    entra_issuers,
)
from oidcproxy.oidc.metadata import ProviderMetadata
from oidcproxy.sessions import SessionCodec
from oidcproxy.sessions.cookies import CookiePolicy
from oidcproxy.sessions.keys import KeyRing

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
BASE = """
upstream = ["http://127.0.0.1:9/"]
cookie_secret = "0123456789abcdef0123456789abcdef"
email_domain = ["example.com"]
oidc_groups_claim = "roles"
"""
TWO = (
    BASE
    + """
[[providers]]
id = "kc"
display_name = "Employees"
oidc_issuer_url = "https://kc.example.com/realms/staff"
client_id = "proxy"
client_secret = "s1"
allowed_groups = ["staff"]

[[providers]]
id = "google"
oidc_issuer_url = "https://accounts.google.com"
client_id = "g.apps.googleusercontent.com"
client_secret = "s2"
email_domains = ["contractor.example"]
oidc_groups_claim = "groups"
"""
)


def load(tmp_path: Path, text: str, *args: str) -> Settings:
    path = tmp_path / "oidcproxy.toml"
    path.write_text(text)
    return load_settings(["--config", str(path), *args])


def problems(tmp_path: Path, text: str, *args: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, *args)
    return caught.value.problems


def test_flat_options_are_one_provider_named_default(tmp_path: Path) -> None:
    settings = load(
        tmp_path, BASE + 'oidc_issuer_url = "https://idp.example"\nclient_id = "c"\nclient_secret = "s"\n'
    )
    (only,) = settings.providers()
    assert (only.id, only.oidc_issuer_url, only.client_id, only.email_domain) == (
        "default",
        "https://idp.example",
        "c",
        ["example.com"],
    )


def test_providers_tables_with_own_rules_and_inherited_claims(tmp_path: Path) -> None:
    kc, google = load(tmp_path, TWO).providers()
    assert (kc.id, kc.button, kc.email_domain, kc.allowed_group) == (
        "kc",
        "Employees",
        ["example.com"],
        ["staff"],
    )
    assert kc.oidc_groups_claim == "roles"  # unset in the entry: the flat option's
    assert (google.button, google.email_domain, google.allowed_group) == (
        "google",
        ["contractor.example"],
        [],
    )
    assert google.oidc_groups_claim == "groups"
    assert google.client_secret_value() == "s2" and "s2" not in repr(google)


def test_env_scheme_configures_two_providers_and_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "OIDCPROXY_PROVIDERS_0_ID": "a",
        "OIDCPROXY_PROVIDERS_0_OIDC_ISSUER_URL": "https://a.example",
        "OIDCPROXY_PROVIDERS_0_CLIENT_ID": "ca",
        "OIDCPROXY_PROVIDERS_0_CLIENT_SECRET": "sa",
        "OIDCPROXY_PROVIDERS_1_ID": "b",
        "OIDCPROXY_PROVIDERS_1_OIDC_ISSUER_URL": "https://b.example",
        "OIDCPROXY_PROVIDERS_1_CLIENT_ID": "cb",
        "OIDCPROXY_PROVIDERS_1_CLIENT_SECRET": "sb",
        "OIDCPROXY_PROVIDERS_1_EMAIL_DOMAINS": "b.example, c.example",
    }.items():
        monkeypatch.setenv(key, value)
    a, b = load(tmp_path, BASE).providers()
    assert (a.id, a.client_id, b.id, b.email_domain) == ("a", "ca", "b", ["b.example", "c.example"])
    monkeypatch.setenv("OIDCPROXY_PROVIDERS_1_CLIENT_SECRET", "from-env")
    kc, google = load(tmp_path, TWO).providers()
    assert google.client_secret_value() == "from-env"
    # entry by entry, option by option: env over file, the rest of the file's entry kept
    assert (kc.id, kc.client_secret_value(), kc.button, kc.allowed_group) == (
        "a",
        "sa",
        "Employees",
        ["staff"],
    )


def test_problems_name_the_entry_and_all_come_at_once(tmp_path: Path) -> None:
    text = TWO.replace('client_secret = "s2"\n', "").replace('id = "kc"', 'id = "Bad Id"')
    text += '\n[[providers]]\nid = "x"\noidc_issuer_url = "https://x"\nclient_id = "c"\nclient_secret = "s"\n'
    text += 'scopes = "x"\n'
    found = problems(tmp_path, text)
    assert "providers[1].client_secret: missing; give it or client_secret_file" in found
    assert any(p.startswith("providers[0].id: 'Bad Id' must be") for p in found)
    assert "providers[2].scopes: not an option of a provider; see README: Several providers" in found


def test_duplicate_ids_entra_without_tenant_and_flat_provider_options_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, TWO.replace('id = "google"', 'id = "kc"'), "--client-id=x")
    assert "providers[1].id: 'kc' is used twice; give each provider its own id" in found
    assert "--client-id: set it inside each [[providers]] entry, not as a flat option" in found
    entra = TWO.replace(
        'oidc_issuer_url = "https://accounts.google.com"',
        'type = "entra"\noidc_issuer_url = "https://accounts.google.com"',
    )
    assert any(
        p.startswith("providers[1].oidc_issuer_url: type entra needs the v2 issuer")
        for p in problems(tmp_path, entra)
    )


def test_each_provider_needs_rules(tmp_path: Path) -> None:
    text = TWO.replace('email_domain = ["example.com"]\n', "")
    found = problems(tmp_path, text)
    assert any(p.startswith("providers[0].email_domain: missing") for p in found)
    assert not any(p.startswith("providers[1].email_domain") for p in found)  # google has its own
    assert not any(p.startswith("--email-domain") for p in found)


ALICE = Identity("sub-1", "alice@example.com", True, "alice@example.com", "alice", ("admins",))


def test_codec_records_the_provider_and_old_cookies_open_as_default() -> None:
    keys = KeyRing([b"k" * 32])
    codec = SessionCodec(keys, "_oidcproxy")
    google = Session(ALICE, Tokens("i", "a", "r", 5.0), 1.0, 2.0, provider="google")
    assert codec.decode(codec.encode(google)) == google
    # A cookie sealed before providers had ids: the v0 body, twelve positional fields.
    v0 = [
        "sub-1",
        "alice@example.com",
        True,
        "alice@example.com",
        "alice",
        ["admins"],
        "i",
        "a",
        "r",
        5.0,
        1.0,
        2.0,
    ]
    old = keys.seal(b"j" + json.dumps(v0).encode(), b"oidcproxy-session:_oidcproxy")
    opened = codec.decode(old)
    assert opened is not None and opened.provider == "default" and opened.identity == ALICE
    # The one-provider case writes the plain format (v1), no provider envelope.
    default = Session(ALICE, Tokens("i", "a", "r", 5.0), 1.0, 2.0)
    body = keys.open(codec.encode(default), b"oidcproxy-session:_oidcproxy")
    assert body is not None and body[:1] in (b"k", b"y")


def test_login_state_binds_the_provider() -> None:
    flow = LoginFlow([b"s" * 32], CookiePolicy(), FakeClock(), shared=LocalState(FakeClock()))
    attempt, cookie = flow.begin("/", "http://127.0.0.1/oauth2/callback/kc", "kc")
    query = {"state": attempt.state, "code": "c"}
    done = asyncio.run(flow.finish({cookie.name: cookie.value}, query))
    assert done.attempt.provider == "kc"
    plain, cookie = flow.begin("/", "http://127.0.0.1/oauth2/callback")
    done = asyncio.run(flow.finish({cookie.name: cookie.value}, {"state": plain.state, "code": "c"}))
    assert done.attempt.provider == "default"


def meta(issuer: str, advertised: bool) -> ProviderMetadata:
    return ProviderMetadata(issuer, "a", "t", "j", authorization_response_iss_parameter_supported=advertised)


def test_rfc9207_iss_check() -> None:
    assert authorization_iss_problem(meta("https://a", True), "https://a") == ""
    assert "without iss" in authorization_iss_problem(meta("https://a", True), None)
    assert authorization_iss_problem(meta("https://a", False), None) == ""  # not advertised: may be absent
    assert "is not this login's provider" in authorization_iss_problem(meta("https://a", False), "https://b")
    assert "is not this login's provider" in authorization_iss_problem(meta("https://a", True), "https://b")


def test_registry_lookups_and_entra_issuers() -> None:
    async def build() -> None:
        async with aiohttp.ClientSession() as http:
            v2, v1 = entra_issuers(TENANT)
            entra = ProviderConfig(v2, "app", "s", extra_audiences=("api://app",), also_issuers=(v1,))
            other = ProviderConfig("https://kc.example/realms/x", "proxy", "s")
            registry = Providers(
                [
                    Provider("entra", "Entra", OIDCClient(http, entra, FakeClock()), ClaimMapping()),
                    Provider("kc", "KC", OIDCClient(http, other, FakeClock()), ClaimMapping()),
                ]
            )
            assert v1 == f"https://sts.windows.net/{TENANT}/"
            assert registry.by_issuer(v1) is registry.by_issuer(v2) is registry.get("entra")
            assert registry.by_issuer("https://kc.example/realms/x") is registry.get("kc")
            assert registry.by_issuer("https://elsewhere") is None
            assert registry.get("entra").audiences == ("app", "api://app")
            kc_session = Session(ALICE, Tokens(), 0.0, 1.0, provider="kc")
            assert registry.for_session(kc_session) is registry.get("kc")
            # back-channel logout: a logout token of one provider never speaks for another's session
            assert registry.issued("https://kc.example/realms/x", kc_session)
            assert not registry.issued(v1, kc_session) and not registry.issued(
                "https://elsewhere", kc_session
            )
            with pytest.raises(NotAuthenticated):
                registry.for_session(Session(ALICE, Tokens(), 0.0, 1.0))  # "default" is not configured
            with pytest.raises(LoginFailed):
                registry.get("nope")
            assert not registry.single

    asyncio.run(build())
