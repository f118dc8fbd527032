"""The embedded development OpenID provider: written from the OIDC specs, not from our client.

Never imports oidcproxy.oidc, .session, .authz, .login or .upstream (import-linter contract), so a
bug shared by provider and client cannot pass both sides' tests. Layout:

    config      IdPClient, IdPConfig, DevUser: values and pure checks (redirect matching, `sub`)
    keys        KeyRing: generated RS256/ES256 keys, rotation, JWKS
    store       in-memory codes, access and refresh tokens (a restart forgets everything)
    server      authlib's AuthorizationServer + grants (code + PKCE S256 + OpenID, refresh with
                rotation) behind a framework-free adapter (HttpInput in, Reply out)
    pages       the login form, signed-out and error pages (escaped, self-contained HTML)
    app         DevIdP (state + test switches, what each endpoint decides) and build_app
    routes      the aiohttp routes, relative to the mount point, and the test switches' middleware
    standalone  `oidcproxy idp` and the development-only warning

Embedding under a path: with issuer `http://host:port/dev-idp`,
`outer.add_subapp("/dev-idp", build_app(config)[0])`; with an issuer that has no path, serve the
app itself at the root.
"""

from __future__ import annotations

from oidcproxy.idp.app import DEV_IDP, DevIdP, build_app
from oidcproxy.idp.config import DevUser, IdPClient, IdPConfig, subject_for
from oidcproxy.idp.standalone import run_standalone, warning_text

__all__ = [
    "DEV_IDP",
    "DevIdP",
    "DevUser",
    "IdPClient",
    "IdPConfig",
    "build_app",
    "run_standalone",
    "subject_for",
    "warning_text",
]
