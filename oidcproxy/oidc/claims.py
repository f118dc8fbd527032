"""Claims -> Identity, pure. Claim names may be dotted paths into nested objects (realm_access.roles)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oidcproxy.model import Identity

__all__ = ["ClaimMapping", "claim_path"]


def claim_path(claims: Mapping[str, Any], path: str) -> Any:
    """The value at `path`; an exact key wins over a dotted walk (some claims have dots in their names)."""
    if path in claims:
        return claims[path]
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _groups(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(g.strip() for g in value.split(",") if g.strip())
    if isinstance(value, list | tuple):
        return tuple(str(g) for g in value)
    return ()


@dataclass(frozen=True, slots=True)
class ClaimMapping:
    email_claim: str = "email"
    groups_claim: str = "groups"
    username_claim: str = "email"

    def identity(self, claims: Mapping[str, Any]) -> Identity:
        email = claim_path(claims, self.email_claim)
        email = email if isinstance(email, str) else ""
        user = claim_path(claims, self.username_claim)
        preferred = claims.get("preferred_username")
        verified = claims.get("email_verified", False)
        return Identity(
            subject=str(claims.get("sub", "")),
            email=email,
            email_verified=verified is True or verified == "true",
            user=user if isinstance(user, str) and user else str(claims.get("sub", "")),
            preferred_username=preferred if isinstance(preferred, str) else "",
            groups=_groups(claim_path(claims, self.groups_claim)),
        )
