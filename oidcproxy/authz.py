"""Who may pass, pure: a Policy built from the settings evaluates an Identity to a Decision.

Email domains match exactly and case-insensitively, at a dot boundary for `.example.com`; the whole
address may instead be listed in the emails file. With --allowed-group the person must also be in at
least one of those groups (after --oidc-groups-prefix). Imports model and errors only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from oidcproxy.errors import Forbidden
from oidcproxy.model import Identity

__all__ = ["Decision", "Policy"]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Policy:
    email_domains: frozenset[str] = frozenset()
    allowed_emails: frozenset[str] = frozenset()
    allow_unverified_email: bool = False
    allowed_groups: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        domains: Iterable[str],
        emails: Iterable[str],
        allow_unverified_email: bool = False,
        allowed_groups: Iterable[str] = (),
    ) -> Policy:
        return cls(
            frozenset(d.strip().lower() for d in domains if d.strip()),
            frozenset(e.strip().lower() for e in emails if e.strip()),
            allow_unverified_email,
            frozenset(g.strip() for g in allowed_groups if g.strip()),
        )

    def evaluate(self, identity: Identity) -> Decision:
        decision = self._by_email(identity)
        if not decision.allowed or not self.allowed_groups:
            return decision
        if self.allowed_groups.isdisjoint(identity.groups):
            return Decision(False, f"{identity.email or identity.user} is in none of --allowed-group")
        return Decision(True, decision.reason + ", and a member of an allowed group")

    def _by_email(self, identity: Identity) -> Decision:
        email = identity.email.strip().lower()
        if email.count("@") != 1 or email.startswith("@") or email.endswith("@"):
            return Decision(False, f"email {identity.email!r} is not a single address")
        if not identity.email_verified and not self.allow_unverified_email:
            return Decision(False, f"email {email} is not verified by the provider")
        if email in self.allowed_emails:
            return Decision(True, "email listed in --authenticated-emails-file")
        domain = email.rsplit("@", 1)[1]
        for allowed in self.email_domains:
            if allowed == "*":
                return Decision(True, "any email domain is allowed")
            if allowed.startswith(".") and domain.endswith(allowed) and len(domain) > len(allowed):
                return Decision(True, f"domain {domain} is under {allowed}")
            if domain == allowed:
                return Decision(True, f"domain {domain} is allowed")
        return Decision(False, f"email domain {domain} is not in --email-domain")

    def require(self, identity: Identity) -> None:
        decision = self.evaluate(identity)
        if not decision.allowed:
            raise Forbidden(decision.reason)
