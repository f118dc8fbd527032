"""The TLS options refuse half a configuration at start, one line naming the option and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oidcproxy.config import load_settings
from oidcproxy.errors import ConfigError

BASE = [
    "--upstream=https://app.internal:8443/",
    "--oidc-issuer-url=https://idp.example.com",
    "--client-id=c",
    "--client-secret=s",
    "--cookie-secret=0123456789abcdef",
    "--email-domain=example.com",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("OIDCPROXY_"):
            monkeypatch.delenv(key)


def _problems(*argv: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings([*BASE, *argv])
    return list(caught.value.problems)


@pytest.fixture
def pem(tmp_path: Path) -> str:
    path = tmp_path / "x.pem"
    path.write_text("not checked here")
    return str(path)


def test_https_address_needs_a_certificate_and_a_key() -> None:
    assert _problems("--https-address=0.0.0.0:4443") == [
        "--tls-cert-file: missing; --https-address needs it",
        "--tls-key-file: missing; --https-address needs it",
    ]


def test_a_certificate_without_https_address_says_to_set_it(pem: str) -> None:
    problems = _problems(f"--tls-cert-file={pem}", f"--tls-key-file={pem}")
    assert problems[0].startswith("--tls-cert-file: serves TLS on --https-address only; set it too")


def test_upstream_client_certificate_needs_its_key_and_files_must_exist(pem: str) -> None:
    assert _problems(f"--upstream-client-cert-file={pem}", "--upstream-ca-file=/no/ca.pem") == [
        "--upstream-client-key-file: missing; --upstream-client-cert-file needs it",
        "--upstream-ca-file: '/no/ca.pem' is not a readable file",
    ]


def test_tls_min_version_takes_oauth2_proxy_spelling(pem: str) -> None:
    argv = ["--https-address=127.0.0.1:4443", f"--tls-cert-file={pem}", f"--tls-key-file={pem}"]
    assert load_settings([*BASE, *argv, "--tls-min-version=TLS1.3"]).tls_min_version == "TLS1.3"
    assert any(p.startswith("--tls-min-version") for p in _problems(*argv, "--tls-min-version=TLS1.0"))


def test_oauth2_proxy_tls_names_are_ours_now(pem: str) -> None:
    settings = load_settings([*BASE, "--ssl-upstream-insecure-skip-verify"])
    assert settings.ssl_upstream_insecure_skip_verify is True
    assert "ciphers" in _problems("--tls-cipher-suites=TLS_AES_128_GCM_SHA256")[0]
