"""Options of the session cookie: its secret, name and attributes, and how long a session lasts.

One concern of the flat Settings (settings.py), checking its own fields in `problems()`.
Imports only config.values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, SecretStr, field_validator
from pydantic_settings import NoDecode

from oidcproxy.config.values import HOW_TO_GENERATE, Duration, cookie_key_material, option

__all__ = ["CookieOptions"]


def _secrets(value: object) -> object:
    """Repeated flags, a TOML array, or one comma-separated variable (base64url has no commas)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


SecretList = Annotated[list[SecretStr], NoDecode, BeforeValidator(_secrets)]


class CookieOptions(BaseModel):
    """The session cookie."""

    cookie_secret: SecretList = option(
        help="seals the session: 16, 24 or 32 bytes; repeatable: the first seals, every one opens",
        default_factory=list,
    )
    cookie_secret_file: str = option("", "file of cookie secrets, one a line (after any --cookie-secret)")
    cookie_name: str = option("_oidcproxy", "name of the session cookie")
    cookie_secure: bool = option(True, "mark cookies Secure (HTTPS only)")
    cookie_domain: str = option("", "Domain attribute of the cookies; empty: this host only")
    cookie_path: str = option("/", "Path attribute of the cookies")
    cookie_expire: Duration = option("168h", "how long a session lasts")
    cookie_samesite: Literal["lax", "strict", "none"] = option("lax", "SameSite attribute")

    @field_validator("cookie_secret")
    @classmethod
    def _secret(cls, value: list[SecretStr]) -> list[SecretStr]:
        for secret in value:
            cookie_key_material(secret.get_secret_value())
        return value

    @field_validator("cookie_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with /")
        return value

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.cookie_secret_file:
            out.extend(self._file_problems())
        elif not self.cookie_secret:
            out.append(f"--cookie-secret: missing; {HOW_TO_GENERATE}")
        if self.cookie_samesite == "none" and not self.cookie_secure:
            out.append("--cookie-samesite: none needs --cookie-secure=true (browsers drop it otherwise)")
        if self.cookie_expire <= 0:
            out.append("--cookie-expire: must be positive, e.g. 168h")
        return out

    def cookie_secrets(self) -> list[bytes]:
        """Key material of every secret, the sealing one first: the flags, then the file's lines."""
        given = [s.get_secret_value() for s in self.cookie_secret]
        if self.cookie_secret_file:
            given += _lines(self.cookie_secret_file)
        return [cookie_key_material(secret) for secret in given]

    def _file_problems(self) -> list[str]:
        flag = "--cookie-secret-file"
        if not Path(self.cookie_secret_file).is_file():
            return [f"{flag}: {self.cookie_secret_file!r} is not a readable file"]
        lines = _lines(self.cookie_secret_file)
        if not lines and not self.cookie_secret:
            return [f"{flag}: {self.cookie_secret_file!r} holds no secret; {HOW_TO_GENERATE}"]
        out: list[str] = []
        for number, line in enumerate(lines, 1):
            try:
                cookie_key_material(line)
            except ValueError as exc:
                out.append(f"{flag}: secret {number} {exc}")
        return out


def _lines(path: str) -> list[str]:
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
