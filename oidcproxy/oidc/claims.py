"""Claims -> Identity, pure: claim paths, user name and group prefixes, required claims.

Claim names may be dotted paths into nested objects (`realm_access.roles`); groups may be a list or a
comma-separated string. Prefixes follow OKD's `usernamePrefix`/`prefixPolicy` semantics. Imports model
and errors only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from oidcproxy.errors import Forbidden
from oidcproxy.model import Identity

__all__ = ["ClaimMapping", "PrefixPolicy", "claim_path", "missing_profile_claims", "parse_pairs"]

PrefixPolicy = Literal["", "Prefix", "NoPrefix"]


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


def parse_pairs(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """`key=value` strings (already checked by the settings) as pairs; the value may contain `=`."""
    return tuple((k.strip(), v.strip()) for k, _, v in (item.partition("=") for item in items))


def _groups(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(g.strip() for g in value.split(",") if g.strip())
    if isinstance(value, list | tuple):
        return tuple(str(g) for g in value)
    return ()


def _holds(value: Any, wanted: str) -> bool:
    """OKD's required claims compare strings; a list claim holds when it contains the value."""
    if isinstance(value, bool):
        return str(value).lower() == wanted.lower()
    if isinstance(value, list | tuple):
        return wanted in (str(v) for v in value)
    return value is not None and str(value) == wanted


def missing_profile_claims(claims: Mapping[str, Any], email_claim: str, groups_claim: str) -> bool:
    """True when the ID token lacks the email or the groups, so userinfo should be asked (once)."""
    return claim_path(claims, email_claim) is None or claim_path(claims, groups_claim) is None


@dataclass(frozen=True, slots=True)
class ClaimMapping:
    email_claim: str = "email"
    groups_claim: str = "groups"
    username_claim: str = "email"
    username_prefix: str = ""
    username_prefix_policy: PrefixPolicy = ""
    groups_prefix: str = ""
    issuer: str = ""
    required: tuple[tuple[str, str], ...] = ()

    def identity(self, claims: Mapping[str, Any]) -> Identity:
        """The mapped identity, or Forbidden naming the first required claim that does not hold."""
        self.require(claims)
        subject = str(claims.get("sub", ""))
        email = claim_path(claims, self.email_claim)
        user = claim_path(claims, self.username_claim)
        user = user if isinstance(user, str | int) and not isinstance(user, bool) and str(user) else subject
        preferred = claims.get("preferred_username")
        verified = claim_path(claims, "email_verified")
        return Identity(
            subject=subject,
            email=email if isinstance(email, str) else "",
            email_verified=verified is True or verified == "true",
            user=self._prefix() + str(user),
            preferred_username=preferred if isinstance(preferred, str) else "",
            groups=tuple(self.groups_prefix + g for g in _groups(claim_path(claims, self.groups_claim))),
        )

    def require(self, claims: Mapping[str, Any]) -> None:
        for path, wanted in self.required:
            value = claim_path(claims, path)
            if value is None:
                raise Forbidden(f"required claim {path!r} is missing from the token")
            if not _holds(value, wanted):
                raise Forbidden(f"required claim {path!r} is not {wanted!r}")

    def _prefix(self) -> str:
        if self.username_prefix_policy == "NoPrefix":
            return ""
        if self.username_prefix_policy == "Prefix" or self.username_prefix:
            return self.username_prefix
        # OKD/Kubernetes: without a prefix, names from any claim but email are qualified by issuer.
        return "" if self.username_claim == "email" else f"{self.issuer}#"
