"""--skip-jwt-bearer-tokens: `Authorization: Bearer <JWT>` instead of a session cookie (OKD's direct
authentication), for kubectl, scripts and CLIs.

A token passes when it is signed by a configured provider's issuer (with that provider's audiences;
an Entra ID provider answers for both issuers of its tenant) or one of --extra-jwt-issuers (each
with its own audiences), unexpired, with an asymmetric algorithm the issuer advertises. The caller
applies the rules of the provider `verify` names. An extra issuer
equal to ours adds an accepted audience (a CLI's own client at the same realm, as in oauth2-proxy).
Other extra issuers are discovered lazily, each with its own cached key set. Anything malformed or
hostile is a NotAuthenticated (401), never another error. Imports model, errors and the oidc package only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import jwt

from oidcproxy.errors import NotAuthenticated, TokenInvalid
from oidcproxy.model import DEFAULT_PROVIDER, Clock
from oidcproxy.oidc.claims import ClaimMapping
from oidcproxy.oidc.client import OIDCClient, ProviderConfig
from oidcproxy.oidc.providers import Provider, Providers
from oidcproxy.oidc.tokens import TokenCheck, is_jwt

__all__ = ["BearerVerifier", "bearer_token"]


def bearer_token(authorization: str) -> str | None:
    """The JWT in an `Authorization: Bearer` header (RFC 6750 2.1), else None (opaque or absent)."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not is_jwt(token):
        return None
    return token


class BearerVerifier:
    """Verifies bearer JWTs from any configured provider (its issuers, its audiences) or extra issuer."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        providers: Providers | OIDCClient,
        extra_issuers: tuple[tuple[str, str], ...],
        clock: Clock,
    ) -> None:
        if isinstance(
            providers, OIDCClient
        ):  # one client: a registry of one (its claims mapped by the caller)
            providers = Providers([Provider(DEFAULT_PROVIDER, "", providers, ClaimMapping())])
        self._http = http
        self._providers = providers
        self._client = providers.first.client
        self._clock = clock
        # issuer -> (provider, audiences): each provider's own issuers, then its extra audiences
        self._own: dict[str, tuple[Provider, tuple[str, ...]]] = {}
        for provider in providers:
            for issuer in provider.issuers:
                self._own.setdefault(issuer, (provider, provider.audiences))
        self._extra: dict[str, tuple[str, ...]] = {}
        for issuer, audience in extra_issuers:
            if issuer in self._own:  # an extra audience of that provider (a CLI's own client)
                provider, audiences = self._own[issuer]
                self._own[issuer] = (provider, (*audiences, audience))
            else:
                self._extra[issuer] = (*self._extra.get(issuer, ()), audience)
        self._extra_clients: dict[str, OIDCClient] = {}
        self._lock = asyncio.Lock()

    async def claims(self, token: str) -> dict[str, Any]:
        """Verified claims, or NotAuthenticated naming why the token was refused."""
        return (await self.verify(token))[1]

    async def verify(self, token: str) -> tuple[str, dict[str, Any]]:
        """The id of the provider whose rules apply (an extra issuer: the first provider's) and the
        verified claims, or NotAuthenticated naming why the token was refused."""
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as exc:
            raise NotAuthenticated(f"bearer token unreadable: {type(exc).__name__}") from None
        if not isinstance(issuer, str):
            raise NotAuthenticated(f"bearer token without a string iss: {type(issuer).__name__}")
        try:
            if issuer in self._own:
                provider, audiences = self._own[issuer]
                return provider.id, await self._verify(provider.client, issuer, audiences, token)
            if issuer in self._extra:
                client = await self._extra_client(issuer)
                claims = await self._verify(client, issuer, self._extra[issuer], token)
                return self._providers.first.id, claims
        except TokenInvalid as exc:
            public = exc.public if exc.public != TokenInvalid.public else None
            raise NotAuthenticated(f"bearer token refused: {exc.detail}", public=public) from None
        raise NotAuthenticated(f"bearer token from an issuer not accepted here: {issuer!r}")

    async def _verify(
        self, client: OIDCClient, issuer: str, audiences: tuple[str, ...], token: str
    ) -> dict[str, Any]:
        meta = await client.metadata()
        check = TokenCheck(issuer=issuer, audiences=audiences, algorithms=client.algorithms(meta))
        return await client.verify(token, check)

    async def close(self) -> None:
        for client in self._extra_clients.values():
            await client.close()

    async def _extra_client(self, issuer: str) -> OIDCClient:
        async with self._lock:
            client = self._extra_clients.get(issuer)
            if client is None:
                config = ProviderConfig(
                    issuer=issuer,
                    client_id=self._extra[issuer][0],
                    client_secret="",
                    jwks_min_refetch_s=self._client.config.jwks_min_refetch_s,
                    jwks_stale_if_error_s=self._client.config.jwks_stale_if_error_s,
                    max_response_bytes=self._client.config.max_response_bytes,
                )
                client = self._extra_clients[issuer] = OIDCClient(self._http, config, self._clock)
            return client
