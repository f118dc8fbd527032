"""Configuration: the options people type, where they come from, and the one checked Settings.

    argv ──┐
    env  ──┼─ sources.py ── names.py (aliases, unknown names: fail closed)
    TOML ──┘        │
               loading.py ── load_settings(argv) -> Settings | ConfigError (every problem at once)
                    │
               settings.py ── Settings: flat fields from one options class per concern, each with
                    │          its own problems(); joint problems of two concerns live here
    server.py  provider.py  providers.py  tokens.py  cookie.py  access.py  pages.py  edge.py  websocket.py
                    │
               values.py ── durations, lists, addresses, the cookie secret, flag and env spelling

Names stay flat everywhere: `--cookie-secret`, `OIDCPROXY_COOKIE_SECRET`, `cookie_secret` in the
file, `settings.cookie_secret` in code (STYLE C3). Imports nothing from oidcproxy but errors.
"""

from __future__ import annotations

from oidcproxy.config.loading import build_parser, load_settings
from oidcproxy.config.providers import ProviderSpec
from oidcproxy.config.settings import Settings
from oidcproxy.config.values import (
    ENV_PREFIX,
    cookie_key_material,
    env_name,
    flag_name,
    format_duration,
    parse_duration,
    shown_default,
    split_address,
)

__all__ = [
    "ENV_PREFIX",
    "ProviderSpec",
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
