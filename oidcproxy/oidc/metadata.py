"""The provider's discovery document (OpenID Connect Discovery 1.0): fetch, validate, keep.

Only idempotent GETs happen here, retried with bounded backoff on transport faults and 5xx (an answer
that is not JSON, or too large, is not retried). Every provider answer is read through `read_json`,
which stops at a size limit instead of buffering whatever arrives. Imports errors only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from oidcproxy.errors import IdPUnavailable, IdPUnreachable

__all__ = ["MAX_RESPONSE_BYTES", "ProviderMetadata", "get_json", "provider_fault", "read_json"]

log = logging.getLogger("oidcproxy.oidc")

#: Default for --provider-max-response-size: real key sets and discovery documents are a few KiB.
MAX_RESPONSE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str = ""
    end_session_endpoint: str = ""
    revocation_endpoint: str = ""
    id_token_signing_alg_values_supported: tuple[str, ...] = ("RS256",)
    token_endpoint_auth_methods_supported: tuple[str, ...] = ("client_secret_basic",)
    # RFC 9207: the provider puts `iss` in its authorization responses, so a callback must carry it.
    authorization_response_iss_parameter_supported: bool = False

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
            revocation_endpoint=str(doc.get("revocation_endpoint") or ""),
            id_token_signing_alg_values_supported=tuple(
                doc.get("id_token_signing_alg_values_supported") or ("RS256",)
            ),
            token_endpoint_auth_methods_supported=tuple(
                doc.get("token_endpoint_auth_methods_supported") or ("client_secret_basic",)
            ),
            authorization_response_iss_parameter_supported=(
                doc.get("authorization_response_iss_parameter_supported") is True
            ),
        )

    @classmethod
    async def discover(
        cls, http: aiohttp.ClientSession, issuer: str, limit: int = MAX_RESPONSE_BYTES
    ) -> ProviderMetadata:
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc, _ = await get_json(http, url, "discovery", limit=limit)
        return cls.from_document(issuer, doc)


async def read_json(resp: aiohttp.ClientResponse, what: str, limit: int) -> Any:
    """The answer's JSON, read `limit` bytes at most; IdPUnavailable naming the endpoint if larger.

    ValueError when the body is not JSON (callers decide whether that is worth a retry).
    """
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise IdPUnavailable(_too_large(what, resp, f"{declared} bytes", limit))
    body = bytearray()
    async for chunk in resp.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise IdPUnavailable(_too_large(what, resp, f"over {limit} bytes", limit))
    return json.loads(body)


def _too_large(what: str, resp: aiohttp.ClientResponse, size: str, limit: int) -> str:
    return (
        f"{what}: {resp.url} answered {size}, more than --provider-max-response-size ({limit} bytes);"
        " answer refused"
    )


async def get_json(
    http: aiohttp.ClientSession,
    url: str,
    what: str,
    attempts: int = 3,
    *,
    limit: int = MAX_RESPONSE_BYTES,
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
                doc = await _json_object(resp, what, limit)
                return doc, resp.headers.get("Cache-Control", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            if attempt == attempts:
                raise provider_fault(f"{what}: {url}", exc) from exc
            log.info("%s fetch failed (%s), retrying in %.1fs", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay *= 2
    raise IdPUnavailable(f"{what}: {url}: no attempt made")  # pragma: no cover - loop always returns


async def _json_object(resp: aiohttp.ClientResponse, what: str, limit: int) -> dict[str, Any]:
    # A provider that answers 200 with garbage will answer the same garbage again: no retry.
    try:
        doc = await read_json(resp, what, limit)
    except ValueError as exc:
        raise IdPUnavailable(f"{what}: {resp.url} did not return JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise IdPUnavailable(f"{what}: {resp.url} did not return a JSON object")
    return doc


def provider_fault(where: str, exc: Exception) -> IdPUnavailable:
    """A failed call to the provider as the error to raise: IdPUnreachable (503, try again soon) when
    no answer came (refused, reset, timed out), IdPUnavailable (502) when it answered wrongly."""
    unreachable = isinstance(exc, aiohttp.ClientConnectionError | TimeoutError)
    kind = IdPUnreachable if unreachable else IdPUnavailable
    return kind(f"{where}: {type(exc).__name__}: {exc}")
