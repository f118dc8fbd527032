"""Routes: which upstream serves a path, and the upstream URL of a request target.

Only origin-form targets are joined to a route (`upstream_url`), so no request names another host.
Pure; imports only errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from yarl import URL

from oidcproxy.errors import BadRequest

__all__ = ["Route", "Router", "upstream_url"]


@dataclass(frozen=True, slots=True)
class Route:
    """Requests whose path starts with `prefix` go to `base` (scheme://host:port), path unchanged."""

    prefix: str
    base: URL

    @classmethod
    def parse(cls, url: str) -> Route:
        parsed = URL(url)
        return cls(prefix=parsed.path or "/", base=parsed.with_path("/").with_query(None))


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)

    def match(self, path: str) -> Route | None:
        for route in self.routes:
            if path.startswith(route.prefix) or path + "/" == route.prefix:
                return route
        return None


def upstream_url(base: URL, target: str) -> URL:
    """The origin-form `target` on the route's origin. Never `base.join`: `//other.host/x` would name a
    host (RFC 3986 4.2), and an absolute-form target another scheme and host."""
    if not target.startswith("/"):
        raise BadRequest(f"request target is not a path: {target[:100]!r}")
    return URL(f"{base.scheme}://{base.raw_authority}{target}", encoded=True)
