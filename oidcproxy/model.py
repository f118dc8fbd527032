"""Frozen value types shared by every layer: Identity, Tokens, Session and the Clock.

Imports nothing from oidcproxy. Secrets are kept out of every repr.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_PROVIDER",
    "Clock",
    "FakeClock",
    "Identity",
    "Session",
    "Tokens",
    "scoped",
    "system_clock",
]

Clock = Callable[[], float]
DEFAULT_PROVIDER = "default"
"""The id of the one provider the flat options configure, and of sessions sealed before ids existed."""


def scoped(provider: str, value: str) -> str:
    """A `sub` or `sid` as revocation and the session indexes key it: the value itself for the provider
    "default" (so one provider keeps its keys), else prefixed by the provider's id, so that what one
    provider's logout token names never matches another provider's sessions."""
    return value if provider == DEFAULT_PROVIDER or not value else f"{provider}\x1f{value}"


def system_clock() -> float:
    """Wall-clock seconds; the only place that reads the system time."""
    return _time.time()  # noqa: TID251 - the one injected clock


class FakeClock:
    """A clock that tests move by hand instead of sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the person is, as the proxy tells the upstream."""

    subject: str
    email: str = ""
    email_verified: bool = False
    user: str = ""
    preferred_username: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Tokens:
    """What the provider's token endpoint returned; expires_at is the access token's expiry."""

    id_token: str = field(default="", repr=False)
    access_token: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    expires_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in person: identity, tokens and the session's own lifetime.

    `created_at` is when the tokens were last issued (a refresh moves it); `signed_in_at` is when the
    person signed in, which nothing moves: revocation compares against it. `sid` is the provider's
    session id (the ID token's `sid` claim), or one of ours when the provider sends none, so that
    sign-out can revoke this session alone.

    `provider` is the id of the provider that signed the person in (oidc.providers): refresh,
    userinfo, sign-out and its rules are that provider's. Metrics and audit events report it.
    """

    identity: Identity
    tokens: Tokens
    created_at: float
    expires_at: float
    sid: str = ""
    signed_in_at: float = 0.0
    provider: str = DEFAULT_PROVIDER

    @property
    def login_time(self) -> float:
        """When the person signed in (`created_at` for a cookie sealed before `signed_in_at` existed)."""
        return self.signed_in_at or self.created_at

    def expired(self, now: float) -> bool:
        return now >= self.expires_at
