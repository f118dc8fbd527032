"""The one settings model: every option as a flat field, grouped by concern, checked as a whole.

Settings inherits its fields from one options class per concern (server.py, provider.py, tokens.py,
cookie.py, sessions.py, access.py, pages.py, edge.py, websocket.py), so `settings.cookie_secret`,
`--cookie-secret`, `OIDCPROXY_COOKIE_SECRET` and `cookie_secret` in the file stay flat (STYLE C3).
Each concern reports its own cross-field problems; `Settings.problems` adds the few that join two
concerns and the model validator reports them all at once. Imports config's own modules and errors only.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from typing import Any, Self

from pydantic import PrivateAttr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from oidcproxy.config.access import AccessOptions
from oidcproxy.config.cookie import CookieOptions
from oidcproxy.config.edge import EdgeOptions
from oidcproxy.config.pages import PageOptions
from oidcproxy.config.provider import EndpointOptions, ProviderOptions
from oidcproxy.config.providers import INHERITED, ProviderSpec, parse_providers
from oidcproxy.config.server import RuntimeOptions, ServerOptions
from oidcproxy.config.sessions import SessionStoreOptions
from oidcproxy.config.sources import EnvironmentSource
from oidcproxy.config.tokens import BearerOptions, ClaimOptions
from oidcproxy.config.values import ENV_PREFIX, flag_name, is_loopback, is_loopback_url
from oidcproxy.config.websocket import WebSocketOptions

__all__ = ["Settings"]

# Sources built by the caller of Settings.from_sources; a contextvar because pydantic-settings calls
# settings_customise_sources as a classmethod (its `_build_sources` argument is private and changing).
_SOURCES: contextvars.ContextVar[tuple[PydanticBaseSettingsSource, ...] | None] = contextvars.ContextVar(
    "settings_sources", default=None
)
# The `[[providers]]` entries (file and environment merged) for the Settings being built.
_PROVIDERS: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar("providers", default=())
# Flat options that name the one provider: with [[providers]] each entry names its own.
_FLAT_PROVIDER = (
    "oidc_issuer_url",
    "client_id",
    "client_secret",
    "client_secret_file",
    "redirect_url",
    "skip_oidc_discovery",
    "login_url",
    "redeem_url",
    "oidc_jwks_url",
    "profile_url",
    "oidc_validator_issuer_url",
    "oidc_validator_client_id",
)


# pydantic orders the fields of several bases from the last base to the first: the concerns are listed
# bottom-up so that --help, the README table and the Helm schema read server first, WebSockets last.
class Settings(
    WebSocketOptions,
    EdgeOptions,
    RuntimeOptions,
    PageOptions,
    AccessOptions,
    SessionStoreOptions,
    CookieOptions,
    BearerOptions,
    EndpointOptions,
    ClaimOptions,
    ProviderOptions,
    ServerOptions,
    BaseSettings,
):
    """Every option. Help texts are shown by `oidcproxy --help` and in the README table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", case_sensitive=False, validate_default=True
    )
    _providers: tuple[ProviderSpec, ...] = PrivateAttr(default=())
    _listed: bool = PrivateAttr(default=False)  # [[providers]] given, whether or not they parsed

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments first; then the sources from_sources was given, else the environment."""
        return (init_settings, *(_SOURCES.get() or (EnvironmentSource(settings_cls),)))

    @classmethod
    def from_sources(
        cls,
        flags: Mapping[str, Any],
        *sources: PydanticBaseSettingsSource,
        providers: Sequence[Any] = (),
    ) -> Self:
        """Settings from flags over sources already built and read (load_settings: env, then the file),
        and the `[[providers]]` entries, if any (config.providers)."""
        token, listed = _SOURCES.set(sources), _PROVIDERS.set(tuple(providers))
        try:
            return cls(**flags)
        finally:
            _SOURCES.reset(token)
            _PROVIDERS.reset(listed)

    def providers(self) -> tuple[ProviderSpec, ...]:
        """The configured providers: the `[[providers]]` entries, else the flat options as "default"."""
        return self._providers or (self._flat_provider(),)

    @property
    def providers_listed(self) -> bool:
        """Whether the providers are `[[providers]]` entries (named `providers[i].option` in messages),
        not the flat options as the one provider "default"."""
        return bool(self._providers)

    def _flat_provider(self) -> ProviderSpec:
        values = {name: getattr(self, name) for name in (*INHERITED, *_FLAT_PROVIDER)}
        return ProviderSpec.model_validate({**values, "display_name": self.provider_display_name})

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        problems: list[str] = []
        raw = _PROVIDERS.get()
        if raw:
            self._listed = True
            flat = {name: getattr(self, name) for name in INHERITED}
            self._providers, problems = parse_providers(
                raw,
                flat,
                allow_http=self.insecure_oidc_allow_http,
                emails_file=bool(self.authenticated_emails_file),
            )
        problems = [*self.problems(), *problems]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def problems(self) -> list[str]:
        """Every cross-field problem, concern by concern, then those that join two concerns.

        A first run misses the upstream, the cookie secret, the provider and who may pass: in that order.
        """
        several = self._listed
        return [
            *ServerOptions.problems(self),
            *CookieOptions.problems(self),
            *SessionStoreOptions.problems(self),
            *(self._listed_problems() if several else ProviderOptions.registration_problems(self)),
            *ProviderOptions.problems(self),
            *([] if several and not self.authenticated_emails_file else AccessOptions.problems(self)),
            *RuntimeOptions.problems(self),
            *EdgeOptions.problems(self),
            *WebSocketOptions.problems(self),
            *ClaimOptions.problems(self),
            *EndpointOptions.problems(self),
            *BearerOptions.problems(self),
            *PageOptions.problems(self),
            *self._joint_problems(),
        ]

    def _listed_problems(self) -> list[str]:
        """With [[providers]]: the flat options that name a provider are left unset (one place each)."""
        out = [
            f"{flag_name(name)}: set it inside each [[providers]] entry, not as a flat option"
            for name in _FLAT_PROVIDER
            if name in self.model_fields_set
        ]
        if self.oidc_type == "embedded":
            out.append(
                "--oidc-type: embedded is one provider of its own; remove [[providers]] or this option"
            )
        return out

    def _joint_problems(self) -> list[str]:
        """The embedded provider with the listener and the workers; the issuer's scheme; refresh vs expiry."""
        out: list[str] = []
        embedded = self.oidc_type == "embedded"
        if embedded and self.workers > 1:
            out.append("--workers: the embedded provider keeps its state in one process; use --workers 1")
        if self.metrics_address == self.http_address and not self.http_address.endswith(":0"):
            out.append("--metrics-address: must differ from --http-address; e.g. 0.0.0.0:9090")
        if embedded and not self.dev_idp_allow_remote and not is_loopback(self.http_address):
            out.append(
                f"--http-address: {self.http_address} is not a loopback address and the embedded "
                "development provider must not face users; listen on 127.0.0.1, or pass "
                "--dev-idp-allow-remote if you really mean it"
            )
        issuer = self.oidc_issuer_url
        if (
            not embedded
            and not self._providers
            and issuer.startswith("http://")
            and not self.insecure_oidc_allow_http
        ):
            if not is_loopback_url(issuer):
                out.append(
                    f"--oidc-issuer-url: {issuer!r} is not https; use https, or pass "
                    "--insecure-oidc-allow-http for a test provider"
                )
        if 0 < self.cookie_refresh and self.cookie_refresh >= self.cookie_expire:
            out.append("--cookie-refresh: must be shorter than --cookie-expire")
        return out
