"""Options of the session store: cookie or Redis, the local cache, the autopilot's chunk limit, and how
to reach Redis (standalone, Sentinel or Cluster; oauth2-proxy's names, so configurations carry over).

One concern of the flat Settings (settings.py), checking its own fields in `problems()`.
Imports only config.values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from oidcproxy.config.values import Duration, StrList, option

__all__ = ["SessionStoreOptions"]

_SCHEMES = ("redis", "rediss", "unix")


class SessionStoreOptions(BaseModel):
    """Where sessions live: the cookie (default), or Redis behind a small ticket cookie."""

    session_store_type: Literal["cookie", "redis"] = option(
        "cookie",
        "cookie: sessions live in the browser (oversized ones go to Redis when one is configured); "
        "redis: every session lives in Redis behind a small ticket cookie",
    )
    session_cache_ttl: Duration = option(
        "5s", "how long a replica reuses a session read from Redis (also how long a revoked one passes)"
    )
    cookie_max_chunks: int = option(
        2, "most cookies a session may take; with Redis configured, larger sessions move there"
    )
    redis_connection_url: str = option("", "Redis URL: redis://, rediss:// (TLS) or unix://")
    redis_username: str = option("", "Redis ACL user name")
    redis_password: SecretStr = option(SecretStr(""), "Redis password (or put it in the URL)")
    redis_password_file: str = option("", "file holding the Redis password (instead of --redis-password)")
    redis_use_sentinel: bool = option(False, "find the Redis master through Sentinel")
    redis_sentinel_master_name: str = option("", "the master's name the sentinels know")
    redis_sentinel_connection_urls: StrList = option(
        help="a sentinel's URL (redis://host:26379), repeatable", default_factory=list
    )
    redis_sentinel_password: SecretStr = option(SecretStr(""), "password of the sentinels themselves")
    redis_use_cluster: bool = option(False, "talk to a Redis Cluster")
    redis_cluster_connection_urls: StrList = option(
        help="a cluster node's URL (redis://host:6379), repeatable", default_factory=list
    )
    redis_ca_path: str = option("", "CA bundle (PEM) that signed the Redis server's certificate")
    redis_insecure_skip_tls_verify: bool = option(False, "do not check the Redis server's certificate")
    redis_connection_idle_timeout: Duration = option(
        "0s", "check a pooled Redis connection idle this long before reuse (below Redis's `timeout`)"
    )
    redis_timeout: Duration = option("1s", "a Redis call fails within this (503, never a new sign-in)")

    def redis_configured(self) -> bool:
        return bool(
            self.redis_connection_url
            or (self.redis_use_sentinel and self.redis_sentinel_connection_urls)
            or (self.redis_use_cluster and self.redis_cluster_connection_urls)
        )

    def redis_password_value(self) -> str:
        """--redis-password, or the first line of --redis-password-file (read at start-up)."""
        if self.redis_password_file:
            return Path(self.redis_password_file).read_text().strip()
        return self.redis_password.get_secret_value()

    def problems(self) -> list[str]:
        out = [*self._store_problems(), *self._url_problems()]
        if self.redis_password_file and not Path(self.redis_password_file).is_file():
            out.append(f"--redis-password-file: {self.redis_password_file!r} is not a readable file")
        if self.redis_password_file and self.redis_password.get_secret_value():
            out.append("--redis-password-file: give it or --redis-password, not both")
        if self.redis_ca_path and not Path(self.redis_ca_path).is_file():
            out.append(f"--redis-ca-path: {self.redis_ca_path!r} is not a readable file")
        return out

    def _store_problems(self) -> list[str]:
        out: list[str] = []
        if self.session_store_type == "redis" and not self.redis_configured():
            out.append(
                "--session-store-type: redis needs --redis-connection-url (or --redis-use-sentinel "
                "with --redis-sentinel-connection-urls, or --redis-use-cluster with "
                "--redis-cluster-connection-urls)"
            )
        if self.redis_use_sentinel and self.redis_use_cluster:
            out.append("--redis-use-sentinel: Sentinel and Cluster exclude each other; pick one")
        if self.redis_use_sentinel and not self.redis_sentinel_master_name:
            out.append("--redis-sentinel-master-name: needed with --redis-use-sentinel, e.g. mymaster")
        if self.redis_use_sentinel and not self.redis_sentinel_connection_urls:
            out.append("--redis-sentinel-connection-urls: needed with --redis-use-sentinel")
        if self.redis_use_cluster and not self.redis_cluster_connection_urls:
            out.append("--redis-cluster-connection-urls: needed with --redis-use-cluster")
        if self.session_cache_ttl < 0:
            out.append("--session-cache-ttl: must be 0 (no cache) or positive, e.g. 5s")
        if self.cookie_max_chunks < 1:
            out.append("--cookie-max-chunks: must be at least 1 (default 2)")
        if self.redis_timeout <= 0:
            out.append("--redis-timeout: must be positive, e.g. 1s")
        return out

    def _url_problems(self) -> list[str]:
        out: list[str] = []
        named = [("--redis-connection-url", [self.redis_connection_url] if self.redis_connection_url else [])]
        named += [("--redis-sentinel-connection-urls", self.redis_sentinel_connection_urls)]
        named += [("--redis-cluster-connection-urls", self.redis_cluster_connection_urls)]
        for flag, urls in named:
            for url in urls:
                if urlsplit(url).scheme not in _SCHEMES:
                    out.append(f"{flag}: {_safe(url)!r} must start with redis://, rediss:// or unix://")
        return out


def _safe(url: str) -> str:
    """The URL without its password, fit for a problem line."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(parts.password, "***", 1)
    return url
