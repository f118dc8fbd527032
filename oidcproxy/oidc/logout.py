"""Sign-out at the provider: RP-initiated logout, token revocation, the backend logout URL, and
back-channel logout tokens.

- `end_session_url` (pure): OpenID Connect RP-Initiated Logout 1.0, section 2.
- `check_logout_token` (pure): OpenID Connect Back-Channel Logout 1.0, section 2.6: signature, `iss`,
  `aud`, a recent `iat`, `jti`, the logout event, no `nonce`, and `sid` and/or `sub`.
- `SignOut`: the I/O around them. Revocation (RFC 7009) and the backend logout URL run as background
  tasks it owns: best effort, logged, never holding up the browser. Logout token `jti`s are accepted
  once by every worker (and replica) through the SharedState.

Imports model, errors, coordination and the oidc package.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
from authlib.common.urls import add_params_to_uri

from oidcproxy.coordination import SharedState
from oidcproxy.errors import IdPUnavailable, LogoutTokenRefused, TokenInvalid
from oidcproxy.model import Clock, Tokens
from oidcproxy.oidc.client import OIDCClient
from oidcproxy.oidc.tokens import TokenCheck

__all__ = [
    "LOGOUT_EVENT",
    "MAX_HINT_CHARS",
    "LogoutRequest",
    "SignOut",
    "check_logout_token",
    "end_session_url",
]

log = logging.getLogger("oidcproxy.oidc")

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# A longer ID token (hundreds of groups) would make a Location header and a request line over the 8 KB
# that NGINX, aiohttp and most providers accept; without the hint the provider asks the person instead.
MAX_HINT_CHARS = 4096


def end_session_url(
    endpoint: str, *, id_token: str, client_id: str, post_logout_redirect_uri: str, state: str
) -> str:
    """Where to send the browser: the provider's end_session_endpoint with our parameters; the
    id_token_hint only when it fits in a URL (MAX_HINT_CHARS)."""
    params = [("client_id", client_id), ("post_logout_redirect_uri", post_logout_redirect_uri)]
    if id_token and len(id_token) <= MAX_HINT_CHARS:
        params.insert(0, ("id_token_hint", id_token))
    params.append(("state", state))
    return str(add_params_to_uri(endpoint, params))


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    """What a verified logout token asks: end the sessions of `sid` and/or `sub`."""

    issuer: str
    jti: str
    sid: str = ""
    sub: str = ""


def check_logout_token(
    token: str, key: jwt.PyJWK, check: TokenCheck, now: float, max_age_s: float = 300.0
) -> LogoutRequest:
    """The logout token's request, or LogoutTokenRefused naming the check that failed (section 2.6)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(check.algorithms),
            audience=list(check.audiences),
            issuer=check.issuer,
            options={
                "require": ["iss", "aud", "iat", "jti"],
                "verify_exp": False,  # checked below against the injected clock
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise LogoutTokenRefused(f"logout token rejected: {type(exc).__name__}: {exc}") from None
    _check_times(claims, now, check.leeway_s, max_age_s)
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(LOGOUT_EVENT), dict):
        raise LogoutTokenRefused("logout token lacks the back-channel logout event")
    if "nonce" in claims:
        # Section 2.4: a nonce is prohibited, so an ID token cannot pass as a logout token.
        raise LogoutTokenRefused("logout token carries a nonce")
    sid, sub, jti = claims.get("sid", ""), claims.get("sub", ""), claims.get("jti")
    if not isinstance(sid, str) or not isinstance(sub, str) or not (sid or sub):
        raise LogoutTokenRefused("logout token names neither a sid nor a sub")
    if not isinstance(jti, str) or not jti:
        raise LogoutTokenRefused("logout token has no jti")
    return LogoutRequest(issuer=str(claims["iss"]), jti=jti, sid=sid, sub=sub)


def _check_times(claims: dict[str, Any], now: float, leeway: float, max_age_s: float) -> None:
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or iat > now + leeway:
        raise LogoutTokenRefused("logout token issued in the future")
    if iat < now - max_age_s - leeway:
        raise LogoutTokenRefused(f"logout token older than {max_age_s:g}s")
    exp = claims.get("exp")
    if exp is not None and (not isinstance(exp, int | float) or now > exp + leeway):
        raise LogoutTokenRefused("logout token expired")


class SignOut:
    """The provider side of signing out, for the handlers; owns its background tasks."""

    def __init__(
        self,
        client: OIDCClient,
        http: aiohttp.ClientSession,
        shared: SharedState,
        clock: Clock,
        *,
        backend_logout_url: str = "",
        max_age_s: float = 300.0,
    ) -> None:
        self._client = client
        self._http = http
        self._shared = shared
        self._clock = clock
        self._backend_logout_url = backend_logout_url
        self._max_age_s = max_age_s
        self._tasks: set[asyncio.Task[None]] = set()

    async def end_session_endpoint(self) -> str:
        """The provider's end_session_endpoint; empty when it has none or cannot be reached now."""
        try:
            return (await self._client.metadata()).end_session_endpoint
        except IdPUnavailable as exc:
            log.warning("sign-out stays local: provider discovery failed: %s", exc.detail)
            return ""

    def revoke_later(self, tokens: Tokens, *, at_provider: bool) -> None:
        """Revoke the refresh token (when `at_provider`) and call the backend logout URL, in the
        background: a failure is logged and never holds up the sign-out."""
        if at_provider and tokens.refresh_token:
            self._spawn(self._revoke(tokens.refresh_token), "revoke-refresh-token")
        if self._backend_logout_url and tokens.id_token:
            self._spawn(self._backend_logout(tokens.id_token), "backend-logout")

    async def verify(self, token: str) -> LogoutRequest:
        """A back-channel logout token, verified and accepted once; LogoutTokenRefused otherwise."""
        client = self._client
        meta = await client.metadata()
        check = TokenCheck(
            issuer=meta.issuer, audiences=(client.config.client_id,), algorithms=client.algorithms(meta)
        )
        try:
            key = await client.signing_key(token, check.algorithms)
        except TokenInvalid as exc:
            raise LogoutTokenRefused(exc.detail) from None
        request = check_logout_token(token, key, check, self._clock(), self._max_age_s)
        digest = hashlib.sha256(f"{request.issuer}\n{request.jti}".encode()).hexdigest()[:32]
        ttl = self._max_age_s + 2 * check.leeway_s  # older tokens fail the iat check anyway
        if await self._shared.add("logout/jti/" + digest, "", ttl) is not None:
            raise LogoutTokenRefused("logout token replayed (its jti was seen before)")
        return request

    async def idle(self) -> None:
        """Wait for the background calls in flight (tests, and a graceful stop)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _revoke(self, refresh_token: str) -> None:
        try:
            if await self._client.revoke(refresh_token):
                log.info("refresh token revoked at the provider")
        except IdPUnavailable as exc:
            log.warning("refresh token not revoked at the provider: %s", exc.detail)

    async def _backend_logout(self, id_token: str) -> None:
        # oauth2-proxy's --backend-logout-url: a GET from the proxy, `{id_token}` replaced.
        url = self._backend_logout_url.replace("{id_token}", quote(id_token, safe=""))
        try:
            async with self._http.get(url) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("backend logout failed: %s", type(exc).__name__)
            return
        if status >= 300:
            log.warning("backend logout answered %d", status)
