"""Session refresh: a pure decision (`refresh_state`) and the Refresher that does the I/O once per session.

`created_at` of a Session is when its tokens were last issued (login or refresh), as oauth2-proxy's
CreatedAt; `expires_at` is the sealed lifetime, which a refresh never extends. Providers rotate refresh
tokens and refuse (some revoke the whole grant on) a reused one, so each refresh token is redeemed at
most once by all the workers sharing a SharedState:

    lock/<h>     "busy" while one worker refreshes; then "rotated" for the rest of the session's life
    result/<h>   for reuse_s: the refreshed session, sealed as its cookie is ("retry" after a transient
                 fault, "refused:<error>" when the provider ended the session)

Requests still carrying the old cookie get that result (and its cookie). After reuse_s a rotated token
is never sent again: the old session serves while its tokens last, then NotAuthenticated without
clearing the cookie, since the browser already holds the newer one (RefreshSuperseded). Imports
model, errors, coordination and the oidc package only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
from dataclasses import dataclass
from typing import Literal, Protocol

from oidcproxy.coordination import SharedState
from oidcproxy.errors import (
    IdPUnavailable,
    LoginFailed,
    RefreshRefused,
    RefreshSuperseded,
    StateUnavailable,
)
from oidcproxy.model import Clock, Session
from oidcproxy.oidc.providers import Providers

__all__ = ["RefreshPolicy", "RefreshState", "Refresher", "SessionSeal", "refresh_state"]

log = logging.getLogger("oidcproxy.refresh")

RefreshState = Literal["fresh", "refresh", "dead"]
_BUSY, _ROTATED, _RETRY, _REFUSED = "busy", "rotated", "retry", "refused:"


class SessionSeal(Protocol):
    """Seals a session as its cookie is (session.SessionCodec): what other workers get is opaque."""

    def encode(self, session: Session) -> str: ...
    def decode(self, sealed: str) -> Session | None: ...


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    cookie_refresh_s: float = 0.0  # --cookie-refresh; 0: only the tokens' own expiry drives refresh
    retry_after_s: float = 30.0  # after a transient failure, serve the old session this long
    reuse_s: float = 30.0  # how long a finished refresh answers requests with the old cookie
    lock_s: float = 15.0  # longest one refresh may take; others wait for it that long
    max_early_s: float = 60.0  # refresh at most this long before the access token expires


def refresh_state(session: Session, policy: RefreshPolicy, now: float) -> RefreshState:
    """fresh: use as is; refresh: refresh first; dead: expired tokens and nothing to refresh them with."""
    tokens = session.tokens
    due = bool(policy.cookie_refresh_s) and now - session.created_at >= policy.cookie_refresh_s
    if tokens.expires_at:
        # Refresh shortly before expiry (a fifth of the lifetime, at most max_early_s), so the token
        # passed upstream is never one that expires in flight.
        early = min(policy.max_early_s, max(0.0, tokens.expires_at - session.created_at) / 5)
        due = due or now >= tokens.expires_at - early
    if not due:
        return "fresh"
    if tokens.refresh_token:
        return "refresh"
    return "dead" if tokens.expires_at and now >= tokens.expires_at else "fresh"


class Refresher:
    """Refreshes sessions at the token endpoint: one task per refresh token here, one worker of all."""

    def __init__(
        self,
        providers: Providers,
        policy: RefreshPolicy,
        clock: Clock,
        *,
        shared: SharedState,
        seal: SessionSeal,
    ) -> None:
        self._providers = providers
        self.policy = policy
        self._clock = clock
        self._shared = shared
        self._seal = seal
        self._inflight: dict[str, asyncio.Task[Session]] = {}

    async def refresh(self, session: Session) -> Session:
        """The refreshed session, or `session` itself while a transient fault lasts.

        Raises RefreshRefused when the provider will never refresh it (the session must end),
        Forbidden when the new tokens no longer satisfy the required claims, and RefreshSuperseded
        for an old cookie whose tokens have expired after another request refreshed them.
        """
        key = _key(session.tokens.refresh_token)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._settle(session, key), name="session-refresh")
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._done, key))
        try:
            return await asyncio.shield(task)
        except IdPUnavailable as exc:
            log.warning("refresh failed, keeping the session and retrying later: %s", exc.detail)
            return session
        except StateUnavailable as exc:
            log.warning("refresh postponed, shared state unavailable: %s", exc.detail)
            return session

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _settle(self, session: Session, key: str) -> Session:
        """Reuse another worker's result, wait for the one refreshing, or refresh here."""
        shared = self._shared
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.lock_s
        wait = 0.0
        while True:
            result = await shared.get(_RESULT + key, wait_s=wait)
            if result is not None:
                return self._reuse(result, session)
            holder = await shared.add(_LOCK + key, _BUSY, self.policy.lock_s)
            if holder is None:
                return await self._lead(session, key)
            if holder == _ROTATED:
                return self._superseded(session)
            if loop.time() >= deadline:
                raise IdPUnavailable("another worker's refresh of this session did not finish in time")
            wait = 0.2  # woken as soon as that worker stores its result

    async def _lead(self, session: Session, key: str) -> Session:
        """Holding the lock: refresh, publish the outcome, then mark the old refresh token rotated."""
        shared, policy = self._shared, self.policy
        late = await shared.get(_RESULT + key)  # stored between our get and our add
        if late is not None:
            await shared.delete(_LOCK + key)
            return self._reuse(late, session)
        try:
            fresh = await self._refresh(session)
        except LoginFailed as exc:  # RefreshRefused, or new tokens that fail validation
            error = exc.error if isinstance(exc, RefreshRefused) else "invalid_token"
            await shared.set(_RESULT + key, _REFUSED + error, policy.reuse_s)
            await shared.delete(_LOCK + key)
            raise
        except IdPUnavailable:
            await shared.set(_RESULT + key, _RETRY, policy.retry_after_s)
            await shared.delete(_LOCK + key)
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                await shared.delete(_LOCK + key)
            raise
        now = self._clock()
        await shared.set(_RESULT + key, self._seal.encode(fresh), policy.reuse_s)
        await shared.set(_LOCK + key, _ROTATED, max(policy.reuse_s, session.expires_at - now))
        return fresh

    def _reuse(self, result: str, session: Session) -> Session:
        if result == _RETRY:
            return session  # a transient fault elsewhere: serve the old session until retry_after_s
        if result.startswith(_REFUSED):
            error = result.removeprefix(_REFUSED)
            raise RefreshRefused(f"refused for another request: {error}", error)
        fresh = self._seal.decode(result)
        if fresh is None:
            raise IdPUnavailable("the shared refresh result could not be opened (another cookie secret?)")
        return fresh

    def _superseded(self, session: Session) -> Session:
        if session.tokens.expires_at > self._clock():
            return session
        raise RefreshSuperseded("old cookie: its refresh token was already redeemed for a newer one")

    async def _refresh(self, session: Session) -> Session:
        provider = self._providers.for_session(session)  # the provider that signed this session in
        tokens, claims = await provider.client.refresh(session.tokens)
        identity = session.identity
        if claims is not None:
            if claims.get("sub") != identity.subject:
                # OIDC Core 12.2: a refreshed ID token must be about the same person.
                raise RefreshRefused("refreshed ID token names another subject", "invalid_grant")
            identity = provider.claims.identity(claims)
        log.info("session refreshed: %s", identity.email or identity.user)
        return dataclasses.replace(session, identity=identity, tokens=tokens, created_at=self._clock())

    def _done(self, key: str, task: asyncio.Task[Session]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # marks it retrieved when every waiter went away


_LOCK, _RESULT = "refresh/lock/", "refresh/result/"


def _key(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()[:32]
