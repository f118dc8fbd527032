"""OpenID Connect relying party, written from the specifications.

metadata (discovery document) and jwks (key set cache) do the slow-path I/O with aiohttp; tokens
(signature and claim checks), claims (claims -> Identity) and refresh_state are pure; client ties them
together for the authorization request, the code exchange, refresh and userinfo; refresh runs one
refresh per session across the workers (through a SharedState); bearer verifies `Authorization:
Bearer` JWTs. Nothing here blocks the event loop.
"""

from oidcproxy.oidc.bearer import BearerVerifier, bearer_token
from oidcproxy.oidc.claims import ClaimMapping, parse_pairs
from oidcproxy.oidc.client import Endpoints, OIDCClient, ProviderConfig, ssl_context
from oidcproxy.oidc.refresh import Refresher, RefreshPolicy, SessionSeal, refresh_state

__all__ = [
    "BearerVerifier",
    "ClaimMapping",
    "Endpoints",
    "OIDCClient",
    "ProviderConfig",
    "RefreshPolicy",
    "Refresher",
    "SessionSeal",
    "bearer_token",
    "parse_pairs",
    "refresh_state",
    "ssl_context",
]
