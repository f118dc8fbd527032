"""The one error tree. Each error carries its HTTP status and a public text; `detail` goes to logs only.

ProxyError (500 internal error)
├── BadRequest (400)
│   ├── LoginFailed (400, offers to start again)
│   │   ├── TokenInvalid (a token failed a check; the detail names which)
│   │   └── TokenRefused (the token endpoint answered 4xx; `error` is its RFC 6749 code)
│   │       └── RefreshRefused (a refresh that will never be granted: the session ends)
│   ├── SignOutFailed (400, the provider reported an error on the way back from signing out)
│   └── LogoutTokenRefused (400, a back-channel logout token failed a check)
├── NotAuthenticated (401; browsers are redirected to sign in)
│   └── RefreshSuperseded (an old cookie whose refresh token was already redeemed; cookie kept)
├── NotFound (404, no upstream route)
├── Forbidden (403)
├── HeadersTooLarge (431)
├── IdPUnavailable (502, the provider answered wrongly)
│   └── IdPUnreachable (503 with Retry-After: no answer at all, refused or timed out)
├── StateUnavailable (503 with Retry-After, the state the workers share)
│   └── StoreUnavailable (503 with Retry-After: the session store did not answer; never a sign-in)
├── UpstreamUnavailable (502)
│   ├── UpstreamBroken (the upstream failed mid-answer; the proxy turns it into ResponseCut)
│   └── UpstreamTlsFailed (502, the upstream's certificate was not trusted, or the handshake failed)
├── UpstreamTimeout (504)
└── ResponseCut (never rendered: the status line had gone out, so the connection is cut instead)

ConfigError is not rendered: the command line prints it and exits 2.

Every exception that crosses a module boundary is here. Two are private and never leave their module
or package, so they live beside their only raiser and catcher:
- `proxy.connection._ConnectionLost` (an UpstreamUnavailable): a pooled connection closed before any
  answer; `proxy.client` retries the request once and otherwise lets it out as UpstreamUnavailable.
- `idp.standalone._Refused`: a start-up refusal of the standalone provider, printed by its caller.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadRequest",
    "ConfigError",
    "Forbidden",
    "HeadersTooLarge",
    "IdPUnavailable",
    "IdPUnreachable",
    "LoginFailed",
    "NotAuthenticated",
    "NotFound",
    "ProxyError",
    "LogoutTokenRefused",
    "RefreshRefused",
    "RefreshSuperseded",
    "ResponseCut",
    "SignOutFailed",
    "StateUnavailable",
    "StoreUnavailable",
    "TokenInvalid",
    "TokenRefused",
    "UpstreamBroken",
    "UpstreamTimeout",
    "UpstreamTlsFailed",
    "UpstreamUnavailable",
]


class ProxyError(Exception):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Something went wrong"
    public: ClassVar[str] = "The proxy hit an unexpected error. Try again in a moment."
    retry_after_s: ClassVar[int | None] = None  # sent as Retry-After when set (RFC 9110 10.2.3)

    def __init__(self, detail: str = "", *, public: str | None = None) -> None:
        super().__init__(detail or self.public)
        self.detail = detail
        if public is not None:
            self.public = public  # type: ignore[misc]


class BadRequest(ProxyError):
    status, title = 400, "Bad request"
    public = "The request could not be understood."


class NotFound(ProxyError):
    status, title = 404, "Not found"
    public = "No application is configured for this path."


class LoginFailed(BadRequest):
    title = "Sign-in did not complete"
    public = "Your sign-in expired or was already used. Please start again."


class TokenInvalid(LoginFailed):
    """A token failed a check; the detail names which."""


class TokenRefused(LoginFailed):
    """The token endpoint answered 4xx; `error` is its RFC 6749 5.2 error code."""

    def __init__(self, detail: str, error: str) -> None:
        super().__init__(detail)
        self.error = error


class RefreshRefused(TokenRefused):
    """A refresh the provider will never grant (invalid_grant, invalid_client): the session ends."""


class SignOutFailed(BadRequest):
    title = "Sign-out did not complete"
    public = (
        "You are signed out of this application, but the identity provider reported a problem ending "
        "its own session. Close the browser to be sure."
    )


class LogoutTokenRefused(BadRequest):
    title = "Logout token refused"
    public = "The logout token was not accepted."


class NotAuthenticated(ProxyError):
    status, title = 401, "Sign-in required"
    public = "You need to sign in to see this page."


class RefreshSuperseded(NotAuthenticated):
    """An old cookie whose refresh token another request already redeemed: sign in, keep the cookie."""


class Forbidden(ProxyError):
    status, title = 403, "Access denied"
    public = "You are signed in, but your account is not allowed to use this application."


class HeadersTooLarge(ProxyError):
    status, title = 431, "Request headers too large"
    public = "The request's headers are larger than this proxy accepts."


class IdPUnavailable(ProxyError):
    status, title = 502, "Identity provider unavailable"
    public = "The identity provider could not be reached. Try again in a moment."


class IdPUnreachable(IdPUnavailable):
    """No answer from the provider (connection refused, reset or timed out): worth trying again soon.

    A provider that did answer, but wrongly (5xx, not JSON, another issuer), stays a 502.
    """

    status, retry_after_s = 503, 10


class StateUnavailable(ProxyError):
    status, title, retry_after_s = 503, "Temporarily unavailable", 5
    public = "The proxy could not reach its shared state. Try again in a moment."


class StoreUnavailable(StateUnavailable):
    """The session store (Redis) failed or was too slow: the session may well be valid, so never 401."""

    public = "The proxy could not reach its session store. Try again in a moment."


class UpstreamUnavailable(ProxyError):
    status, title = 502, "Application unavailable"
    public = "The application behind this proxy could not be reached. Try again in a moment."


class UpstreamBroken(UpstreamUnavailable):
    """The upstream connection failed after the answer had begun (truncated body, bad framing).

    Only ever seen as ResponseCut: the status line may have gone to the client already.
    """


class UpstreamTlsFailed(UpstreamUnavailable):
    title = "Application certificate not trusted"
    public = (
        "The application behind this proxy could not be reached securely: the TLS connection to it "
        "failed. Its administrator has been told in the proxy's log."
    )


class UpstreamTimeout(ProxyError):
    status, title = 504, "Application too slow"
    public = "The application behind this proxy did not answer in time. Try again in a moment."


class ResponseCut(ProxyError):
    """The stream broke after the status line was sent (the upstream failed or the client left).

    Never rendered: a second response in the same connection would read as part of the first, so the
    middleware closes the connection and the client sees a truncated transfer. `detail` names the
    upstream and the bytes relayed.
    """

    status, title = 502, "Response cut short"


class ConfigError(Exception):
    """One or more configuration problems, each a line naming the option and the fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
