"""The login round-trip, pure: state, nonce, PKCE verifier and where to go back to; redirect checks.
The sign-out round-trip too: the `state` sent to the provider's end_session_endpoint carries, signed,
where the browser goes once the provider sends it back.

The round-trip rides in a short-lived cookie signed and time-limited with itsdangerous, one cookie per
attempt (named after its state), so two tabs signing in at once do not undo each other. An attempt is
accepted once by all the workers: its state is added to the SharedState, the only I/O here. Imports
sessions.cookies, errors and coordination; no aiohttp.web.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from oidcproxy.coordination import SharedState
from oidcproxy.errors import LoginFailed
from oidcproxy.model import DEFAULT_PROVIDER, Clock
from oidcproxy.sessions.cookies import CookiePolicy, SetCookie

__all__ = ["Callback", "LoginAttempt", "LoginFlow", "return_target", "safe_return_to"]

_SIGN_OUT_MAX_AGE_S = 3600  # the provider may ask "sign out?" and wait for an answer
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_return_to(rd: str | None) -> str:
    """`rd` when it is a path on this proxy; `/` for anything that could leave it (open redirect)."""
    if not rd:
        return "/"
    candidate = rd
    for _ in range(3):  # catch /%2F%2Fevil.com and doubly encoded variants
        if _CONTROL.search(candidate) or "\\" in candidate:
            return "/"
        if not candidate.startswith("/") or candidate.startswith("//"):
            return "/"
        decoded = unquote(candidate)
        if decoded == candidate:
            break
        candidate = decoded
    return rd


def return_target(rd: str | None, url_allowed: Callable[[str], bool]) -> str:
    """Where to go after login: a local path (see safe_return_to), or a full http(s) URL that
    `url_allowed` accepts (our own host or --whitelist-domain, the ingress `auth-signin` case)."""
    if rd and _is_absolute(rd):
        return rd if url_allowed(rd) else "/"
    return safe_return_to(rd)


def _is_absolute(target: str) -> bool:
    try:
        parts = urlsplit(target)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    state: str = field(repr=False)
    nonce: str = field(repr=False)
    verifier: str = field(repr=False)
    return_to: str
    redirect_uri: str
    provider: str = DEFAULT_PROVIDER  # bound to the state: the callback must come from this one

    @property
    def code_challenge(self) -> str:
        return create_s256_code_challenge(self.verifier) if self.verifier else ""


@dataclass(frozen=True, slots=True)
class Callback:
    attempt: LoginAttempt
    code: str = field(repr=False)


class LoginFlow:
    """Begins and finishes login attempts; `shared` remembers the states accepted until they expire."""

    def __init__(
        self,
        secrets: Sequence[bytes],
        policy: CookiePolicy,
        clock: Clock,
        *,
        shared: SharedState,
        pkce: bool = True,
        max_age: int = 900,
    ) -> None:
        class _Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock())

        # itsdangerous signs with the last key and accepts all: newest goes last.
        self._serializer = URLSafeTimedSerializer(
            list(reversed(secrets)), salt="oidcproxy-login", signer=_Signer
        )
        self._sign_out = URLSafeTimedSerializer(
            list(reversed(secrets)), salt="oidcproxy-sign-out", signer=_Signer
        )
        self._policy = policy
        self._pkce = pkce
        self._max_age = max_age
        self._shared = shared

    def cookie_name(self, state: str) -> str:
        return f"{self._policy.name}_csrf_{state[:16]}"

    def begin(
        self, return_to: str, redirect_uri: str, provider: str = DEFAULT_PROVIDER
    ) -> tuple[LoginAttempt, SetCookie]:
        attempt = LoginAttempt(
            state=generate_token(32),
            nonce=generate_token(32),
            verifier=generate_token(64) if self._pkce else "",
            return_to=return_to,
            redirect_uri=redirect_uri,
            provider=provider,
        )
        payload = [attempt.state, attempt.nonce, attempt.verifier, attempt.return_to, redirect_uri]
        if provider != DEFAULT_PROVIDER:
            payload.append(provider)
        value = self._serializer.dumps(payload)
        assert isinstance(value, str)  # noqa: S101 - URLSafeTimedSerializer yields text
        return attempt, SetCookie.make(self._policy, self.cookie_name(attempt.state), value, self._max_age)

    async def finish(self, cookies: Mapping[str, str], query: Mapping[str, Any]) -> Callback:
        """Check the callback against its cookie; raise LoginFailed saying why (detail for logs).

        StateUnavailable when the shared state cannot say whether the attempt was used already."""
        state, code = _single(query, "state"), _single(query, "code")
        error = _single(query, "error")
        if error:
            description = _single(query, "error_description")[:200]
            raise LoginFailed(f"provider returned error={error!r} {description!r}")
        if not state or not code:
            raise LoginFailed("callback without state or code")
        raw = cookies.get(self.cookie_name(state))
        if raw is None:
            raise LoginFailed("no login cookie for this state: expired, already used or another browser")
        try:
            saved = self._serializer.loads(raw, max_age=self._max_age)
            saved_state, nonce, verifier, return_to, redirect_uri = saved[:5]
            provider = str(saved[5]) if len(saved) > 5 else DEFAULT_PROVIDER
        except (BadData, ValueError, TypeError) as exc:
            raise LoginFailed(f"login cookie rejected: {type(exc).__name__}") from None
        if not hmac.compare_digest(str(saved_state), state):
            raise LoginFailed("state does not match the login cookie")
        await self._accept_once(state)
        # A full URL was checked against the whitelist at begin() and is signed since.
        target = return_to if _is_absolute(str(return_to)) else safe_return_to(return_to)
        attempt = LoginAttempt(saved_state, nonce, verifier, target, redirect_uri, provider)
        return Callback(attempt, code)

    def sign_out_state(self, return_to: str) -> str:
        """The sign-out `state`: a nonce and `return_to` (already checked), signed and time-limited."""
        value = self._sign_out.dumps([generate_token(16), return_to])
        assert isinstance(value, str)  # noqa: S101 - URLSafeTimedSerializer yields text
        return value

    def sign_out_target(self, state: str) -> str | None:
        """Where a sign-out round-trip ends, from its `state`: "" for our page, None when the state is not
        ours or too old."""
        try:
            _, return_to = self._sign_out.loads(state, max_age=_SIGN_OUT_MAX_AGE_S)
        except (BadData, ValueError, TypeError):
            return None
        target = str(return_to)
        if not target:
            return ""  # no rd was given: our signed-out page
        return target if _is_absolute(target) else safe_return_to(target)

    def clear(self, state: str) -> SetCookie:
        return SetCookie.make(self._policy, self.cookie_name(state), "", 0)

    async def _accept_once(self, state: str) -> None:
        key = "login/" + hashlib.sha256(state.encode()).hexdigest()[:32]
        if await self._shared.add(key, "", self._max_age) is not None:
            raise LoginFailed("this login attempt was already used (replayed callback)")


def _single(query: Mapping[str, Any], name: str) -> str:
    """The one value of a query parameter; a duplicated state or code is refused outright."""
    getall = getattr(query, "getall", None)
    values = list(getall(name, ())) if getall else ([query[name]] if name in query else [])
    if len(values) > 1:
        raise LoginFailed(f"callback carries {name!r} {len(values)} times")
    return str(values[0]) if values else ""
