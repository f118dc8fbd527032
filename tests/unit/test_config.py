"""Configuration: precedence, lists, booleans, durations, and one clear line per problem."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from oidcproxy.cli import main
from oidcproxy.config import Settings, build_parser, env_name, flag_name, load_settings
from oidcproxy.errors import ConfigError

BASE = [
    "--upstream=http://127.0.0.1:8080/",
    "--oidc-issuer-url=https://idp.example.com",
    "--client-id=c",
    "--client-secret=s",
    "--cookie-secret=0123456789abcdef",
    "--email-domain=example.com",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("OIDCPROXY_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = load_settings(BASE)
    assert s.http_address == "127.0.0.1:4180"
    assert s.scope == "openid email profile"
    assert s.code_challenge_method == "S256"
    assert s.cookie_name == "_oidcproxy"
    assert s.cookie_secure is True
    assert s.cookie_expire == 168 * 3600
    assert s.cookie_samesite == "lax"
    assert s.pass_user_headers is True


def test_precedence_flag_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "oidcproxy.toml"
    file.write_text('cookie_name = "from_file"\nprovider_display_name = "File"\nscope = "openid file"\n')
    monkeypatch.setenv("OIDCPROXY_COOKIE_NAME", "from_env")
    monkeypatch.setenv("OIDCPROXY_PROVIDER_DISPLAY_NAME", "Env")
    s = load_settings([*BASE, "--config", str(file), "--cookie-name", "from_flag"])
    assert s.cookie_name == "from_flag"
    assert s.provider_display_name == "Env"
    assert s.scope == "openid file"


def test_lists_from_flags_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings([*BASE, "--email-domain=b.org"])
    assert s.email_domain == ["example.com", "b.org"]
    monkeypatch.setenv("OIDCPROXY_UPSTREAM", "http://a:1/, http://b:2/api/")
    args = [a for a in BASE if not a.startswith("--upstream")]
    assert load_settings(args).upstream == ["http://a:1/", "http://b:2/api/"]
    file = tmp_path / "c.toml"
    file.write_text('email_domain = ["x.org", "y.org"]\n')
    no_domain = [a for a in BASE if not a.startswith("--email-domain")]
    assert load_settings([*no_domain, "--config", str(file)]).email_domain == ["x.org", "y.org"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--cookie-secure"], True), (["--cookie-secure=false"], False), (["--cookie-secure=true"], True)],
)
def test_booleans(args: list[str], expected: bool) -> None:
    assert load_settings([*BASE, *args]).cookie_secure is expected


@pytest.mark.parametrize(
    ("text", "seconds"), [("168h", 604800), ("1h30m", 5400), ("90s", 90), ("250ms", 0.25)]
)
def test_durations(text: str, seconds: float) -> None:
    assert load_settings([*BASE, f"--cookie-expire={text}"]).cookie_expire == seconds


def test_base64_cookie_secret_accepted() -> None:
    load_settings([*BASE, "--cookie-secret=" + "A" * 43])  # 32 bytes, URL-safe base64 unpadded


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--cookie-secret=short"], "--cookie-secret (env OIDCPROXY_COOKIE_SECRET): must be 16, 24 or 32"),
        (["--code-challenge-method=plain"], "--code-challenge-method (env OIDCPROXY_CODE_CHALLENGE_METHOD)"),
        (["--cookie-samesite=sideways"], "--cookie-samesite (env OIDCPROXY_COOKIE_SAMESITE): must be one of"),
        (["--cookie-expire=soon"], "--cookie-expire (env OIDCPROXY_COOKIE_EXPIRE): 'soon' is not a duration"),
        (["--upstream=ftp://x/"], "--upstream (env OIDCPROXY_UPSTREAM): 'ftp://x/' is not an http(s) URL"),
        (
            ["--http-address=nowhere"],
            "--http-address (env OIDCPROXY_HTTP_ADDRESS): 'nowhere' is not host:port",
        ),
        (["--cookie-secure=maybe"], "--cookie-secure (env OIDCPROXY_COOKIE_SECURE): must be true or false"),
    ],
)
def test_bad_values_name_option_and_fix(args: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings([*BASE, *args])
    assert any(needle in line for line in caught.value.problems), caught.value.problems


def test_missing_options_all_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings([])
    text = "\n".join(caught.value.problems)
    for option in ("--upstream", "--cookie-secret", "--oidc-issuer-url", "--client-id", "--email-domain"):
        assert option + ": missing" in text


def test_client_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    args = [a for a in BASE if not a.startswith("--client-secret")]
    s = load_settings([*args, f"--client-secret-file={secret}"])
    assert s.client_secret_value() == "from-file"
    with pytest.raises(ConfigError):
        load_settings([*args, "--client-secret-file=/nonexistent/secret"])


def test_secrets_never_in_repr() -> None:
    s = load_settings(BASE)
    assert "0123456789abcdef" not in repr(s)
    assert "client_secret='s'" not in repr(s)


def test_cli_exits_2_with_one_line_per_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--cookie-samesite=bad"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("oidcproxy: --cookie-samesite")
    assert main(["check", *BASE]) == 0


def test_help_lists_every_option_with_env_and_default() -> None:
    text = build_parser().format_help()
    for name in Settings.model_fields:
        assert flag_name(name) in text
        assert env_name(name) in text.replace("\n", " ").replace("  ", "")


def test_readme_table_matches_the_model() -> None:
    root = Path(__file__).parents[2]
    sys.path.insert(0, str(root / "scripts"))
    try:
        import config_table
    finally:
        sys.path.pop(0)
    readme = (root / "README.md").read_text()
    assert config_table.render(readme) == readme, "run: python scripts/config_table.py"
    for name in Settings.model_fields:
        assert f"`{flag_name(name)}`" in readme
