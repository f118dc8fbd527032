"""In-memory state of the development provider: authorization codes, access and refresh tokens.

The records duck-type authlib's AuthorizationCodeMixin and TokenMixin (authlib only calls their
methods). Nothing is persisted. Imports only `idp.config` from the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from oidcproxy.idp.config import DevUser

__all__ = ["AccessRecord", "CodeRecord", "ProviderSession", "RefreshRecord", "Store"]


@dataclass(frozen=True, slots=True)
class CodeRecord:
    """One issued authorization code, bound to client, redirect URI and PKCE challenge."""

    code: str = field(repr=False)
    client_id: str
    redirect_uri: str
    scope: str
    user: DevUser
    auth_time: int
    expires_at: float
    code_challenge: str = field(repr=False)
    code_challenge_method: str
    nonce: str | None = field(default=None, repr=False)
    sid: str = ""

    # authlib's AuthorizationCodeMixin (rfc6749 and oidc.core)
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> list[str]:
        return ["pwd"]


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    """A refresh token; one use only (rotation: the grant revokes it when it issues the next)."""

    token: str = field(repr=False)
    client_id: str
    scope: str
    user: DevUser
    auth_time: int
    sid: str = ""

    # authlib's TokenMixin, as far as RefreshTokenGrant uses it
    def check_client(self, client: object) -> bool:
        return getattr(client, "client_id", None) == self.client_id

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """What /userinfo needs to answer for an opaque access token."""

    client_id: str
    scope: str
    user: DevUser
    expires_at: float


@dataclass(frozen=True, slots=True)
class ProviderSession:
    """One sign-in at the provider (its `sid` goes into the ID tokens, OIDC Back-Channel Logout 2.1)."""

    sid: str
    user: DevUser
    client_id: str


@dataclass(slots=True)
class Store:
    """Everything the provider remembers, keyed by the secret strings it handed out."""

    codes: dict[str, CodeRecord] = field(default_factory=dict)
    access: dict[str, AccessRecord] = field(default_factory=dict)
    refresh: dict[str, RefreshRecord] = field(default_factory=dict)
    sessions: dict[str, ProviderSession] = field(default_factory=dict)

    def __repr__(self) -> str:
        sizes = f"codes={len(self.codes)}, access={len(self.access)}, refresh={len(self.refresh)}"
        return f"Store({sizes})"

    def take_code(self, code: str, now: float) -> CodeRecord | None:
        """Remove and return a live code. Any presentation consumes it (RFC 6749 4.1.2: single
        use), so a failed exchange, e.g. a wrong PKCE verifier, cannot be retried."""
        record = self.codes.pop(code, None)
        if record is None or now >= record.expires_at:
            return None
        return record

    def nonce_in_use(self, client_id: str, nonce: str, now: float) -> bool:
        return any(
            r.client_id == client_id and r.nonce == nonce and now < r.expires_at for r in self.codes.values()
        )

    def live_access(self, token: str, now: float) -> AccessRecord | None:
        record = self.access.get(token)
        if record is None or now >= record.expires_at:
            return None
        return record

    def end_sessions(self, *, sid: str = "", sub: str = "") -> list[ProviderSession]:
        """End the provider session `sid`, or every one of `sub`; their refresh tokens stop working."""
        ended = [s for s in self.sessions.values() if s.sid == sid or (sub and s.user.subject == sub)]
        gone = {s.sid for s in ended}
        for session in ended:
            del self.sessions[session.sid]
        self.refresh = {k: v for k, v in self.refresh.items() if v.sid not in gone}
        return ended

    def prune(self, now: float) -> None:
        """Drop expired codes and access tokens so a long-running dev provider stays small."""
        self.codes = {k: v for k, v in self.codes.items() if now < v.expires_at}
        self.access = {k: v for k, v in self.access.items() if now < v.expires_at}
