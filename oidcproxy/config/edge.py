"""Options of the edge: behind a reverse proxy or NGINX ingress, forwarded headers, routes, header limits.

One concern of the flat Settings (settings.py), checking its own fields in `problems()`.
Imports only config.values.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel

from oidcproxy.config.values import StrList, option

__all__ = ["EdgeOptions"]


class EdgeOptions(BaseModel):
    """Behind a reverse proxy / NGINX ingress: whom to trust, which paths skip sign-in, header limits."""

    reverse_proxy: bool = option(
        False, "trust X-Forwarded-* and Forwarded headers, only from --trusted-proxy-ip peers"
    )
    trusted_proxy_ip: StrList = option(
        ["127.0.0.0/8", "::1/128"], "CIDR of a proxy whose forwarded headers count, repeatable"
    )
    whitelist_domain: StrList = option(
        help="other host rd and Origin may name, repeatable; .example.com for subdomains, optional :port",
        default_factory=list,
    )
    set_xauthrequest: bool = option(False, "/oauth2/auth answers with X-Auth-Request-User/-Email/-Groups")
    set_authorization_header: bool = option(
        False, "/oauth2/auth answers with Authorization: Bearer <ID token> (see --oidc-use-access-token)"
    )
    forward_auth_redirect: bool = option(
        False,
        "/oauth2/auth answers a browser's unauthenticated GET with a redirect to sign in instead of "
        "401 (Caddy forward_auth, Traefik ForwardAuth and Envoy pass the answer to the browser)",
    )
    max_header_size: int = option(65536, "largest request header line in bytes; twice that in all")
    skip_auth_route: StrList = option(
        help="[METHOD=]regex of paths served without sign-in, repeatable (normalised path)",
        default_factory=list,
    )
    skip_auth_preflight: bool = option(False, "let CORS preflight OPTIONS requests pass without sign-in")
    api_route: StrList = option(
        help="[METHOD=]regex of API paths: 401 instead of a sign-in redirect, repeatable",
        default_factory=list,
    )

    def problems(self) -> list[str]:
        out: list[str] = []
        for cidr in self.trusted_proxy_ip:
            try:
                ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                out.append(f"--trusted-proxy-ip: {cidr!r} is not an address or CIDR, e.g. 10.0.0.0/8")
        out += _route_problems("--skip-auth-route", self.skip_auth_route)
        out += _route_problems("--api-route", self.api_route)
        if not 8190 <= self.max_header_size <= 1 << 20:
            out.append("--max-header-size: must be between 8190 and 1048576 bytes, e.g. 65536")
        return out


def _route_problems(flag: str, rules: list[str]) -> list[str]:
    out: list[str] = []
    for rule in rules:
        method, sep, regex = rule.partition("=")
        try:
            re.compile(regex if sep and re.fullmatch(r"[A-Za-z]+", method) else rule)
        except re.error as exc:
            out.append(f"{flag}: {rule!r} is not a regular expression ({exc})")
    return out
