"""The provider's key set, cached, and fetched by one shared, rate-limited attempt at a time.

Freshness follows the answer's `Cache-Control` (`max-age` clamped to 1 min .. 1 day, an hour without
one, `no-cache`/`no-store`: revalidate at every chance). Every fetch attempt, failed or not, is
single-flight (concurrent callers await the same one) and at least `min_refetch_s` after the last,
so neither a flood of unknown `kid`s nor a broken provider makes us hammer the provider.

A stale key set is revalidated in the background: a caller whose `kid` is known never waits for it.
When refreshes fail, the known keys stay in use for `stale_if_error_s` past their lifetime (RFC 5861
stale-if-error), with a warning each failed attempt and the counters `failures` and `stale_served`.

Fetched with aiohttp and parsed with `jwt.PyJWK` (never `jwt.PyJWKClient`, which blocks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import jwt

from oidcproxy.errors import IdPUnavailable, TokenInvalid
from oidcproxy.model import Clock
from oidcproxy.oidc.metadata import MAX_RESPONSE_BYTES, get_json

__all__ = ["KeySet", "cache_ttl", "parse_keys"]

_MIN_TTL_S, _MAX_TTL_S = 60.0, 86400.0

log = logging.getLogger("oidcproxy.oidc")


def cache_ttl(cache_control: str, default: float) -> float:
    """Seconds a key set with this Cache-Control stays fresh (RFC 9111 5.2.2); 0: revalidate always."""
    directives = {}
    for part in cache_control.lower().split(","):
        key, _, value = part.strip().partition("=")
        directives[key] = value.strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    try:
        age = float(directives["max-age"])
    except (KeyError, ValueError):
        return default
    return min(_MAX_TTL_S, max(_MIN_TTL_S, age))


def parse_keys(doc: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    """The signing keys of a JWKS document by kid; ValueError when it holds none we can use."""
    entries = doc.get("keys")
    if not isinstance(entries, list):
        raise ValueError("the document has no 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for data in entries:
        if not isinstance(data, dict) or data.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(data)
        except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:
            log.info("skipping unusable key %r: %s", data.get("kid"), exc)
            continue
        keys[str(data.get("kid", ""))] = key
    if not keys:
        raise ValueError("the document holds no usable signing key")
    return keys


class KeySet:
    """Keys by kid. `fetches` counts successful fetches, `attempts` all of them, `failures` the
    failed ones; `stale_served` counts keys handed out past their lifetime after a failed refresh."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        uri: str,
        clock: Clock,
        *,
        ttl_s: float = 3600.0,
        min_refetch_s: float = 30.0,
        stale_if_error_s: float = 86400.0,
        max_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._http = http
        self._uri = uri
        self._clock = clock
        self._ttl_s = self._default_ttl_s = ttl_s
        self._min_refetch_s = min_refetch_s
        self._stale_if_error_s = stale_if_error_s
        self._max_bytes = max_bytes
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = self._attempted_at = float("-inf")
        self._error = ""  # why the last attempt failed; empty after a success
        self._error_kind: type[IdPUnavailable] = IdPUnavailable
        self._inflight: asyncio.Task[None] | None = None
        self.fetches = self.attempts = self.failures = self.stale_served = 0

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key for `kid`: TokenInvalid when the current key set lacks it, IdPUnavailable when
        the key set could not be had (no usable keys, or a refresh for this kid failed)."""
        now = self._clock()
        age = now - self._fetched_at
        if age <= self._fresh_s() + self._stale_if_error_s:
            if age > self._fresh_s():
                self._start(now)  # stale-while-revalidate: nobody waits for it
            found = self._find(kid)
            if found is not None:
                if age > self._fresh_s() and self._error:
                    self.stale_served += 1
                return found
        await self._refresh(now)
        found = self._find(kid)
        if found is None:
            raise TokenInvalid(f"no key with kid {kid!r} in the provider's key set")
        return found

    async def idle(self) -> None:
        """Wait until no fetch is in flight (tests use it to see a background revalidation end)."""
        while (task := self._inflight) is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel a fetch in flight (the app's cleanup; its HTTP session closes next)."""
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _fresh_s(self) -> float:
        # Within the minimum interval no refetch may happen, so the keys cannot be staler than that.
        return max(self._ttl_s, self._min_refetch_s)

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _start(self, now: float) -> asyncio.Task[None] | None:
        """The attempt in flight, else a new one if the minimum interval has passed, else None."""
        if self._inflight is None and now - self._attempted_at >= self._min_refetch_s:
            self._attempted_at = now
            self._inflight = asyncio.create_task(self._fetch(), name="jwks-fetch")
        return self._inflight

    async def _refresh(self, now: float) -> None:
        """Wait for the shared attempt; IdPUnavailable if the key set could not be refreshed."""
        task = self._start(now)
        if task is not None:
            await asyncio.shield(task)  # a caller that goes away does not cancel the others' fetch
        elif not self._error:
            log.warning("unknown key id; not refetching the key set again so soon")
        if self._error:
            wait = max(0.0, self._attempted_at + self._min_refetch_s - self._clock())
            raise self._error_kind(f"{self._error} (next attempt in {wait:.0f}s at the earliest)")

    async def _fetch(self) -> None:
        self.attempts += 1
        try:
            doc, cache_control = await get_json(self._http, self._uri, "jwks", limit=self._max_bytes)
            try:
                keys = parse_keys(doc)
            except ValueError as exc:
                raise IdPUnavailable(f"jwks: {self._uri}: {exc}") from exc
        except IdPUnavailable as exc:  # IdPUnreachable (503) when no answer came, else 502
            self._failed(exc.detail, type(exc))
        except Exception as exc:  # a bug: keep the traceback, and the known keys
            log.exception("key set fetch crashed")
            self._failed(f"jwks: {self._uri}: {type(exc).__name__}")
        else:
            self.fetches += 1
            self._keys, self._error = keys, ""
            self._fetched_at = self._clock()
            self._ttl_s = cache_ttl(cache_control, self._default_ttl_s)
        finally:
            self._inflight = None

    def _failed(self, detail: str, kind: type[IdPUnavailable] = IdPUnavailable) -> None:
        self.failures += 1
        self._error, self._error_kind = detail, kind
        if not self._keys:
            log.warning("key set fetch failed: %s; no keys known yet", detail)
            return
        left = self._fetched_at + self._fresh_s() + self._stale_if_error_s - self._clock()
        log.warning(
            "key set refresh failed: %s; still using the %d known keys for at most %.0fs "
            "(--oidc-jwks-stale-if-error)",
            detail,
            len(self._keys),
            max(0.0, left),
        )
