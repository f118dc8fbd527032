"""Options of several providers: the `[[providers]]` tables of the file, `OIDCPROXY_PROVIDERS_<n>_*`.

Each entry names one provider: its id and button text, its issuer (or manual endpoints), our client
registration there, its claim mapping and its own rules (`email_domain`, `allowed_group`). What an
entry does not set it takes from the flat options of the same name (claims, scopes, rules), so the
flat options are the common template; the flat options alone are one provider with the id
"default". Problems name the entry: `providers[1].client_secret: missing; ...`. Imports only
config.values and
model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from oidcproxy.config.values import HTTP_URL, StrList, is_loopback_url, key_value_problems
from oidcproxy.model import DEFAULT_PROVIDER

__all__ = [
    "DEFAULT_PROVIDER",
    "ENTRA_V1",
    "INHERITED",
    "ProviderSpec",
    "env_providers",
    "merge_providers",
    "parse_providers",
]

ENTRA_V1 = "https://sts.windows.net/{tenant}/"
_ENTRA_V2 = re.compile(r"https://login\.microsoftonline\.com/([0-9a-fA-F-]{36})/v2\.0")
_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_URL = r"https?://[^\s?#]+"
_ENV = re.compile(r"providers_(\d{1,2})_([a-z0-9_]+)")
_ALIASES = {
    "email_domains": "email_domain",
    "allowed_groups": "allowed_group",
    "oidc_extra_audiences": "oidc_extra_audience",
    "oidc_required_claims": "oidc_required_claim",
    "auth_extra_params": "auth_extra_param",
    "provider_display_name": "display_name",
    "name": "display_name",
}

INHERITED = (
    "scope",
    "auth_extra_param",
    "oidc_extra_audience",
    "oidc_use_access_token",
    "oidc_email_claim",
    "oidc_groups_claim",
    "oidc_username_claim",
    "oidc_username_prefix",
    "oidc_username_prefix_policy",
    "oidc_groups_prefix",
    "oidc_required_claim",
    "email_domain",
    "allowed_group",
)
"""Entry options that default to the flat option of the same name (the rest are the entry's own)."""


class ProviderSpec(BaseModel):
    """One configured provider, every option resolved (the entry's own, else the flat option's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = DEFAULT_PROVIDER
    display_name: str = ""
    type: Literal["oidc", "entra"] = "oidc"
    oidc_issuer_url: str = ""
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    client_secret_file: str = ""
    redirect_url: str = ""
    scope: str = "openid email profile"
    skip_oidc_discovery: bool = False
    login_url: str = ""
    redeem_url: str = ""
    oidc_jwks_url: str = ""
    profile_url: str = ""
    auth_extra_param: StrList = []
    oidc_extra_audience: StrList = []
    oidc_validator_issuer_url: str = ""
    oidc_validator_client_id: str = ""
    oidc_use_access_token: bool = False
    oidc_email_claim: str = "email"
    oidc_groups_claim: str = "groups"
    oidc_username_claim: str = "email"
    oidc_username_prefix: str = ""
    oidc_username_prefix_policy: Literal["", "Prefix", "NoPrefix"] = ""
    oidc_groups_prefix: str = ""
    oidc_required_claim: StrList = []
    email_domain: StrList = []
    allowed_group: StrList = []

    @property
    def button(self) -> str:
        return self.display_name or self.id

    @property
    def entra_tenant(self) -> str:
        """The tenant of an Entra ID provider's v2 issuer; empty for any other provider."""
        found = _ENTRA_V2.fullmatch(self.oidc_issuer_url.rstrip("/"))
        return found.group(1).lower() if self.type == "entra" and found else ""

    def client_secret_value(self) -> str:
        if self.client_secret_file:
            return Path(self.client_secret_file).read_text().strip()
        return self.client_secret.get_secret_value()

    def problems(self, allow_http: bool, emails_file: bool) -> list[str]:
        """What is wrong with this entry, each line naming the option (the caller adds the entry)."""
        out = self._registration_problems()
        out += self._endpoint_problems()
        if self.oidc_issuer_url.startswith("http://") and not allow_http:
            if not is_loopback_url(self.oidc_issuer_url):
                out.append("oidc_issuer_url: not https; use https, or pass --insecure-oidc-allow-http")
        if self.type == "entra" and not self.entra_tenant:
            out.append(
                "oidc_issuer_url: type entra needs the v2 issuer "
                "https://login.microsoftonline.com/<tenant id>/v2.0"
            )
        if not self.email_domain and not emails_file:
            out.append("email_domain: missing; name the allowed domains, or * for any verified email")
        out += [
            p.removeprefix("--").replace("-", "_")
            for p in key_value_problems("oidc_required_claim", self.oidc_required_claim)
        ]
        if self.oidc_username_prefix_policy == "Prefix" and not self.oidc_username_prefix:
            out.append("oidc_username_prefix_policy: Prefix needs oidc_username_prefix")
        return out

    def _registration_problems(self) -> list[str]:
        out: list[str] = []
        if not _ID.fullmatch(self.id):
            out.append(f"id: {self.id!r} must be 1-32 of a-z, 0-9, _ and -, starting with a letter or digit")
        if not self.oidc_issuer_url:
            out.append("oidc_issuer_url: missing; set it to this provider's issuer URL")
        elif not re.fullmatch(_URL, self.oidc_issuer_url):
            out.append(f"oidc_issuer_url: {self.oidc_issuer_url!r} is not an http(s) URL")
        if not self.client_id:
            out.append("client_id: missing; use the client id registered at this provider")
        if self.client_secret_file and self.client_secret.get_secret_value():
            out.append("client_secret_file: give either it or client_secret, not both")
        elif not self.client_secret_file and not self.client_secret.get_secret_value():
            out.append("client_secret: missing; give it or client_secret_file")
        elif self.client_secret_file and not Path(self.client_secret_file).is_file():
            out.append(f"client_secret_file: {self.client_secret_file!r} is not a readable file")
        if self.redirect_url and not re.fullmatch(_URL, self.redirect_url):
            out.append(f"redirect_url: {self.redirect_url!r} is not an http(s) URL")
        elif self.redirect_url and not self.redirect_url.endswith(f"/oauth2/callback/{self.id}"):
            out.append(f"redirect_url: must end with /oauth2/callback/{self.id}, this provider's callback")
        return out

    def _endpoint_problems(self) -> list[str]:
        out: list[str] = []
        manual = {
            "login_url": self.login_url,
            "redeem_url": self.redeem_url,
            "oidc_jwks_url": self.oidc_jwks_url,
        }
        if self.skip_oidc_discovery:
            out += [f"{k}: missing; skip_oidc_discovery needs it" for k, v in manual.items() if not v]
        for name, value in {**manual, "profile_url": self.profile_url}.items():
            if value and not re.fullmatch(HTTP_URL, value):
                out.append(f"{name}: {value!r} is not an http(s) URL")
        return out


def env_providers(given: Mapping[str, str]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Split `OIDCPROXY_PROVIDERS_<n>_<OPTION>` (names already lower-cased, prefix gone) from the rest.

    Answers (the other variables, one dict per index 0..n). Gaps in the numbering are kept as empty
    entries, so that a missing `PROVIDERS_1_*` is reported rather than silently skipped.
    """
    rest: dict[str, str] = {}
    entries: dict[int, dict[str, Any]] = {}
    for name, value in given.items():
        found = _ENV.fullmatch(name)
        if found is None:
            rest[name] = value
        else:
            entries.setdefault(int(found.group(1)), {})[found.group(2)] = value
    count = max(entries, default=-1) + 1
    return rest, [entries.get(i, {}) for i in range(count)]


def merge_providers(
    file: Sequence[Mapping[str, Any]], env: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The file's entries, each option of entry n overridden by `OIDCPROXY_PROVIDERS_<n>_*` (env > file)."""
    count = max(len(file), len(env))
    return [{**(file[i] if i < len(file) else {}), **(env[i] if i < len(env) else {})} for i in range(count)]


def parse_providers(
    raw: Sequence[Any], flat: Mapping[str, Any], *, allow_http: bool, emails_file: bool
) -> tuple[tuple[ProviderSpec, ...], list[str]]:
    """The entries as specs (unset options from `flat`), and every problem, `providers[i].option: ...`."""
    specs: list[ProviderSpec] = []
    problems: list[str] = []
    for index, entry in enumerate(raw):
        where = f"providers[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: must be a table of options ([[providers]] in the file)")
            continue
        given, renamed = _resolve_aliases(entry, where)
        problems += renamed
        try:
            spec = ProviderSpec.model_validate({**{k: flat[k] for k in INHERITED}, **given})
        except ValidationError as exc:
            problems += _describe(exc, where)
            continue
        problems += [f"{where}.{line}" for line in spec.problems(allow_http, emails_file)]
        specs.append(spec)
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        if spec.id in seen:
            problems.append(
                f"providers[{index}].id: {spec.id!r} is used twice; give each provider its own id"
            )
        seen.add(spec.id)
    return tuple(specs), problems


def _resolve_aliases(entry: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in entry.items():
        name = _ALIASES.get(str(key), str(key))
        if name in out:
            problems.append(f"{where}.{key}: the same option twice; keep one")
        out[name] = value
    return out, problems


def _describe(exc: ValidationError, where: str) -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        name = ".".join(str(p) for p in err["loc"] if isinstance(p, str))
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "not an option of a provider; see README: Several providers"
        elif err["type"] == "literal_error":
            message = message.replace("Input should be", "must be one of")
        lines.append(f"{where}.{name}: {message}")
    return lines
