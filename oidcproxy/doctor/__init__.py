"""`oidcproxy doctor`: checks a configuration against the world it will meet, before users do.

    checks  pure judgements (issuer, keys, clock skew, redirect URI answer, Secure cookies, trusted
            proxies), each naming its fix
    sizes   pure: a synthetic session's cookie and header sizes against NGINX's default buffers
    probe   the I/O: discovery, JWKS and one real authorization request; text and JSON reports

Exit codes (cli.py): 0 all well, 1 a problem found, 2 bad configuration. Sits just below cli, beside
serve; uses web only for `base_url`.
"""

from __future__ import annotations

from oidcproxy.doctor.checks import Finding
from oidcproxy.doctor.probe import Report, diagnose

__all__ = ["Finding", "Report", "diagnose"]
