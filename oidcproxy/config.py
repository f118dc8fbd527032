"""The one settings model: flags, `OIDCPROXY_*` environment variables and a TOML file, checked whole.

Names are flat and the same everywhere (`--cookie-secret`, `OIDCPROXY_COOKIE_SECRET`, `cookie_secret`).
Precedence: flag > env > file > default. A name that is neither an option nor an alias
(config_names) is a problem like a bad value. Imports only config_names/model/errors, no domain modules.
"""

from __future__ import annotations

import argparse
import base64
import contextvars
import functools
import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from oidcproxy.config_names import Names, env_given
from oidcproxy.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "Settings",
    "build_parser",
    "cookie_key_material",
    "env_name",
    "flag_name",
    "format_duration",
    "load_settings",
    "parse_duration",
    "shown_default",
    "split_address",
]

ENV_PREFIX = "OIDCPROXY_"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_file_values: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "file_values", default=None
)
_HOW_TO_GENERATE = (
    'generate one with: python -c "import secrets,base64;'
    'print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())"'
)


def parse_duration(value: object) -> float:
    """Go-style durations as oauth2-proxy takes them (`168h`, `1h30m`, `250ms`); bare numbers: seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if not text or _DURATION_PART.sub("", text):
        raise ValueError(f"{text!r} is not a duration; write it like 168h, 1h30m, 30s or 500ms")
    return sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def _split_list(value: object) -> object:
    """Lists come as repeated flags, TOML arrays, or comma-separated env values."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
StrList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]


def split_address(address: str) -> tuple[str, int]:
    """`host:port`, `[::1]:port`, `:port` or `http://host:port` -> (host, port)."""
    text = address.removeprefix("http://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port; write it like 127.0.0.1:4180 or 0.0.0.0:4180")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - ':4180' means all addresses


def cookie_key_material(secret: str) -> bytes:
    """The cookie secret as bytes: raw 16/24/32 characters, or URL-safe base64 of 16/24/32 bytes."""
    raw = secret.encode()
    for candidate in (secret, secret + "=" * (-len(secret) % 4)):
        try:
            decoded = base64.urlsafe_b64decode(candidate.encode())
        except ValueError:
            continue
        if len(decoded) in (16, 24, 32) and base64.urlsafe_b64encode(decoded).rstrip(b"=") == (
            candidate.encode().rstrip(b"=")
        ):
            return decoded
    if len(raw) in (16, 24, 32):
        return raw
    raise ValueError(f"must be 16, 24 or 32 bytes, raw or URL-safe base64; {_HOW_TO_GENERATE}")


def _opt(default: Any = None, help: str = "", **kw: Any) -> Any:
    if default is None:
        return Field(description=help, **kw)
    return Field(default, description=help, **kw)


class Settings(BaseSettings):
    """Every option. Help texts are shown by `oidcproxy --help` and in the README table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", case_sensitive=False, validate_default=True
    )

    # -- where we listen and what we protect
    http_address: str = _opt("127.0.0.1:4180", "address to listen on, host:port")
    upstream: StrList = _opt(
        help="upstream URL, repeatable; its path is the route prefix it serves "
        "(http://app:8080/api/ gets /api/...); builtin:whoami is the demo upstream",
        default_factory=list,
    )
    upstream_timeout: Duration = _opt("30s", "time to wait for the upstream's response headers")
    dev: bool = _opt(
        False,
        "demo mode: embedded provider, builtin:whoami upstream, insecure cookie, random secret",
    )
    oidc_type: Literal["external", "embedded"] = _opt(
        "external", "external provider, or the embedded development provider under /dev-idp"
    )
    dev_idp_signing_alg: Literal["RS256", "ES256"] = _opt(
        "RS256", "signing algorithm of the embedded provider's ID tokens"
    )
    dev_idp_allow_remote: bool = _opt(
        False, "let the embedded provider listen on a non-loopback address (never in production)"
    )
    # -- the provider
    provider_display_name: str = _opt("OpenID Connect", "provider name shown on the sign-in button")
    oidc_issuer_url: str = _opt("", "the provider's issuer URL (discovery at /.well-known/...)")
    client_id: str = _opt("", "OAuth client id registered at the provider")
    client_secret: SecretStr = _opt(SecretStr(""), "OAuth client secret")
    client_secret_file: str = _opt("", "file holding the client secret (instead of --client-secret)")
    redirect_url: str = _opt("", "callback URL registered at the provider; empty: built from the request")
    scope: str = _opt("openid email profile", "scopes to request, space-separated")
    code_challenge_method: str = _opt("S256", "PKCE method: S256, or empty to disable PKCE")
    provider_timeout: Duration = _opt("10s", "timeout for each call to the provider")
    provider_max_response_size: int = _opt(
        1 << 20, "largest discovery, key set, token or userinfo answer read from the provider, in bytes"
    )
    # -- tokens, claims and refresh (docs/providers.md has recipes per provider)
    oidc_extra_audience: StrList = _opt(
        help="another accepted ID token audience besides the client id, repeatable", default_factory=list
    )
    oidc_validator_issuer_url: str = _opt(
        "", "issuer to check in the token passed upstream when it differs from the login's (Entra ID)"
    )
    oidc_validator_client_id: str = _opt(
        "", "audience to check in the token passed upstream when it differs from the client id"
    )
    oidc_use_access_token: bool = _opt(
        False,
        "Authorization: Bearer carries the access token, not the ID token, upstream and on /oauth2/auth "
        "alike (sends it in both); JWTs are validated",
    )
    oidc_email_claim: str = _opt("email", "claim holding the email; dotted paths reach nested claims")
    oidc_groups_claim: str = _opt("groups", "claim holding the groups (list or comma-separated string)")
    oidc_username_claim: str = _opt("email", "claim holding the user name passed upstream")
    oidc_username_prefix: str = _opt("", "prefix for user names (policy Prefix, or when policy is empty)")
    oidc_username_prefix_policy: Literal["", "Prefix", "NoPrefix"] = _opt(
        "", "Prefix: prepend --oidc-username-prefix; NoPrefix: none; empty: <issuer># unless claim is email"
    )
    oidc_groups_prefix: str = _opt("", "prefix prepended to every group name")
    oidc_required_claim: StrList = _opt(
        help="claim=value that every token must carry, repeatable (all must hold)", default_factory=list
    )
    allowed_group: StrList = _opt(
        help="group allowed in, repeatable; the person needs at least one", default_factory=list
    )
    skip_oidc_discovery: bool = _opt(
        False, "no discovery document: give --login-url, --redeem-url and --oidc-jwks-url"
    )
    login_url: str = _opt("", "authorization endpoint (with --skip-oidc-discovery)")
    redeem_url: str = _opt("", "token endpoint (with --skip-oidc-discovery)")
    oidc_jwks_url: str = _opt("", "JWKS URL (with --skip-oidc-discovery)")
    profile_url: str = _opt("", "userinfo endpoint (with --skip-oidc-discovery; optional)")
    auth_extra_param: StrList = _opt(
        help="key=value added to the authorization request, repeatable (prompt, domain_hint...)",
        default_factory=list,
    )
    provider_ca_file: StrList = _opt(
        help="PEM file of CA certificates trusted for the provider, repeatable; default: system store",
        default_factory=list,
    )
    insecure_oidc_allow_http: bool = _opt(
        False, "allow an http:// issuer that is not a loopback address (never in production)"
    )
    oidc_jwks_min_refetch: Duration = _opt(
        "30s", "least time between two key set fetch attempts, failed or not"
    )
    oidc_jwks_stale_if_error: Duration = _opt(
        "24h", "keep using known keys this long past their cache lifetime while refreshes fail"
    )
    cookie_refresh: Duration = _opt(
        "0s", "refresh the tokens when the session is older than this; 0: only when tokens expire"
    )
    skip_jwt_bearer_tokens: bool = _opt(
        False, "let requests with a valid Authorization: Bearer JWT through without a cookie"
    )
    extra_jwt_issuers: StrList = _opt(
        help="issuer=audience also accepted for bearer tokens, repeatable; our own issuer adds an audience",
        default_factory=list,
    )
    # -- the session cookie
    cookie_secret: SecretStr = _opt(SecretStr(""), "seals the session: 16, 24 or 32 bytes")
    cookie_name: str = _opt("_oidcproxy", "name of the session cookie")
    cookie_secure: bool = _opt(True, "mark cookies Secure (HTTPS only)")
    cookie_domain: str = _opt("", "Domain attribute of the cookies; empty: this host only")
    cookie_path: str = _opt("/", "Path attribute of the cookies")
    cookie_expire: Duration = _opt("168h", "how long a session lasts")
    cookie_samesite: Literal["lax", "strict", "none"] = _opt("lax", "SameSite attribute")
    # -- who may pass, what the upstream is told
    email_domain: StrList = _opt(
        help="allowed email domain, repeatable; * for any, .example.com for subdomains",
        default_factory=list,
    )
    authenticated_emails_file: str = _opt("", "file of allowed email addresses, one a line")
    insecure_allow_unverified_email: bool = _opt(
        False, "admit emails the provider marks email_verified=false"
    )
    pass_user_headers: bool = _opt(True, "send X-Forwarded-User/-Email/-Groups upstream")
    pass_access_token: bool = _opt(False, "send X-Forwarded-Access-Token upstream")
    pass_authorization_header: bool = _opt(
        False, "send Authorization: Bearer <ID token> upstream (see --oidc-use-access-token)"
    )
    pass_host_header: bool = _opt(True, "send the client's Host header upstream (else the upstream's)")
    skip_provider_button: bool = _opt(False, "go straight to the provider, no sign-in page")
    show_debug_on_error: bool = _opt(False, "show error details on error pages (never in production)")
    # -- the pages people see (oidcproxy/pages)
    banner: str = _opt("", "text shown above the sign-in, signed-out and error pages")
    footer: str = _opt("", "text at the foot of those pages; empty: 'Protected by oidcproxy'; - hides it")
    custom_sign_in_logo: str = _opt(
        "", "image on the sign-in page: a png/jpg/gif/svg/webp file or a data:image/ URL, embedded"
    )
    custom_templates_dir: str = _opt("", "folder with your own layout.html and/or style.css for the pages")
    log_level: Literal["debug", "info", "warning", "error"] = _opt("info", "log level")
    request_logging: bool = _opt(True, "log one line per request (batched, written off the event loop)")
    workers: int = _opt(
        0,
        "processes serving --http-address together (SO_REUSEPORT); 0: the container's CPU quota "
        "rounded up, else one per CPU, or 1 with --oidc-type embedded",
    )
    # -- behind a reverse proxy / NGINX ingress
    reverse_proxy: bool = _opt(
        False, "trust X-Forwarded-* and Forwarded headers, only from --trusted-proxy-ip peers"
    )
    trusted_proxy_ip: StrList = _opt(
        ["127.0.0.0/8", "::1/128"], "CIDR of a proxy whose forwarded headers count, repeatable"
    )
    whitelist_domain: StrList = _opt(
        help="other host rd and Origin may name, repeatable; .example.com for subdomains, optional :port",
        default_factory=list,
    )
    set_xauthrequest: bool = _opt(False, "/oauth2/auth answers with X-Auth-Request-User/-Email/-Groups")
    set_authorization_header: bool = _opt(
        False, "/oauth2/auth answers with Authorization: Bearer <ID token> (see --oidc-use-access-token)"
    )
    max_header_size: int = _opt(65536, "largest request header line in bytes; twice that in all")
    skip_auth_route: StrList = _opt(
        help="[METHOD=]regex of paths served without sign-in, repeatable (normalised path)",
        default_factory=list,
    )
    skip_auth_preflight: bool = _opt(False, "let CORS preflight OPTIONS requests pass without sign-in")
    api_route: StrList = _opt(
        help="[METHOD=]regex of API paths: 401 instead of a sign-in redirect, repeatable",
        default_factory=list,
    )
    websocket_handshake_timeout: Duration = _opt("10s", "time for the upstream's WebSocket handshake")
    websocket_idle_timeout: Duration = _opt("0s", "close a WebSocket silent this long both ways; 0: never")
    websocket_session_check: Duration = _opt(
        "15s", "how often an open WebSocket checks its session; closed with 1008 once it expired"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environment = _names().resolve(env_given(os.environ, ENV_PREFIX, _ENV_RESERVED), env_name)[0]
        return (
            init_settings,
            _Given(settings_cls, environment),
            _Given(settings_cls, _file_values.get() or {}),
        )

    @field_validator("http_address")
    @classmethod
    def _address(cls, value: str) -> str:
        split_address(value)
        return value

    @field_validator("cookie_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            cookie_key_material(value.get_secret_value())
        return value

    @field_validator("code_challenge_method")
    @classmethod
    def _pkce(cls, value: str) -> str:
        if value == "plain":
            raise ValueError("plain PKCE is refused (RFC 9700 2.1.1); use S256, or empty to disable")
        if value not in ("S256", ""):
            raise ValueError(f"{value!r} is not a PKCE method; use S256, or empty to disable")
        return value

    @field_validator("upstream")
    @classmethod
    def _upstreams(cls, value: list[str]) -> list[str]:
        for url in value:
            if url.startswith("builtin:"):
                if url != "builtin:whoami":
                    raise ValueError(f"{url!r}: the only built-in upstream is builtin:whoami")
                continue
            if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", url):
                raise ValueError(f"{url!r} is not an http(s) URL like http://127.0.0.1:8080/")
        return value

    @field_validator("cookie_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with /")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        problems = self._problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _problems(self) -> list[str]:
        out: list[str] = []
        embedded = self.oidc_type == "embedded"
        if not self.upstream:
            out.append("--upstream: missing; name the application to protect, e.g. http://127.0.0.1:8080/")
        if not self.cookie_secret.get_secret_value():
            out.append(f"--cookie-secret: missing; {_HOW_TO_GENERATE}")
        if not embedded and not self.oidc_issuer_url:
            out.append("--oidc-issuer-url: missing; set it to your provider's issuer URL")
        elif not embedded and not re.fullmatch(r"https?://[^\s?#]+", self.oidc_issuer_url):
            out.append(f"--oidc-issuer-url: {self.oidc_issuer_url!r} is not an http(s) URL")
        if not embedded and not self.client_id:
            out.append("--client-id: missing; use the client id registered at your provider")
        if not embedded and self.client_secret_file and self.client_secret.get_secret_value():
            out.append("--client-secret-file: give either it or --client-secret, not both")
        elif not embedded and not self.client_secret_file and not self.client_secret.get_secret_value():
            out.append("--client-secret: missing; give it or --client-secret-file")
        if self.client_secret_file and not Path(self.client_secret_file).is_file():
            out.append(f"--client-secret-file: {self.client_secret_file!r} is not a readable file")
        if not self.email_domain and not self.authenticated_emails_file:
            out.append(
                "--email-domain: missing; name the allowed domains (or * for any verified email), "
                "or give --authenticated-emails-file"
            )
        if self.authenticated_emails_file and not Path(self.authenticated_emails_file).is_file():
            out.append(
                f"--authenticated-emails-file: {self.authenticated_emails_file!r} is not a readable file"
            )
        if self.cookie_samesite == "none" and not self.cookie_secure:
            out.append("--cookie-samesite: none needs --cookie-secure=true (browsers drop it otherwise)")
        if self.redirect_url and not re.fullmatch(r"https?://[^\s?#]+", self.redirect_url):
            out.append(f"--redirect-url: {self.redirect_url!r} is not an http(s) URL")
        if self.workers < 0:
            out.append("--workers: must be 0 (one per CPU) or more")
        elif embedded and self.workers > 1:
            out.append("--workers: the embedded provider keeps its state in one process; use --workers 1")
        if self.cookie_expire <= 0:
            out.append("--cookie-expire: must be positive, e.g. 168h")
        out += self._edge_problems()
        if embedded and not self.dev_idp_allow_remote and not _is_loopback(self.http_address):
            out.append(
                f"--http-address: {self.http_address} is not a loopback address and the embedded "
                "development provider must not face users; listen on 127.0.0.1, or pass "
                "--dev-idp-allow-remote if you really mean it"
            )
        out.extend(self._token_problems())
        out.extend(self._page_problems())
        return out

    def _page_problems(self) -> list[str]:
        out: list[str] = []
        logo = self.custom_sign_in_logo
        if logo.startswith("data:") and not logo.startswith("data:image/"):
            out.append("--custom-sign-in-logo: a data: URL must be an image, data:image/...")
        elif logo and not logo.startswith("data:"):
            path = Path(logo)
            if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"):
                out.append(f"--custom-sign-in-logo: {logo!r} must be a png, jpg, gif, svg or webp file")
            elif not path.is_file():
                out.append(f"--custom-sign-in-logo: {logo!r} is not a readable file")
            elif path.stat().st_size > 256 * 1024:
                out.append(f"--custom-sign-in-logo: {logo!r} is over 256 KiB; every sign-in page embeds it")
        if self.custom_templates_dir and not Path(self.custom_templates_dir).is_dir():
            out.append(f"--custom-templates-dir: {self.custom_templates_dir!r} is not a folder")
        return out

    def _token_problems(self) -> list[str]:
        out: list[str] = []
        if len(self.oidc_extra_audience) + 1 > 10:
            out.append("--oidc-extra-audience: at most 10 audiences in all, counting --client-id")
        for name in ("oidc_required_claim", "auth_extra_param", "extra_jwt_issuers"):
            for item in getattr(self, name):
                key, sep, _ = item.partition("=")
                if not sep or not key.strip():
                    out.append(f"{flag_name(name)}: {item!r} is not key=value")
        if self.oidc_username_prefix_policy == "Prefix" and not self.oidc_username_prefix:
            out.append("--oidc-username-prefix-policy: Prefix needs --oidc-username-prefix")
        if self.skip_oidc_discovery:
            for name in ("login_url", "redeem_url", "oidc_jwks_url"):
                if not getattr(self, name):
                    out.append(f"{flag_name(name)}: missing; --skip-oidc-discovery needs it")
        for name in ("login_url", "redeem_url", "oidc_jwks_url", "profile_url", "oidc_validator_issuer_url"):
            value = getattr(self, name)
            if value and not re.fullmatch(r"https?://[^\s#]+", value):
                out.append(f"{flag_name(name)}: {value!r} is not an http(s) URL")
        for path in self.provider_ca_file:
            if not Path(path).is_file():
                out.append(f"--provider-ca-file: {path!r} is not a readable file")
        issuer = self.oidc_issuer_url
        if (
            self.oidc_type == "external"
            and issuer.startswith("http://")
            and not self.insecure_oidc_allow_http
            and not _is_loopback_url(issuer)
        ):
            out.append(
                f"--oidc-issuer-url: {issuer!r} is not https; use https, or pass "
                "--insecure-oidc-allow-http for a test provider"
            )
        if not 4096 <= self.provider_max_response_size <= 64 << 20:
            out.append("--provider-max-response-size: must be between 4096 and 67108864 bytes, e.g. 1048576")
        if self.oidc_jwks_stale_if_error < 0:
            out.append("--oidc-jwks-stale-if-error: must be 0 (never) or positive, e.g. 24h")
        if self.cookie_refresh < 0:
            out.append("--cookie-refresh: must be 0 (off) or positive, e.g. 1h")
        elif self.cookie_refresh and self.cookie_refresh >= self.cookie_expire:
            out.append("--cookie-refresh: must be shorter than --cookie-expire")
        return out

    def _edge_problems(self) -> list[str]:
        """--trusted-proxy-ip, route regexes and header limits (the reverse-proxy options)."""
        out: list[str] = []
        for cidr in self.trusted_proxy_ip:
            try:
                ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                out.append(f"--trusted-proxy-ip: {cidr!r} is not an address or CIDR, e.g. 10.0.0.0/8")
        for flag, rules in (("--skip-auth-route", self.skip_auth_route), ("--api-route", self.api_route)):
            for rule in rules:
                method, sep, regex = rule.partition("=")
                try:
                    re.compile(regex if sep and re.fullmatch(r"[A-Za-z]+", method) else rule)
                except re.error as exc:
                    out.append(f"{flag}: {rule!r} is not a regular expression ({exc})")
        if not 8190 <= self.max_header_size <= 1 << 20:
            out.append("--max-header-size: must be between 8190 and 1048576 bytes, e.g. 65536")
        if self.websocket_handshake_timeout <= 0 or self.websocket_session_check <= 0:
            out.append("--websocket-handshake-timeout, --websocket-session-check: must be positive")
        return out

    def client_secret_value(self) -> str:
        """The client secret, read from --client-secret-file when that is given."""
        if self.client_secret_file:
            return Path(self.client_secret_file).read_text().strip()
        return self.client_secret.get_secret_value()

    def allowed_emails(self) -> frozenset[str]:
        if not self.authenticated_emails_file:
            return frozenset()
        lines = Path(self.authenticated_emails_file).read_text().splitlines()
        return frozenset(
            line.split("#", 1)[0].strip().lower() for line in lines if line.split("#", 1)[0].strip()
        )


def _is_loopback(address: str) -> bool:
    host, _ = split_address(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Given(PydanticBaseSettingsSource):
    """Option values one source gave, aliases already resolved (the environment, the --config file)."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


_ENV_RESERVED = frozenset({"CONFIG"})  # OIDCPROXY_CONFIG names the file; it is not an option


@functools.cache
def _names() -> Names:
    fields = Settings.model_fields
    return Names.of(fields, [name for name, info in fields.items() if _kind(info) == "list"])


def _kind(info: FieldInfo) -> str:
    text = str(info.annotation)
    if "bool" in text:
        return "bool"
    if "list" in text:
        return "list"
    return "value"


def shown_default(name: str, info: FieldInfo) -> str:
    if info.default_factory is not None:
        return "none"
    value = info.default
    if isinstance(value, SecretStr):
        return "none"
    if name.endswith(("_expire", "_timeout", "_refresh", "_refetch")):
        return format_duration(parse_duration(value))
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if value == "" else str(value)


def build_parser(prog: str = "oidcproxy") -> argparse.ArgumentParser:
    """One flag per settings field, generated, so --help cannot drift from the model."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Authenticating reverse proxy for OpenID Connect.",
        epilog="Booleans take --name, --name=true or --name=false. Repeatable options take the "
        "flag several times, or a comma-separated list in the environment variable.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,  # --email-dom must not pass for --email-domain (fail closed, README)
    )
    parser.add_argument("--config", metavar="FILE", help=f"TOML file of options [env {ENV_PREFIX}CONFIG]")
    fields = Settings.model_fields
    for name, info in fields.items():
        help_text = f"{info.description} [env {env_name(name)}, default {shown_default(name, info)}]"
        _add_flag(parser, name, _kind(info), help_text)
    for alias, option in _names().aliases.items():  # oauth2-proxy's names, kept out of --help
        _add_flag(parser, alias, _kind(fields[option]), argparse.SUPPRESS)
    return parser


def _add_flag(parser: argparse.ArgumentParser, name: str, kind: str, help_text: str) -> None:
    if kind == "bool":
        parser.add_argument(
            flag_name(name), dest=name, nargs="?", const="true", metavar="BOOL", help=help_text
        )
    elif kind == "list":
        parser.add_argument(flag_name(name), dest=name, action="append", help=help_text)
    else:
        parser.add_argument(flag_name(name), dest=name, metavar="VALUE", help=help_text)


def _dev_defaults(*sources: Mapping[str, Any]) -> dict[str, Any]:
    """--dev fills in what the demo needs wherever the person has not set it themselves."""

    def given(name: str) -> bool:
        return any(name in source for source in sources)

    demo: dict[str, Any] = {
        "oidc_type": "embedded",
        "upstream": ["builtin:whoami"],
        "cookie_secure": False,
        "cookie_secret": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "email_domain": ["*"],
        "provider_display_name": "the development provider",
    }
    return {k: v for k, v in demo.items() if not given(k)}


def _is_true(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def load_settings(argv: Sequence[str]) -> Settings:
    """Parse flags, the environment and the file into Settings; ConfigError has one line a problem.

    Any name that is not an option or an alias (a flag, an `OIDCPROXY_*` variable, a key in the file)
    is a problem too, so that a misspelt restriction stops start-up instead of vanishing.
    """
    parsed, extra = build_parser().parse_known_args(list(argv))
    given = vars(parsed)
    path_text = given.pop("config", None) or os.environ.get(f"{ENV_PREFIX}CONFIG", "")
    names = _names()
    flags, problems = names.resolve(given, flag_name)
    problems = [*names.unknown_arguments(extra, flag_name), *problems]
    environment, env_problems = names.resolve(env_given(os.environ, ENV_PREFIX, _ENV_RESERVED), env_name)
    file_values, file_problems = names.resolve(_read_file(path_text), str, f" in {path_text}")
    problems += env_problems + file_problems
    dev = flags.get("dev", environment.get("dev", file_values.get("dev", False)))
    if _is_true(dev):
        flags = {**_dev_defaults(flags, environment, file_values), **flags}
    token = _file_values.set(file_values)
    try:
        settings = Settings(**flags)
    except ValidationError as exc:  # reported with the name problems: every problem at once
        raise ConfigError([*problems, *_describe(exc)]) from None
    finally:
        _file_values.reset(token)
    if problems:
        raise ConfigError(problems)
    return settings


def _read_file(path_text: str) -> dict[str, Any]:
    if not path_text:
        return {}
    try:
        return tomllib.loads(Path(path_text).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"--config: cannot read {path_text!r}: {exc}"]) from exc


def _describe(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in err["loc"] if isinstance(part, str)]
        message = str(err["msg"]).removeprefix("Value error, ")
        if not loc:
            lines.extend(message.splitlines())
            continue
        name = loc[0]
        if name in Settings.model_fields:
            lines.append(f"{flag_name(name)} (env {env_name(name)}): {_friendly(err, message)}")
        else:
            lines.append(f"{name!r} is not an option; see oidcproxy --help for the list")
    return lines


def _friendly(err: Mapping[str, Any], message: str) -> str:
    kind = err.get("type", "")
    if kind == "literal_error":
        return message.replace("Input should be", "must be one of")
    if kind == "bool_parsing":
        return "must be true or false"
    return message
