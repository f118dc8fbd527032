"""The provider's key set, cached. An unknown `kid` causes one shared, rate-limited refetch.

Fetched with aiohttp and parsed with `jwt.PyJWKSet` (never `jwt.PyJWKClient`, which blocks).
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import jwt

from oidcproxy.model import Clock
from oidcproxy.oidc.metadata import get_json
from oidcproxy.oidc.tokens import TokenInvalid

__all__ = ["KeySet"]

log = logging.getLogger("oidcproxy.oidc")


class KeySet:
    """Keys by kid; refetched when stale, or at most once per `min_refetch_s` for an unknown kid."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        uri: str,
        clock: Clock,
        *,
        ttl_s: float = 3600.0,
        min_refetch_s: float = 30.0,
    ) -> None:
        self._http = http
        self._uri = uri
        self._clock = clock
        self._ttl_s = ttl_s
        self._min_refetch_s = min_refetch_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str | None) -> jwt.PyJWK:
        if self._clock() - self._fetched_at > self._ttl_s:
            await self._refresh(force=True)
        found = self._find(kid)
        if found is None:
            await self._refresh(force=False)
            found = self._find(kid)
        if found is None:
            raise TokenInvalid(f"no key with kid {kid!r} in the provider's key set")
        return found

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self, *, force: bool) -> None:
        started = self._fetched_at
        async with self._lock:
            if self._fetched_at != started:
                return  # someone else refetched while we waited
            if not force and self._clock() - self._fetched_at < self._min_refetch_s:
                log.warning("unknown key id; not refetching the key set again so soon")
                return
            doc, _ = await get_json(self._http, self._uri, "jwks")
            self.fetches += 1
            self._fetched_at = self._clock()
            keys: dict[str, jwt.PyJWK] = {}
            for data in doc.get("keys", []):
                if data.get("use", "sig") != "sig":
                    continue
                try:
                    key = jwt.PyJWK(data)
                except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:
                    log.info("skipping unusable key %r: %s", data.get("kid"), exc)
                    continue
                keys[str(data.get("kid", ""))] = key
            self._keys = keys
