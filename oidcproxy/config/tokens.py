"""Options of the tokens: which claims say who someone is, refresh, and bearer tokens let in.

Two concerns of the flat Settings (settings.py): ClaimOptions (audiences, claims, prefixes, the
token passed upstream) and BearerOptions (refresh, JWT bearer tokens), each checking its own fields
in `problems()`. docs/providers.md has recipes per provider. Imports only config.values.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

from oidcproxy.config.values import HTTP_URL, Duration, StrList, key_value_problems, option

__all__ = ["BearerOptions", "ClaimOptions"]

_MAX_AUDIENCES = 10


class ClaimOptions(BaseModel):
    """What a token must say, and how its claims become the identity passed upstream."""

    oidc_extra_audience: StrList = option(
        help="another accepted ID token audience besides the client id, repeatable", default_factory=list
    )
    oidc_validator_issuer_url: str = option(
        "", "issuer to check in the token passed upstream when it differs from the login's (Entra ID)"
    )
    oidc_validator_client_id: str = option(
        "", "audience to check in the token passed upstream when it differs from the client id"
    )
    oidc_use_access_token: bool = option(
        False,
        "Authorization: Bearer carries the access token, not the ID token, upstream and on /oauth2/auth "
        "alike (sends it in both); JWTs are validated",
    )
    oidc_email_claim: str = option("email", "claim holding the email; dotted paths reach nested claims")
    oidc_groups_claim: str = option("groups", "claim holding the groups (list or comma-separated string)")
    oidc_username_claim: str = option("email", "claim holding the user name passed upstream")
    oidc_username_prefix: str = option("", "prefix for user names (policy Prefix, or when policy is empty)")
    oidc_username_prefix_policy: Literal["", "Prefix", "NoPrefix"] = option(
        "", "Prefix: prepend --oidc-username-prefix; NoPrefix: none; empty: <issuer># unless claim is email"
    )
    oidc_groups_prefix: str = option("", "prefix prepended to every group name")
    oidc_required_claim: StrList = option(
        help="claim=value that every token must carry, repeatable (all must hold)", default_factory=list
    )
    allowed_group: StrList = option(
        help="group allowed in, repeatable; the person needs at least one", default_factory=list
    )

    def problems(self) -> list[str]:
        out: list[str] = []
        if len(self.oidc_extra_audience) + 1 > _MAX_AUDIENCES:
            out.append("--oidc-extra-audience: at most 10 audiences in all, counting --client-id")
        out += key_value_problems("oidc_required_claim", self.oidc_required_claim)
        if self.oidc_username_prefix_policy == "Prefix" and not self.oidc_username_prefix:
            out.append("--oidc-username-prefix-policy: Prefix needs --oidc-username-prefix")
        issuer = self.oidc_validator_issuer_url
        if issuer and not re.fullmatch(HTTP_URL, issuer):
            out.append(f"--oidc-validator-issuer-url: {issuer!r} is not an http(s) URL")
        return out


class BearerOptions(BaseModel):
    """Token refresh, and requests that carry a JWT instead of a cookie."""

    cookie_refresh: Duration = option(
        "0s", "refresh the tokens when the session is older than this; 0: only when tokens expire"
    )
    skip_jwt_bearer_tokens: bool = option(
        False, "let requests with a valid Authorization: Bearer JWT through without a cookie"
    )
    extra_jwt_issuers: StrList = option(
        help="issuer=audience also accepted for bearer tokens, repeatable; our own issuer adds an audience",
        default_factory=list,
    )

    def problems(self) -> list[str]:
        out = key_value_problems("extra_jwt_issuers", self.extra_jwt_issuers)
        if self.cookie_refresh < 0:
            out.append("--cookie-refresh: must be 0 (off) or positive, e.g. 1h")
        return out
