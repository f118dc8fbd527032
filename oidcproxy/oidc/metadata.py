"""The provider's discovery document (OpenID Connect Discovery 1.0): fetch, validate, keep.

Only idempotent GETs happen here, retried with bounded backoff. Imports errors only.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from oidcproxy.errors import IdPUnavailable

__all__ = ["ProviderMetadata", "get_json"]

log = logging.getLogger("oidcproxy.oidc")


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""
    end_session_endpoint: str = ""
    id_token_signing_alg_values_supported: tuple[str, ...] = ("RS256",)
    token_endpoint_auth_methods_supported: tuple[str, ...] = ("client_secret_basic",)

    @classmethod
    def from_document(cls, issuer: str, doc: dict[str, Any]) -> ProviderMetadata:
        # Discovery 4.3: the issuer in the document must be identical to the one configured.
        if doc.get("issuer") != issuer:
            raise IdPUnavailable(
                f"discovery issuer {doc.get('issuer')!r} differs from --oidc-issuer-url {issuer!r}"
            )
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not doc.get(k)]
        if missing:
            raise IdPUnavailable(f"discovery document lacks {', '.join(missing)}")
        return cls(
            issuer=issuer,
            authorization_endpoint=str(doc["authorization_endpoint"]),
            token_endpoint=str(doc["token_endpoint"]),
            jwks_uri=str(doc["jwks_uri"]),
            userinfo_endpoint=str(doc.get("userinfo_endpoint") or ""),
            end_session_endpoint=str(doc.get("end_session_endpoint") or ""),
            id_token_signing_alg_values_supported=tuple(
                doc.get("id_token_signing_alg_values_supported") or ("RS256",)
            ),
            token_endpoint_auth_methods_supported=tuple(
                doc.get("token_endpoint_auth_methods_supported") or ("client_secret_basic",)
            ),
        )

    @classmethod
    async def discover(cls, http: aiohttp.ClientSession, issuer: str) -> ProviderMetadata:
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc, _ = await get_json(http, url, "discovery")
        return cls.from_document(issuer, doc)


async def get_json(
    http: aiohttp.ClientSession, url: str, what: str, attempts: int = 3
) -> tuple[dict[str, Any], str]:
    """GET a JSON object, retrying transport faults and 5xx; answers (document, Cache-Control)."""
    delay = 0.2
    for attempt in range(1, attempts + 1):
        try:
            async with http.get(url, headers={"Accept": "application/json"}) as resp:
                if resp.status >= 500 and attempt < attempts:
                    raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                if resp.status != 200:
                    raise IdPUnavailable(f"{what}: {url} answered {resp.status}")
                doc = await resp.json(content_type=None)
                if not isinstance(doc, dict):
                    raise IdPUnavailable(f"{what}: {url} did not return a JSON object")
                return doc, resp.headers.get("Cache-Control", "")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if attempt == attempts:
                raise IdPUnavailable(f"{what}: {url}: {type(exc).__name__}: {exc}") from exc
            log.info("%s fetch failed (%s), retrying in %.1fs", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay *= 2
    raise IdPUnavailable(f"{what}: {url}: no attempt made")  # pragma: no cover - loop always returns
