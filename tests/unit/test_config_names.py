"""Config fails closed: unknown names stop start-up; oauth2-proxy's names are aliases; no abbreviations.

A misspelt `OIDCPROXY_ALOWED_GROUP` used to be ignored, and the group restriction with it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from oidcproxy.cli import main
from oidcproxy.config import Settings, load_settings
from oidcproxy.config.names import OAUTH2_PROXY_ONLY, RENAMED
from oidcproxy.errors import ConfigError

BASE = [
    "--upstream=http://127.0.0.1:8080/",
    "--oidc-issuer-url=https://idp.example.com",
    "--client-id=c",
    "--client-secret=s",
    "--cookie-secret=0123456789abcdef",
]
README = Path(__file__).parents[2] / "README.md"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("OIDCPROXY_"):
            monkeypatch.delenv(key)


def problems_of(argv: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(argv)
    return caught.value.problems


# -- environment variables


@pytest.mark.parametrize(
    ("variable", "closest"),
    [
        ("OIDCPROXY_ALOWED_GROUP", "OIDCPROXY_ALLOWED_GROUP"),
        ("OIDCPROXY_EMAIL_DOMIAN", "OIDCPROXY_EMAIL_DOMAIN"),
        ("OIDCPROXY_SKIP_AUTH_ROUTS", "OIDCPROXY_SKIP_AUTH_ROUTE"),
    ],
)
def test_misspelt_variable_stops_start_up_naming_the_closest_option(
    variable: str, closest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "admins")
    assert problems_of([*BASE, "--email-domain=example.com"]) == [
        f"{variable}: not an option; did you mean {closest}?"
    ]


def test_cli_exits_2_on_a_misspelt_variable_and_not_on_oidcproxy_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "oidcproxy.toml"
    file.write_text('email_domain = ["example.com"]\n')
    monkeypatch.setenv("OIDCPROXY_CONFIG", str(file))  # names the file; the one variable not an option
    monkeypatch.setenv("OIDCPROXY_ALOWED_GROUP", "admins")
    assert main(["check", *BASE]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["oidcproxy: OIDCPROXY_ALOWED_GROUP: not an option; did you mean OIDCPROXY_ALLOWED_GROUP?"]


@pytest.mark.parametrize(
    ("oauth2_proxy_name", "value", "option", "expected"),
    [
        ("ALLOWED_GROUPS", "admins,ops", "allowed_group", ["admins", "ops"]),
        ("EMAIL_DOMAINS", "a.org,b.org", "email_domain", ["a.org", "b.org"]),
        ("UPSTREAMS", "http://a:1/,http://b:2/api/", "upstream", ["http://a:1/", "http://b:2/api/"]),
        ("SKIP_AUTH_ROUTES", "GET=^/health$", "skip_auth_route", ["GET=^/health$"]),
        ("API_ROUTES", "^/api/", "api_route", ["^/api/"]),
        ("WHITELIST_DOMAINS", ".example.com", "whitelist_domain", [".example.com"]),
        ("TRUSTED_PROXY_IPS", "10.0.0.0/8", "trusted_proxy_ip", ["10.0.0.0/8"]),
        ("OIDC_EXTRA_AUDIENCES", "kubectl", "oidc_extra_audience", ["kubectl"]),
        ("INSECURE_OIDC_ALLOW_UNVERIFIED_EMAIL", "true", "insecure_allow_unverified_email", True),
        ("COOKIE_DOMAINS", ".example.com", "cookie_domain", ".example.com"),
    ],
)
def test_oauth2_proxy_variables_work_after_a_prefix_rename(
    oauth2_proxy_name: str, value: str, option: str, expected: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OIDCPROXY_" + oauth2_proxy_name, value)
    args = [*BASE, "--email-domain=example.com"]
    if option in ("upstream", "email_domain"):
        args = [a for a in args if not a.startswith(f"--{option.replace('_', '-')}=")]
    assert getattr(load_settings(args), option) == expected


def test_the_group_restriction_an_oauth2_proxy_user_writes_is_enforced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OIDCPROXY_ALLOWED_GROUPS", "admins")
    assert load_settings([*BASE, "--email-domain=example.com"]).allowed_group == ["admins"]


def test_option_and_its_alias_together_name_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDCPROXY_ALLOWED_GROUP", "admins")
    monkeypatch.setenv("OIDCPROXY_ALLOWED_GROUPS", "ops")
    assert problems_of([*BASE, "--email-domain=example.com"]) == [
        "OIDCPROXY_ALLOWED_GROUP and OIDCPROXY_ALLOWED_GROUPS: the same option twice; keep one"
    ]


def test_oauth2_proxy_option_we_lack_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDCPROXY_PROVIDER", "oidc")
    monkeypatch.setenv("OIDCPROXY_TRUSTED_IPS", "10.0.0.0/8")
    (provider, trusted) = problems_of([*BASE, "--email-domain=example.com"])
    assert provider.startswith("OIDCPROXY_PROVIDER: an oauth2-proxy option oidcproxy does not have;")
    assert "OpenID Connect is the only provider" in provider
    assert trusted.startswith("OIDCPROXY_TRUSTED_IPS: an oauth2-proxy option oidcproxy does not have;")


def test_several_cookie_domains_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OIDCPROXY_COOKIE_DOMAINS", ".a.org,.b.org")
    assert problems_of([*BASE, "--email-domain=example.com"]) == [
        "OIDCPROXY_COOKIE_DOMAINS: oidcproxy sets one cookie domain; give one, e.g. .example.com"
    ]


# -- the TOML file


def test_misspelt_file_key_stops_start_up_naming_the_closest_key(tmp_path: Path) -> None:
    file = tmp_path / "oidcproxy.toml"
    file.write_text('email_domain = ["example.com"]\nalowed_group = ["admins"]\n')
    assert problems_of([*BASE, "--config", str(file)]) == [
        f"alowed_group in {file}: not an option; did you mean allowed_group?"
    ]


def test_oauth2_proxy_file_keys_are_aliases(tmp_path: Path) -> None:
    file = tmp_path / "oidcproxy.toml"
    file.write_text(
        'email_domains = ["example.com"]\nallowed_groups = ["admins"]\nwhitelist_domains = [".example.com"]\n'
        'upstreams = ["http://127.0.0.1:8080/"]\ncookie_domains = [".example.com"]\n'
    )
    args = [a for a in BASE if not a.startswith("--upstream")]
    s = load_settings([*args, "--config", str(file)])
    assert (s.email_domain, s.allowed_group, s.whitelist_domain) == (
        ["example.com"],
        ["admins"],
        [".example.com"],
    )
    assert s.upstream == ["http://127.0.0.1:8080/"] and s.cookie_domain == ".example.com"


def test_file_key_and_its_alias_together_name_both(tmp_path: Path) -> None:
    file = tmp_path / "oidcproxy.toml"
    file.write_text('email_domain = ["a.org"]\nemail_domains = ["b.org"]\n')
    assert problems_of([*BASE, "--config", str(file)]) == [
        f"email_domain and email_domains in {file}: the same option twice; keep one"
    ]


# -- flags


@pytest.mark.parametrize("abbreviated", ["--email-dom=example.com", "--email-domai=example.com"])
def test_flag_abbreviations_are_refused(abbreviated: str) -> None:
    assert problems_of([*BASE, abbreviated]) == [
        f"{abbreviated.split('=')[0]}: not an option; did you mean --email-domain?",
        "--email-domain: missing; name the allowed domains (or * for any verified email), "
        "or give --authenticated-emails-file",
    ]


def test_misspelt_flag_with_a_separate_value_names_only_the_flag() -> None:
    assert problems_of([*BASE, "--email-domain=example.com", "--alowed-group", "admins"]) == [
        "--alowed-group: not an option; did you mean --allowed-group?"
    ]


def test_plural_flags_are_aliases_and_both_together_are_refused() -> None:
    s = load_settings([*BASE, "--email-domains=example.com", "--allowed-groups=admins"])
    assert (s.email_domain, s.allowed_group) == (["example.com"], ["admins"])
    assert problems_of([*BASE, "--email-domain=a.org", "--email-domains=b.org"]) == [
        "--email-domain and --email-domains: the same option twice; keep one"
    ]


def test_every_unknown_name_is_reported_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "oidcproxy.toml"
    file.write_text('email_domian = ["example.com"]\n')
    monkeypatch.setenv("OIDCPROXY_ALOWED_GROUP", "admins")
    found = problems_of([*BASE, "--config", str(file), "--cookie-secur=true"])
    assert [line.split(":")[0] for line in found] == [
        "--cookie-secur",
        "OIDCPROXY_ALOWED_GROUP",
        f"email_domian in {file}",
        "--email-domain",  # missing, since the file misspelt it: value problems come in the same run
    ]


# -- README


def test_readme_migration_table_lists_every_alias_and_every_missing_option() -> None:
    text = README.read_text()
    section = text.split("### Moving from oauth2-proxy", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z0-9_]+)`", section))
    plurals = {f"{n}s" for n, i in Settings.model_fields.items() if "list" in str(i.annotation)}
    assert {"email_domains", "upstreams", "allowed_groups", "skip_auth_routes"} <= plurals | listed
    assert set(RENAMED) <= listed
    assert set(OAUTH2_PROXY_ONLY) <= listed
    assert not set(OAUTH2_PROXY_ONLY) & set(Settings.model_fields), "an option we now have: update README"
