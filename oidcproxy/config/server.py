"""Options of the process: where it listens, what it protects, how it logs and how many workers serve.

Two concerns of the flat Settings (settings.py): ServerOptions and RuntimeOptions, each checking
its own fields in `problems()`. Imports only config.values.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, field_validator

from oidcproxy.config.values import Duration, StrList, option, split_address

__all__ = ["RuntimeOptions", "ServerOptions"]


class ServerOptions(BaseModel):
    """Where we listen and what we protect."""

    http_address: str = option("127.0.0.1:4180", "address to listen on, host:port")
    upstream: StrList = option(
        help="upstream URL, repeatable; its path is the route prefix it serves "
        "(http://app:8080/api/ gets /api/...); builtin:whoami is the demo upstream",
        default_factory=list,
    )
    upstream_timeout: Duration = option("30s", "time to wait for the upstream's response headers")
    dev: bool = option(
        False,
        "demo mode: embedded provider, builtin:whoami upstream, insecure cookie, random secret",
    )

    @field_validator("http_address")
    @classmethod
    def _address(cls, value: str) -> str:
        split_address(value)
        return value

    @field_validator("upstream")
    @classmethod
    def _upstreams(cls, value: list[str]) -> list[str]:
        for url in value:
            if url.startswith("builtin:"):
                if url != "builtin:whoami":
                    raise ValueError(f"{url!r}: the only built-in upstream is builtin:whoami")
                continue
            if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", url):
                raise ValueError(f"{url!r} is not an http(s) URL like http://127.0.0.1:8080/")
        return value

    def problems(self) -> list[str]:
        if not self.upstream:
            return ["--upstream: missing; name the application to protect, e.g. http://127.0.0.1:8080/"]
        return []


class RuntimeOptions(BaseModel):
    """Logging and the worker processes."""

    log_level: Literal["debug", "info", "warning", "error"] = option("info", "log level")
    request_logging: bool = option(True, "log one line per request (batched, written off the event loop)")
    workers: int = option(
        0,
        "processes serving --http-address together (SO_REUSEPORT); 0: the container's CPU quota "
        "rounded up, else one per CPU, or 1 with --oidc-type embedded",
    )

    def problems(self) -> list[str]:
        if self.workers < 0:
            return ["--workers: must be 0 (one per CPU) or more"]
        return []
