"""The development provider's configuration and its people: clients, settings, signed-in users.

Pure values and small pure checks (redirect matching, subject derivation). Imports only
oidcproxy.model from the project.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from oidcproxy.model import Clock, system_clock

__all__ = [
    "SCOPES",
    "DevUser",
    "IdPClient",
    "IdPConfig",
    "is_loopback_host",
    "is_loopback_uri",
    "subject_for",
]

#: Scopes the provider grants; anything else requested is ignored, as most providers do.
SCOPES = ("openid", "profile", "email", "groups", "offline_access")

# Fixed and issuer-independent, so that one email has one `sub` in every process and under every
# mount point: tests and bookmarked dashboards see the same person after a restart.
_SUBJECT_SALT = b"oidcproxy-dev-idp/sub/v1:"


@dataclass(frozen=True, slots=True)
class IdPClient:
    """One registered relying party.

    `allow_loopback_redirects` also accepts any http(s) redirect to a loopback host on any port
    (RFC 8252 7.3); the standalone provider turns it on when no redirect URL was given.
    """

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    allow_loopback_redirects: bool = False
    backchannel_logout_uri: str = ""  # OIDC Back-Channel Logout 1.0, section 2.2

    def accepts_redirect(self, uri: str) -> bool:
        """Exact string match (OIDC Core 3.1.2.1), or any loopback URI when allowed."""
        return uri in self.redirect_uris or (self.allow_loopback_redirects and is_loopback_uri(uri))

    def accepts_post_logout_redirect(self, uri: str) -> bool:
        return uri in self.post_logout_redirect_uris or (
            self.allow_loopback_redirects and is_loopback_uri(uri)
        )


@dataclass(frozen=True, slots=True)
class IdPConfig:
    """Everything the provider needs; all endpoint URLs are `issuer` + a fixed path."""

    issuer: str
    clients: tuple[IdPClient, ...]
    signing_alg: str = "RS256"
    access_token_ttl: int = 3600
    id_token_ttl: int = 3600
    code_ttl: int = 60
    # Each refresh returns a new refresh token and revokes the one redeemed, so a reused one gets
    # invalid_grant (Keycloak "Revoke Refresh Token", Okta, Auth0). Off: one token serves every refresh.
    rotate_refresh_tokens: bool = True
    clock: Clock = system_clock

    def __post_init__(self) -> None:
        if self.signing_alg not in ("RS256", "ES256"):
            raise ValueError(f"signing_alg must be RS256 or ES256, not {self.signing_alg!r}")
        parts = urlsplit(self.issuer)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"issuer must be an absolute http(s) URL, not {self.issuer!r}")
        if parts.query or parts.fragment or self.issuer.endswith("/"):
            # OIDC Discovery 3: no query or fragment; a trailing slash would double every path.
            raise ValueError("issuer must have no query, fragment or trailing slash")
        if len({c.client_id for c in self.clients}) != len(self.clients):
            raise ValueError("client ids must be unique")

    def endpoint(self, path: str) -> str:
        return self.issuer + path

    def client(self, client_id: str) -> IdPClient | None:
        return next((c for c in self.clients if c.client_id == client_id), None)


@dataclass(frozen=True, slots=True)
class DevUser:
    """Whoever typed an email into the login form; any password is accepted."""

    email: str
    name: str = ""
    groups: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        return subject_for(self.email)

    @property
    def preferred_username(self) -> str:
        return self.email.partition("@")[0]

    def claims(self) -> dict[str, object]:
        """The standard claims (OIDC Core 5.1) plus `groups`, for ID tokens and /userinfo."""
        return {
            "sub": self.subject,
            "email": self.email,
            "email_verified": True,
            "name": self.name or self.preferred_username,
            "preferred_username": self.preferred_username,
            "groups": list(self.groups),
        }


def subject_for(email: str) -> str:
    """A stable, opaque `sub`: base64url(sha256(salt + lower-cased email)), 22 characters."""
    digest = hashlib.sha256(_SUBJECT_SALT + email.strip().lower().encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:22]


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_uri(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and parts.hostname is not None
        and is_loopback_host(parts.hostname)
        and not parts.fragment
        and not parts.username
    )
