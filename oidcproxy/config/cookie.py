"""Options of the session cookie: its secret, name and attributes, and how long a session lasts.

One concern of the flat Settings (settings.py), checking its own fields in `problems()`.
Imports only config.values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, SecretStr, field_validator

from oidcproxy.config.values import HOW_TO_GENERATE, Duration, cookie_key_material, option

__all__ = ["CookieOptions"]


class CookieOptions(BaseModel):
    """The session cookie."""

    cookie_secret: SecretStr = option(SecretStr(""), "seals the session: 16, 24 or 32 bytes")
    cookie_name: str = option("_oidcproxy", "name of the session cookie")
    cookie_secure: bool = option(True, "mark cookies Secure (HTTPS only)")
    cookie_domain: str = option("", "Domain attribute of the cookies; empty: this host only")
    cookie_path: str = option("/", "Path attribute of the cookies")
    cookie_expire: Duration = option("168h", "how long a session lasts")
    cookie_samesite: Literal["lax", "strict", "none"] = option("lax", "SameSite attribute")

    @field_validator("cookie_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            cookie_key_material(value.get_secret_value())
        return value

    @field_validator("cookie_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with /")
        return value

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.cookie_secret.get_secret_value():
            out.append(f"--cookie-secret: missing; {HOW_TO_GENERATE}")
        if self.cookie_samesite == "none" and not self.cookie_secure:
            out.append("--cookie-samesite: none needs --cookie-secure=true (browsers drop it otherwise)")
        if self.cookie_expire <= 0:
            out.append("--cookie-expire: must be positive, e.g. 168h")
        return out
