"""The web shell: the aiohttp application and everything that speaks HTTP to the browser.

    app         build_app(settings): runtime state built once, routes, cleanup contexts
    appkeys     every web.AppKey; the only place app state is named
    handlers    /oauth2/* endpoints, ping/ready, the gate in front of the proxy
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
