"""The provider's key set, cached. An unknown `kid` causes one shared, rate-limited refetch.

The cache lives as long as the answer's `Cache-Control: max-age` says (clamped to 1 min .. 1 day), an
hour without one; `no-store`/`no-cache` still keep it for the minimum, so a flood cannot pass through.

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

__all__ = ["KeySet", "cache_ttl"]

_MIN_TTL_S, _MAX_TTL_S = 60.0, 86400.0


def cache_ttl(cache_control: str, default: float) -> float:
    """Seconds to keep a response with this Cache-Control header (RFC 9111 5.2.2)."""
    directives = {}
    for part in cache_control.lower().split(","):
        key, _, value = part.strip().partition("=")
        directives[key] = value.strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return _MIN_TTL_S
    try:
        age = float(directives["max-age"])
    except (KeyError, ValueError):
        return default
    return min(_MAX_TTL_S, max(_MIN_TTL_S, age))


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
        self._ttl_s = self._default_ttl_s = ttl_s
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
            doc, cache_control = await get_json(self._http, self._uri, "jwks")
            self.fetches += 1
            self._fetched_at = self._clock()
            self._ttl_s = cache_ttl(cache_control, self._default_ttl_s)
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
