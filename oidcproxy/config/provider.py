"""Options of the provider: which one, how we are registered there, its endpoints, keys and limits.

Two concerns of the flat Settings (settings.py): ProviderOptions (the client registration) and
EndpointOptions (discovery or explicit endpoints, trusted CAs, key set caching), each checking its
own fields in `problems()`. Imports only config.values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, SecretStr, field_validator

from oidcproxy.config.values import HTTP_URL, Duration, StrList, flag_name, key_value_problems, option

__all__ = ["EndpointOptions", "ProviderOptions"]

_URL = r"https?://[^\s?#]+"


class ProviderOptions(BaseModel):
    """The provider we send people to and our client registration there."""

    oidc_type: Literal["external", "embedded"] = option(
        "external", "external provider, or the embedded development provider under /dev-idp"
    )
    dev_idp_signing_alg: Literal["RS256", "ES256"] = option(
        "RS256", "signing algorithm of the embedded provider's ID tokens"
    )
    dev_idp_allow_remote: bool = option(
        False, "let the embedded provider listen on a non-loopback address (never in production)"
    )
    provider_display_name: str = option("OpenID Connect", "provider name shown on the sign-in button")
    oidc_issuer_url: str = option("", "the provider's issuer URL (discovery at /.well-known/...)")
    client_id: str = option("", "OAuth client id registered at the provider")
    client_secret: SecretStr = option(SecretStr(""), "OAuth client secret")
    client_secret_file: str = option("", "file holding the client secret (instead of --client-secret)")
    redirect_url: str = option("", "callback URL registered at the provider; empty: built from the request")
    scope: str = option("openid email profile", "scopes to request, space-separated")
    code_challenge_method: str = option("S256", "PKCE method: S256, or empty to disable PKCE")
    provider_sign_out: bool = option(
        True,
        "sign-out also ends the provider's session (RP-initiated logout) and revokes the refresh token,"
        " when the provider advertises end_session_endpoint; false: clear our session only",
    )
    provider_timeout: Duration = option("10s", "timeout for each call to the provider")
    provider_max_response_size: int = option(
        1 << 20, "largest discovery, key set, token or userinfo answer read from the provider, in bytes"
    )

    @field_validator("code_challenge_method")
    @classmethod
    def _pkce(cls, value: str) -> str:
        if value == "plain":
            raise ValueError("plain PKCE is refused (RFC 9700 2.1.1); use S256, or empty to disable")
        if value not in ("S256", ""):
            raise ValueError(f"{value!r} is not a PKCE method; use S256, or empty to disable")
        return value

    def problems(self) -> list[str]:
        """The limits and files; the registration is checked by `registration_problems` (settings.py
        asks it only when no [[providers]] entries name the providers instead)."""
        out: list[str] = []
        if self.client_secret_file and not Path(self.client_secret_file).is_file():
            out.append(f"--client-secret-file: {self.client_secret_file!r} is not a readable file")
        if self.redirect_url and not re.fullmatch(_URL, self.redirect_url):
            out.append(f"--redirect-url: {self.redirect_url!r} is not an http(s) URL")
        if not 4096 <= self.provider_max_response_size <= 64 << 20:
            out.append("--provider-max-response-size: must be between 4096 and 67108864 bytes, e.g. 1048576")
        return out

    def registration_problems(self) -> list[str]:
        """What an external provider needs: its issuer, our client id and exactly one client secret."""
        out: list[str] = []
        if self.oidc_type == "embedded":
            return out
        if not self.oidc_issuer_url:
            out.append("--oidc-issuer-url: missing; set it to your provider's issuer URL")
        elif not re.fullmatch(_URL, self.oidc_issuer_url):
            out.append(f"--oidc-issuer-url: {self.oidc_issuer_url!r} is not an http(s) URL")
        if not self.client_id:
            out.append("--client-id: missing; use the client id registered at your provider")
        if self.client_secret_file and self.client_secret.get_secret_value():
            out.append("--client-secret-file: give either it or --client-secret, not both")
        elif not self.client_secret_file and not self.client_secret.get_secret_value():
            out.append("--client-secret: missing; give it or --client-secret-file")
        return out

    def client_secret_value(self) -> str:
        """The client secret, read from --client-secret-file when that is given."""
        if self.client_secret_file:
            return Path(self.client_secret_file).read_text().strip()
        return self.client_secret.get_secret_value()


class EndpointOptions(BaseModel):
    """Discovery or explicit endpoints, the CAs trusted for the provider, and key set caching."""

    skip_oidc_discovery: bool = option(
        False, "no discovery document: give --login-url, --redeem-url and --oidc-jwks-url"
    )
    login_url: str = option("", "authorization endpoint (with --skip-oidc-discovery)")
    redeem_url: str = option("", "token endpoint (with --skip-oidc-discovery)")
    oidc_jwks_url: str = option("", "JWKS URL (with --skip-oidc-discovery)")
    profile_url: str = option("", "userinfo endpoint (with --skip-oidc-discovery; optional)")
    backend_logout_url: str = option(
        "", "URL the proxy GETs on sign-out, {id_token} replaced by the session's ID token"
    )
    auth_extra_param: StrList = option(
        help="key=value added to the authorization request, repeatable (prompt, domain_hint...)",
        default_factory=list,
    )
    provider_ca_file: StrList = option(
        help="PEM file of CA certificates trusted for the provider, repeatable; default: system store",
        default_factory=list,
    )
    insecure_oidc_allow_http: bool = option(
        False, "allow an http:// issuer that is not a loopback address (never in production)"
    )
    oidc_jwks_min_refetch: Duration = option(
        "30s", "least time between two key set fetch attempts, failed or not"
    )
    oidc_jwks_stale_if_error: Duration = option(
        "24h", "keep using known keys this long past their cache lifetime while refreshes fail"
    )

    def problems(self) -> list[str]:
        out = key_value_problems("auth_extra_param", self.auth_extra_param)
        endpoints = {
            "login_url": self.login_url,
            "redeem_url": self.redeem_url,
            "oidc_jwks_url": self.oidc_jwks_url,
        }
        if self.skip_oidc_discovery:
            out += [
                f"{flag_name(k)}: missing; --skip-oidc-discovery needs it"
                for k, v in endpoints.items()
                if not v
            ]
        for name, value in {**endpoints, "profile_url": self.profile_url}.items():
            if value and not re.fullmatch(HTTP_URL, value):
                out.append(f"{flag_name(name)}: {value!r} is not an http(s) URL")
        logout = self.backend_logout_url
        if logout and not re.fullmatch(HTTP_URL, logout.replace("{id_token}", "x")):
            out.append(f"--backend-logout-url: {logout!r} is not an http(s) URL")
        for path in self.provider_ca_file:
            if not Path(path).is_file():
                out.append(f"--provider-ca-file: {path!r} is not a readable file")
        if self.oidc_jwks_stale_if_error < 0:
            out.append("--oidc-jwks-stale-if-error: must be 0 (never) or positive, e.g. 24h")
        return out
