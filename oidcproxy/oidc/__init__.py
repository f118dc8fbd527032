"""OpenID Connect relying party, written from the specifications.

metadata (discovery document) and jwks (key set cache) do the slow-path I/O with aiohttp; tokens
(signature and claim checks), claims (claims -> Identity) and refresh_state are pure; client ties them
together for the authorization request, the code exchange, refresh and userinfo; refresh runs one
refresh per session across the workers (through a SharedState); bearer verifies `Authorization:
Bearer` JWTs; logout does sign-out at the provider (RP-initiated logout, revocation, back-channel
logout tokens); providers is the registry of the configured providers, keyed by id. Nothing here
blocks the event loop.
"""

from oidcproxy.oidc.bearer import BearerVerifier, bearer_token
from oidcproxy.oidc.claims import ClaimMapping, parse_pairs
from oidcproxy.oidc.client import Endpoints, OIDCClient, ProviderConfig, ssl_context
from oidcproxy.oidc.logout import LogoutRequest, SignOut, check_logout_token, end_session_url
from oidcproxy.oidc.providers import (
    DEFAULT_PROVIDER,
    Provider,
    Providers,
    authorization_iss_problem,
    entra_issuers,
)
from oidcproxy.oidc.refresh import Refresher, RefreshPolicy, SessionSeal, refresh_state

__all__ = [
    "DEFAULT_PROVIDER",
    "BearerVerifier",
    "ClaimMapping",
    "Endpoints",
    "LogoutRequest",
    "OIDCClient",
    "Provider",
    "ProviderConfig",
    "Providers",
    "RefreshPolicy",
    "Refresher",
    "SessionSeal",
    "SignOut",
    "bearer_token",
    "check_logout_token",
    "end_session_url",
    "authorization_iss_problem",
    "entra_issuers",
    "parse_pairs",
    "refresh_state",
    "ssl_context",
]
