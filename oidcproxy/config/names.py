"""The names people type for options: ours, their aliases, and a one-line answer for any other name.

A name nobody defined must stop start-up, because an ignored `OIDCPROXY_ALOWED_GROUP` silently drops
the restriction it was meant to add. Aliases are oauth2-proxy's spellings (the plural of every
repeatable option, and a few renamed options), so that moving from oauth2-proxy is a prefix rename.
Pure: no I/O; imports nothing from oidcproxy. Used by the sources (env, file) and the flag parser.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["OAUTH2_PROXY_ONLY", "RENAMED", "Names", "env_given", "oauth2_proxy_only"]

Spell = Callable[[str], str]

RENAMED: Mapping[str, str] = {
    "insecure_oidc_allow_unverified_email": "insecure_allow_unverified_email",
    "cookie_domains": "cookie_domain",  # oauth2-proxy takes several; we take one (checked in resolve)
}
"""oauth2-proxy names of options we have under another name (plurals of repeatable options aside)."""

_TLS = "the Python ssl module's defaults choose the ciphers; remove it"
_GENERIC = "remove it (README: Moving from oauth2-proxy)"
_INSTEAD: Mapping[str, tuple[str, ...]] = {
    "OpenID Connect is the only provider; remove it": ("provider",),
    "use skip_auth_route, which takes [METHOD=]regex": ("skip_auth_regex",),
    "oidcproxy lets no address skip sign-in (trusted_proxy_ip is only about forwarded headers)": (
        "trusted_ips",
    ),
    "use auth_extra_param prompt=...": ("prompt", "approval_prompt"),
    "use auth_extra_param acr_values=...": ("acr_values",),
    "use oidc_email_claim or oidc_username_claim": ("user_id_claim",),
    "use provider_ca_file to trust your provider's CA": ("ssl_insecure_skip_verify",),
    "the system store is always trusted, plus each provider_ca_file; remove it": ("use_system_trust_store",),
    "session cookies are always HttpOnly; remove it": ("cookie_httponly",),
    "client copies of identity headers are always stripped; remove it": ("skip_auth_strip_headers",),
    "WebSockets are always proxied; remove it": ("proxy_websockets",),
    "the endpoints are always under /oauth2, /ping and /ready; remove it": (
        "proxy_prefix",
        "ping_path",
        "ready_path",
    ),
    _TLS: ("tls_cipher_suites",),
    "sessions keep their tokens (in the cookie, or sealed in Redis); remove it": ("session_cookie_minimal",),
    "the metrics listener (metrics_address) speaks plain HTTP; keep it off the public network": (
        "metrics_secure_address",
        "metrics_tls_cert_file",
        "metrics_tls_key_file",
    ),
    _GENERIC: (
        "allow_query_semicolons",
        "auth_logging",
        "auth_logging_format",
        "basic_auth_password",
        "cookie_csrf_expire",
        "cookie_csrf_per_request",
        "display_htpasswd_form",
        "encode_state",
        "errors_to_info_log",
        "flush_interval",
        "force_https",
        "force_json_errors",
        "gcp_healthchecks",
        "htpasswd_file",
        "htpasswd_user_groups",
        "insecure_oidc_skip_issuer_verification",
        "insecure_oidc_skip_nonce",
        "jwt_key",
        "jwt_key_file",
        "logging_compress",
        "logging_filename",
        "logging_local_time",
        "logging_max_age",
        "logging_max_backups",
        "logging_max_size",
        "oidc_audience_claims",
        "pass_basic_auth",
        "ping_user_agent",
        "prefer_email_to_user",
        "pubjwk_url",
        "real_client_ip_header",
        "relative_redirect_url",
        "request_id_header",
        "request_logging_format",
        "set_basic_auth",
        "signature_key",
        "skip_claims_from_profile_url",
        "standard_logging",
        "standard_logging_format",
        "validate_url",
    ),
}
_INSTEAD_BY_PREFIX: Mapping[str, str] = {
    **dict.fromkeys(
        ("github_", "gitlab_", "google_", "azure_", "entra_id_", "bitbucket_", "keycloak_", "allowed_role"),
        "provider-specific; use allowed_group and oidc_groups_claim (docs/providers.md)",
    ),
}
OAUTH2_PROXY_ONLY: Mapping[str, str] = {name: hint for hint, names in _INSTEAD.items() for name in names}
"""oauth2-proxy options oidcproxy does not have, with what to do instead (README lists them too)."""


def oauth2_proxy_only(name: str) -> str:
    """What to do instead of an oauth2-proxy option we do not have; empty for any other name."""
    if name in OAUTH2_PROXY_ONLY:
        return OAUTH2_PROXY_ONLY[name]
    return next((hint for prefix, hint in _INSTEAD_BY_PREFIX.items() if name.startswith(prefix)), "")


def env_given(environ: Mapping[str, str], prefix: str, reserved: Collection[str]) -> dict[str, str]:
    """The `PREFIX*` variables as snake_case names (case ignored), leaving out `reserved` ones (CONFIG)."""
    out: dict[str, str] = {}
    for key, value in environ.items():
        if key.upper().startswith(prefix) and key.upper()[len(prefix) :] not in reserved:
            out[key[len(prefix) :].lower()] = value
    return out


@dataclass(frozen=True, slots=True)
class Names:
    """Our option names and their aliases; `resolve` turns what one source gave into option values."""

    options: frozenset[str]
    aliases: Mapping[str, str]  # alias -> option

    @classmethod
    def of(cls, options: Iterable[str], repeatable: Iterable[str]) -> Names:
        """Aliases: the plural of each repeatable option (oauth2-proxy's file and env name), and RENAMED."""
        known = frozenset(options)
        plural = {f"{name}s": name for name in repeatable if not name.endswith("s")}
        aliases = {k: v for k, v in {**plural, **RENAMED}.items() if k not in known and v in known}
        return cls(known, aliases)

    def resolve(
        self, given: Mapping[str, Any], spell: Spell, where: str = ""
    ) -> tuple[dict[str, Any], list[str]]:
        """Values keyed by option name, and one problem line per unknown name or option given twice."""
        values: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        problems: list[str] = []
        for name in sorted(given):
            option = name if name in self.options else self.aliases.get(name)
            if option is None:
                problems.append(self._unknown(name, spell, where))
            elif option in spelled:
                both = f"{spell(spelled[option])} and {spell(name)}"
                problems.append(f"{both}{where}: the same option twice; keep one")
            else:
                value, problem = _adapt(name, given[name])
                if problem:
                    problems.append(f"{spell(name)}{where}: {problem}")
                values[option] = value
                spelled[option] = name
        return values, problems

    def unknown_arguments(self, extra: Iterable[str], spell: Spell) -> list[str]:
        """Command-line words the parser did not take: an unknown flag each, a word after one is its value."""
        problems: list[str] = []
        after_flag = False
        for arg in extra:
            if arg.startswith("-"):
                problems.append(self._unknown(arg.split("=", 1)[0].lstrip("-").replace("-", "_"), spell, ""))
                after_flag = "=" not in arg
            elif not after_flag:
                problems.append(f"{arg!r}: unexpected argument; options are written --name=value")
            else:
                after_flag = False
        return problems

    def _unknown(self, name: str, spell: Spell, where: str) -> str:
        instead = oauth2_proxy_only(name)
        if instead:
            return f"{spell(name)}{where}: an oauth2-proxy option oidcproxy does not have; {instead}"
        candidates = sorted(self.options | self.aliases.keys())
        # our documented names first; an alias only when no option is close
        close = difflib.get_close_matches(name, sorted(self.options), n=1, cutoff=0.6)
        close = close or difflib.get_close_matches(name, sorted(self.aliases), n=1, cutoff=0.6)
        if close:
            return f"{spell(name)}{where}: not an option; did you mean {spell(close[0])}?"
        nearest = difflib.get_close_matches(name, candidates, n=1, cutoff=0.0)
        hint = f" (the nearest is {spell(nearest[0])})" if nearest else ""
        return f"{spell(name)}{where}: not an option{hint}; see oidcproxy --help for the list"


def _adapt(name: str, value: Any) -> tuple[Any, str]:
    """oauth2-proxy's cookie_domains is a list; we set one Domain attribute, so take exactly one."""
    if name != "cookie_domains":
        return value, ""
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [str(item).strip() for item in items if str(item).strip()]
    if len(items) > 1:
        return "", "oidcproxy sets one cookie domain; give one, e.g. .example.com"
    return (items[0] if items else ""), ""
