"""The web shell: the aiohttp application and everything that speaks HTTP to the browser.

    app         build_app(settings): runtime state built once, routes
    contexts    the cleanup contexts: Redis, the providers' HTTP session and its users, metrics'
                mirror, the shared state, the upstream proxy
    appkeys     every web.AppKey; the only place app state is named
    handlers    /oauth2/auth, /oauth2/userinfo, ping/ready, the gate in front of the proxy
    signin      /oauth2/sign_in, /oauth2/start, the callback (with its mix-up defence)
    signout     /oauth2/sign_out, /oauth2/signed_out, back-channel logout, revocation
    sessionio   the request's session and cookies (open, save, clear), the browser's scheme/host/rd
    middleware  request ids, error rendering (page or JSON), security headers
    headerlimit 431 for oversized request headers, before any handler runs
    accesslog   the access log, written off the event loop
    pages       sign-in, signed-out and error pages (templates and stylesheet)
    demo        the builtin:whoami upstream

The only layer that picks status codes and renders errors; the decisions it calls (authz, login,
forwarded, oidc, proxy, sessions) stay free of it.
"""

from __future__ import annotations

from oidcproxy.web.app import base_url, build_app

__all__ = ["base_url", "build_app"]
