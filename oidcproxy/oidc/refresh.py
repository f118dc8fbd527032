"""Session refresh: a pure decision (`refresh_state`) and the Refresher that does the I/O once per session.

`created_at` of a Session is when its tokens were last issued (login or refresh), as oauth2-proxy's
CreatedAt; `expires_at` is the sealed lifetime, which a refresh never extends. One refresh per refresh
token at a time: concurrent requests await the same task, and requests still carrying the old cookie
shortly after get the same result (providers rotate refresh tokens, and replaying a rotated one may
revoke the whole grant). Imports model, errors and the oidc package only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from oidcproxy.errors import IdPUnavailable
from oidcproxy.model import Clock, Session
from oidcproxy.oidc.claims import ClaimMapping
from oidcproxy.oidc.client import OIDCClient, RefreshRefused

__all__ = ["RefreshPolicy", "RefreshState", "Refresher", "refresh_state"]

log = logging.getLogger("oidcproxy.refresh")

RefreshState = Literal["fresh", "refresh", "dead"]
_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    cookie_refresh_s: float = 0.0  # --cookie-refresh; 0: only the tokens' own expiry drives refresh
    retry_after_s: float = 30.0  # after a transient failure, serve the old session this long
    reuse_s: float = 30.0  # how long a finished refresh answers requests with the old cookie
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


def _key(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()[:32]


class Refresher:
    """Refreshes sessions at the token endpoint, one task per refresh token."""

    def __init__(self, client: OIDCClient, claims: ClaimMapping, policy: RefreshPolicy, clock: Clock) -> None:
        self._client = client
        self._claims = claims
        self.policy = policy
        self._clock = clock
        self._inflight: dict[str, asyncio.Task[Session]] = {}
        self._recent: dict[str, tuple[float, Session]] = {}
        self._retry_at: dict[str, float] = {}
        self.refreshes = 0

    async def refresh(self, session: Session) -> Session:
        """The refreshed session, or `session` itself while a transient fault lasts.

        Raises RefreshRefused when the provider will never refresh it (the session must end), and
        Forbidden when the new tokens no longer satisfy the required claims.
        """
        key = _key(session.tokens.refresh_token)
        now = self._clock()
        recent = self._recent.get(key)
        if recent is not None and recent[0] > now:
            return recent[1]
        if self._retry_at.get(key, 0.0) > now:
            return session
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._refresh(session), name="session-refresh")
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._done, key))
        try:
            return await asyncio.shield(task)
        except IdPUnavailable as exc:
            log.warning("refresh failed, keeping the session and retrying later: %s", exc.detail)
            return session

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _refresh(self, session: Session) -> Session:
        self.refreshes += 1
        tokens, claims = await self._client.refresh(session.tokens)
        identity = session.identity
        if claims is not None:
            if claims.get("sub") != identity.subject:
                # OIDC Core 12.2: a refreshed ID token must be about the same person.
                raise RefreshRefused("refreshed ID token names another subject", "invalid_grant")
            identity = self._claims.identity(claims)
        log.info("session refreshed: %s", identity.email or identity.user)
        return Session(identity, tokens, created_at=self._clock(), expires_at=session.expires_at)

    def _done(self, key: str, task: asyncio.Task[Session]) -> None:
        self._inflight.pop(key, None)
        if task.cancelled():
            return
        now = self._clock()
        error = task.exception()  # also marks it retrieved when every waiter went away
        if error is None:
            _put(self._recent, key, (now + self.policy.reuse_s, task.result()), now, lambda v: v[0])
        elif isinstance(error, IdPUnavailable):
            _put(self._retry_at, key, now + self.policy.retry_after_s, now, lambda v: v)


_V = TypeVar("_V")


def _put(table: dict[str, _V], key: str, value: _V, now: float, until: Callable[[_V], float]) -> None:
    """Insert, first dropping entries that are over (and the oldest ones past a size bound)."""
    for stale in [k for k, v in table.items() if until(v) <= now]:
        del table[stale]
    while len(table) >= _MAX_ENTRIES:
        del table[next(iter(table))]
    table[key] = value
