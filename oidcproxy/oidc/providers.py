"""The configured providers, keyed by id: which one a login, a session, a token or a callback belongs to.

`web.app` builds one `Provider` per configured provider (its client, its claim mapping, the issuers
it answers for) into a `Providers` registry; everything after sign-in looks the provider up from
the session (`for_session`), a logout token or bearer JWT from its `iss` (`by_issuer`). One provider
is the common case: a registry of one, the id "default", and nothing else changes.
`authorization_iss_problem` is the RFC 9207 check of a callback's `iss`. Imports model, errors and
the oidc package only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import jwt

from oidcproxy.errors import LoginFailed, LogoutTokenRefused, NotAuthenticated
from oidcproxy.model import DEFAULT_PROVIDER, Session
from oidcproxy.oidc.claims import ClaimMapping
from oidcproxy.oidc.client import OIDCClient
from oidcproxy.oidc.metadata import ProviderMetadata

__all__ = ["DEFAULT_PROVIDER", "Provider", "Providers", "authorization_iss_problem", "entra_issuers"]


def entra_issuers(tenant: str) -> tuple[str, str]:
    """Entra ID's two issuers of one tenant: v2 (login.microsoftonline.com) and v1 (sts.windows.net).

    Which one a token carries depends on the app registration's `accessTokenAcceptedVersion` and on
    the endpoint that issued it, not on the person: a provider of type entra accepts both.
    """
    return f"https://login.microsoftonline.com/{tenant}/v2.0", f"https://sts.windows.net/{tenant}/"


def authorization_iss_problem(meta: ProviderMetadata, iss: str | None) -> str:
    """RFC 9207 2.4: why a callback's `iss` is refused, or "" when it passes.

    A provider that advertises `authorization_response_iss_parameter_supported` must send it, equal
    to its issuer; an `iss` that is present is compared whatever the provider advertises.
    """
    if iss is None:
        if meta.authorization_response_iss_parameter_supported:
            return f"callback without iss, and {meta.issuer} always sends it (RFC 9207): mix-up?"
        return ""
    if iss != meta.issuer:
        return f"callback iss {iss[:200]!r} is not this login's provider {meta.issuer!r} (mix-up?)"
    return ""


@dataclass(frozen=True, slots=True)
class Provider:
    """One configured provider: its id and button text, its client and its claim mapping."""

    id: str
    display_name: str
    client: OIDCClient
    claims: ClaimMapping

    @property
    def issuers(self) -> tuple[str, ...]:
        """The issuers this provider's tokens may carry (configured ones; discovery must agree)."""
        config = self.client.config
        own = (config.issuer, *config.also_issuers)
        return own + ((config.validator_issuer,) if config.validator_issuer not in ("", *own) else ())

    @property
    def audiences(self) -> tuple[str, ...]:
        """The audiences of this provider's tokens we accept: our client id, the extra ones (api://)."""
        config = self.client.config
        extra = (config.validator_client_id,) if config.validator_client_id else ()
        return (config.client_id, *config.extra_audiences, *extra)


class Providers:
    """The registry: providers by id, in the order configured (the sign-in page's order)."""

    __slots__ = ("_by_id", "_by_issuer", "_order")

    def __init__(self, providers: Sequence[Provider]) -> None:
        if not providers:
            raise ValueError("at least one provider")
        self._order = tuple(providers)
        self._by_id = {p.id: p for p in providers}
        self._by_issuer: dict[str, Provider] = {}
        for provider in providers:
            for issuer in provider.issuers:
                self._by_issuer.setdefault(issuer, provider)

    def __iter__(self) -> Iterator[Provider]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    @property
    def single(self) -> bool:
        """One provider: no chooser, the callback at /oauth2/callback, everything as before."""
        return len(self._order) == 1

    @property
    def first(self) -> Provider:
        return self._order[0]

    def get(self, provider_id: str) -> Provider:
        """The provider a sign-in names (`/oauth2/start?provider=ID`); LoginFailed for an unknown id."""
        found = self._by_id.get(provider_id)
        if found is None:
            raise LoginFailed(f"no provider {provider_id[:40]!r} is configured")
        return found

    def for_session(self, session: Session) -> Provider:
        """The provider that signed the session in: refresh, userinfo and sign-out go there.

        NotAuthenticated when it is no longer configured (its sessions end; README: Several providers).
        """
        found = self._by_id.get(session.provider)
        if found is None:
            raise NotAuthenticated(f"session of provider {session.provider!r}, which is not configured")
        return found

    def by_issuer(self, iss: str) -> Provider | None:
        """The provider a token's `iss` names (Entra: either issuer of the tenant); None if none does.

        Back-channel logout: a logout token ends only sessions whose `provider` is this one's id.
        """
        return self._by_issuer.get(iss)

    def of_token(self, token: str) -> Provider:
        """The provider whose issuer the (not yet verified) token names: whose keys and checks verify
        it next. LogoutTokenRefused when it is unreadable or names no configured provider."""
        try:
            iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as exc:
            raise LogoutTokenRefused(f"token unreadable: {type(exc).__name__}") from None
        found = self._by_issuer.get(iss) if isinstance(iss, str) else None
        if found is None:
            raise LogoutTokenRefused(
                f"token from an issuer that is no configured provider: {str(iss)[:200]!r}"
            )
        return found

    def issued(self, iss: str, session: Session) -> bool:
        """Whether a token from `iss` (a back-channel logout token, say) speaks for this session's
        provider: a logout token from provider A never ends a session of provider B."""
        found = self._by_issuer.get(iss)
        return found is not None and found.id == session.provider
