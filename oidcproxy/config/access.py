"""Options of access: who may pass, and what the upstream and the person are told.

One concern of the flat Settings (settings.py), checking its own fields in `problems()`.
Imports only config.values.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from oidcproxy.config.values import StrList, option

__all__ = ["AccessOptions"]


class AccessOptions(BaseModel):
    """Who may pass, what the upstream is told."""

    email_domain: StrList = option(
        help="allowed email domain, repeatable; * for any, .example.com for subdomains",
        default_factory=list,
    )
    authenticated_emails_file: str = option("", "file of allowed email addresses, one a line")
    insecure_allow_unverified_email: bool = option(
        False, "admit emails the provider marks email_verified=false"
    )
    pass_user_headers: bool = option(True, "send X-Forwarded-User/-Email/-Groups upstream")
    pass_access_token: bool = option(False, "send X-Forwarded-Access-Token upstream")
    pass_authorization_header: bool = option(
        False, "send Authorization: Bearer <ID token> upstream (see --oidc-use-access-token)"
    )
    pass_host_header: bool = option(True, "send the client's Host header upstream (else the upstream's)")
    skip_provider_button: bool = option(False, "go straight to the provider, no sign-in page")
    show_debug_on_error: bool = option(False, "show error details on error pages (never in production)")

    def problems(self) -> list[str]:
        if not self.email_domain and not self.authenticated_emails_file:
            return [
                "--email-domain: missing; name the allowed domains (or * for any verified email), "
                "or give --authenticated-emails-file"
            ]
        if self.authenticated_emails_file and not Path(self.authenticated_emails_file).is_file():
            return [f"--authenticated-emails-file: {self.authenticated_emails_file!r} is not a readable file"]
        return []

    def allowed_emails(self) -> frozenset[str]:
        if not self.authenticated_emails_file:
            return frozenset()
        lines = Path(self.authenticated_emails_file).read_text().splitlines()
        return frozenset(
            line.split("#", 1)[0].strip().lower() for line in lines if line.split("#", 1)[0].strip()
        )
