"""`oidcproxy idp`: run the development provider on its own, plus the warning every mode prints.

Parses its own arguments (argparse), refuses non-loopback addresses unless told otherwise, and
serves with aiohttp's `web.run_app`. Imports only the idp package from the project.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from oidcproxy.idp.app import DevIdP
from oidcproxy.idp.config import IdPClient, IdPConfig, is_loopback_host

__all__ = ["run_standalone", "warning_text"]

_RULE = "=" * 72


def warning_text(remote: bool) -> str:
    """The multi-line banner for stderr; louder when the provider is reachable from other hosts."""
    lines = [
        _RULE,
        "WARNING: DEVELOPMENT OPENID PROVIDER - NOT FOR PRODUCTION",
        "It signs in ANYONE with ANY email and ANY password.",
        "Its keys, codes and tokens live in memory: a restart signs everybody out.",
    ]
    if remote:
        lines += [
            "",
            "!!! IT IS REACHABLE FROM OTHER MACHINES (--allow-remote) !!!",
            "!!! Anyone who can reach this address can sign in as anyone. !!!",
            "!!! Use it only on a trusted, isolated network, and never with real data. !!!",
        ]
    return "\n".join([*lines, _RULE])


@dataclass(frozen=True, slots=True)
class _Plan:
    host: str
    port: int
    config: IdPConfig
    remote: bool


class _Refused(Exception):
    """A command-line problem, reported as one line and exit status 2."""


def run_standalone(argv: list[str]) -> int:
    """Entry point of `oidcproxy idp ARGS`; `argv` excludes the subcommand. Blocks until stopped."""
    try:
        plan = _plan(_parser().parse_args(argv))
    except _Refused as problem:
        print(f"oidcproxy idp: {problem}", file=sys.stderr)
        return 2
    client = plan.config.clients[0]
    print(warning_text(plan.remote), file=sys.stderr)
    if client.allow_loopback_redirects:
        print("No --redirect-url given: ANY loopback redirect URL is accepted.", file=sys.stderr)
    print(f"issuer:        {plan.config.issuer}")
    print(f"client id:     {client.client_id}")
    print(f"client secret: {client.client_secret}")  # a generated dev secret; printing is the point
    print(f"redirect URLs: {', '.join(client.redirect_uris) or 'any loopback URL'}", flush=True)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    web.run_app(DevIdP(plan.config).build_app(), host=plan.host, port=plan.port, print=None)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oidcproxy idp", description="Run the development OpenID provider (not for production)."
    )
    add = parser.add_argument
    add("--http-address", default="127.0.0.1:9000", help="HOST:PORT to listen on")
    add("--issuer", help="public issuer URL (default: http://HOST:PORT)")
    add("--client-id", help="client id to register (default: generated)")
    add("--client-secret", help="client secret to register (default: generated)")
    add("--redirect-url", action="append", default=[], help="allowed redirect URL (repeatable)")
    add("--post-logout-redirect-url", action="append", default=[], help="(repeatable)")
    add("--signing-alg", choices=["RS256", "ES256"], default="RS256")
    add("--token-ttl", type=int, default=3600, help="access and ID token lifetime, seconds")
    add("--allow-remote", action="store_true", help="allow a non-loopback listen address")
    return parser


def _plan(args: argparse.Namespace) -> _Plan:
    host, port = _split_address(args.http_address)
    remote = not is_loopback_host(host)
    if remote and not args.allow_remote:
        shown = host or "all interfaces"
        raise _Refused(f"refusing to listen on {shown}: not loopback; pass --allow-remote to do so")
    if args.issuer is None and host in ("", "0.0.0.0", "::"):  # noqa: S104 - detecting, not binding
        raise _Refused("listening on all interfaces needs --issuer with the URL clients use")
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    issuer = (args.issuer or f"http://{authority}").rstrip("/")
    _allow_plain_http(issuer)
    client = IdPClient(
        client_id=args.client_id or f"dev-{secrets.token_hex(4)}",
        client_secret=args.client_secret or secrets.token_urlsafe(24),
        redirect_uris=tuple(args.redirect_url),
        post_logout_redirect_uris=tuple(args.post_logout_redirect_url),
        allow_loopback_redirects=not args.redirect_url,
    )
    try:
        config = IdPConfig(
            issuer=issuer,
            clients=(client,),
            signing_alg=args.signing_alg,
            access_token_ttl=args.token_ttl,
            id_token_ttl=args.token_ttl,
        )
    except ValueError as exc:
        raise _Refused(str(exc)) from exc
    return _Plan(host=host, port=port, config=config, remote=remote)


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise _Refused(f"--http-address must be HOST:PORT, not {address!r}")
    return host.strip("[]"), int(port)


def _allow_plain_http(issuer: str) -> None:
    """authlib refuses plain-http OAuth requests except to loopback hosts (RFC 6749 10.9). With
    --allow-remote and an http issuer this process exists to serve exactly that, so it opts out
    (process-wide, which is why only the standalone command does it)."""
    parts = urlsplit(issuer)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
        print("The issuer is plain http on a non-loopback host: tokens travel unencrypted.", file=sys.stderr)
