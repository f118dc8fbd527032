"""The one error tree. Each error carries its HTTP status and a public text; `detail` goes to logs only.

ProxyError (500 internal error)
├── BadRequest (400)
│   └── LoginFailed (400, offers to start again)
├── NotAuthenticated (401; browsers are redirected to sign in)
├── NotFound (404, no upstream route)
├── Forbidden (403)
├── HeadersTooLarge (431)
├── IdPUnavailable (502)
├── StateUnavailable (503, the state the workers share)
├── UpstreamUnavailable (502)
└── UpstreamTimeout (504)

ConfigError is not rendered: the command line prints it and exits 2.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadRequest",
    "ConfigError",
    "Forbidden",
    "HeadersTooLarge",
    "IdPUnavailable",
    "LoginFailed",
    "NotAuthenticated",
    "NotFound",
    "ProxyError",
    "StateUnavailable",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]


class ProxyError(Exception):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Something went wrong"
    public: ClassVar[str] = "The proxy hit an unexpected error. Try again in a moment."

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


class NotAuthenticated(ProxyError):
    status, title = 401, "Sign-in required"
    public = "You need to sign in to see this page."


class Forbidden(ProxyError):
    status, title = 403, "Access denied"
    public = "You are signed in, but your account is not allowed to use this application."


class HeadersTooLarge(ProxyError):
    status, title = 431, "Request headers too large"
    public = "The request's headers are larger than this proxy accepts."


class IdPUnavailable(ProxyError):
    status, title = 502, "Identity provider unavailable"
    public = "The identity provider could not be reached. Try again in a moment."


class StateUnavailable(ProxyError):
    status, title = 503, "Temporarily unavailable"
    public = "The proxy could not reach its shared state. Try again in a moment."


class UpstreamUnavailable(ProxyError):
    status, title = 502, "Application unavailable"
    public = "The application behind this proxy could not be reached. Try again in a moment."


class UpstreamTimeout(ProxyError):
    status, title = 504, "Application too slow"
    public = "The application behind this proxy did not answer in time. Try again in a moment."


class ConfigError(Exception):
    """One or more configuration problems, each a line naming the option and the fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
