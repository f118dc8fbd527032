"""OpenID Connect relying party, written from the specifications.

metadata (discovery document) and jwks (key set cache) do the slow-path I/O with aiohttp; tokens
(signature and claim checks) and claims (claims -> Identity) are pure; client ties them together for
the authorization request, the code exchange and refresh. Nothing here blocks the event loop.
"""

from oidcproxy.oidc.claims import ClaimMapping
from oidcproxy.oidc.client import OIDCClient, ProviderConfig
from oidcproxy.oidc.tokens import TokenInvalid

__all__ = ["ClaimMapping", "OIDCClient", "ProviderConfig", "TokenInvalid"]
