"""The token, claim and refresh options are checked at start-up, every problem reported at once."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.factories import make_settings


def problems(**overrides: object) -> str:
    with pytest.raises(ValidationError) as caught:
        make_settings(**overrides)
    return str(caught.value)


def test_issuer_must_be_https_unless_loopback_or_allowed() -> None:
    assert "is not https" in problems(oidc_issuer_url="http://idp.example.com")
    make_settings(oidc_issuer_url="http://idp.example.com", insecure_oidc_allow_http=True)
    make_settings(oidc_issuer_url="http://localhost:8080")


def test_manual_endpoints_are_required_without_discovery() -> None:
    text = problems(skip_oidc_discovery=True, login_url="https://idp/auth")
    assert "--redeem-url: missing" in text and "--oidc-jwks-url: missing" in text


def test_pairs_audiences_and_prefix_policy() -> None:
    text = problems(
        oidc_required_claim=["novalue"],
        auth_extra_param=["=x"],
        extra_jwt_issuers=["https://other"],
        oidc_extra_audience=[f"a{i}" for i in range(10)],
        oidc_username_prefix_policy="Prefix",
    )
    for flag in ("--oidc-required-claim", "--auth-extra-param", "--extra-jwt-issuers"):
        assert f"{flag}: " in text
    assert "at most 10 audiences" in text
    assert "Prefix needs --oidc-username-prefix" in text


def test_cookie_refresh_must_be_shorter_than_the_session() -> None:
    assert "--cookie-refresh" in problems(cookie_refresh="200h")
    assert make_settings(cookie_refresh="1h").cookie_refresh == 3600
