"""The revocation list: (sid or sub, time) entries that sessions signed in before that time fail against.

This is how a sign-out or a back-channel logout reaches sessions held in a stateless cookie (a copy of
the cookie, another browser of the same person). The list lives in the SharedState, so every worker
(and, with Redis, every replica) sees it; each process keeps a local copy, refreshed from the shared
state every `refresh_s` by one background task, and the hot path only ever does two dict lookups.

The shared state holds text keys only, so the list is an append-only run of numbered slots, each
claimed with `add` (atomic, so two writers never take the same slot):

    revoked/<n>     one entry, JSON [kind, value, at], living `lifetime_s` (the longest session)
    revoked/last    the highest slot written: readers compare it with their cursor, one get per poll

All slots live equally long, so the live ones are always a contiguous run ending at `last`; a reader
that fell behind (or a new one) finds the run's start by bisection. Imports model, errors and state only.
"""

from __future__ import annotations

import asyncio
import json
import logging

from oidcproxy.coordination.state import SharedState
from oidcproxy.errors import StateUnavailable
from oidcproxy.model import Clock, Session, scoped

__all__ = ["Revocations"]

log = logging.getLogger("oidcproxy.sharedstate")

_SLOT, _LAST = "revoked/", "revoked/last"
_LAST_TTL_S = 400 * 86400.0  # outlives every slot, so a writer never restarts the run at 0 early


class Revocations:
    """The local copy of the revocation list, and the writes and polls that keep it in step."""

    __slots__ = ("_clock", "_cursor", "_entries", "_lifetime_s", "_shared", "refresh_s")

    def __init__(self, shared: SharedState, clock: Clock, lifetime_s: float, refresh_s: float = 2.0) -> None:
        self._shared = shared
        self._clock = clock
        self._lifetime_s = lifetime_s
        self.refresh_s = refresh_s
        self._entries: dict[str, float] = {}  # "sid:<v>" / "sub:<v>" -> revoked at
        self._cursor = -1  # the last slot read

    def __len__(self) -> int:
        return len(self._entries)

    def revoked(self, session: Session) -> bool:
        """Whether the session was signed in before its sid or its sub was revoked. No I/O."""
        entries = self._entries
        if not entries:
            return False
        signed_in = session.login_time
        at = entries.get("sid:" + scoped(session.provider, session.sid)) if session.sid else None
        if at is not None and signed_in <= at:
            return True
        at = entries.get("sub:" + scoped(session.provider, session.identity.subject))
        return at is not None and signed_in <= at

    async def revoke(self, *, sid: str = "", sub: str = "") -> None:
        """Revoke every session of `sid` and/or `sub` (as `model.scoped` keys them) signed in until now.
        StateUnavailable on faults; this process refuses them at once either way."""
        now = self._clock()
        for kind, value in (("sid", sid), ("sub", sub)):
            if value:
                self._note(kind, value, now)
                await self._append(json.dumps([kind, value, now]))

    async def sync(self) -> None:
        """Read the slots written since the last sync (one get when there are none)."""
        last = await self._shared.get(_LAST)
        if last is None:
            return
        end = int(last)
        if end < self._cursor:
            self._cursor = -1  # every slot expired and a writer started the run again at 0
        if end <= self._cursor:
            self._prune()
            return
        if await self._shared.get(_SLOT + str(self._cursor + 1)) is None:
            self._cursor = await self._first_live(self._cursor + 1, end) - 1
        while (value := await self._shared.get(_SLOT + str(self._cursor + 1))) is not None:
            self._cursor += 1
            self._apply(value)
        self._prune()

    async def keep_fresh(self) -> None:
        """Sync every `refresh_s` until cancelled (the app's cleanup context owns this task)."""
        while True:
            try:
                await self.sync()
            except StateUnavailable as exc:
                log.warning("revocation list not refreshed: %s", exc.detail)
            except ValueError as exc:
                log.warning("revocation list not refreshed: unreadable %s", exc)
            await asyncio.sleep(self.refresh_s)

    async def _append(self, value: str) -> None:
        last = await self._shared.get(_LAST)
        slot = int(last) + 1 if last is not None else 0
        while await self._shared.add(_SLOT + str(slot), value, self._lifetime_s) is not None:
            slot += 1  # another writer took it
        await self._shared.set(_LAST, str(slot), _LAST_TTL_S)

    async def _first_live(self, low: int, high: int) -> int:
        """The lowest live slot in [low, high] (all live slots form one run ending at `high`)."""
        while low < high:
            mid = (low + high) // 2
            if await self._shared.get(_SLOT + str(mid)) is None:
                low = mid + 1
            else:
                high = mid
        return low

    def _apply(self, value: str) -> None:
        try:
            kind, subject, at = json.loads(value)
        except (ValueError, TypeError):
            kind = subject = at = None
        if kind in ("sid", "sub") and isinstance(subject, str) and isinstance(at, int | float):
            self._note(kind, subject, float(at))
        else:
            log.warning("revocation list: unreadable entry skipped")

    def _note(self, kind: str, value: str, at: float) -> None:
        key = f"{kind}:{value}"
        self._entries[key] = max(at, self._entries.get(key, at))

    def _prune(self) -> None:
        horizon = self._clock() - self._lifetime_s
        if any(at < horizon for at in self._entries.values()):
            self._entries = {k: at for k, at in self._entries.items() if at >= horizon}
