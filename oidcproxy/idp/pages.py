"""HTML pages of the development provider: login form, signed-out page, error page.

Pure string building; every echoed value goes through `html.escape`. Self-contained (no external
assets). Imports nothing from oidcproxy.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

__all__ = ["LOGIN_FIELDS", "error_page", "login_page", "signed_out_page"]

#: Form fields that belong to the login form itself, not to the authorization request.
LOGIN_FIELDS = frozenset({"login_email", "login_password", "login_name", "login_groups"})

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1b1e23}
.banner{background:#8a1c00;color:#fff;padding:.75rem 1rem;font-weight:700;text-align:center}
main{max-width:28rem;margin:2rem auto;background:#fff;padding:1.5rem 2rem;border-radius:8px;
box-shadow:0 1px 3px rgba(0,0,0,.2)}
h1{font-size:1.4rem;margin-top:0}
label{display:block;margin-top:1rem;font-weight:600}
input[type=text],input[type=email],input[type=password]{width:100%;box-sizing:border-box;
padding:.5rem;border:1px solid #6b7280;border-radius:4px;font:inherit}
button{margin-top:1.5rem;padding:.6rem 1.2rem;background:#1d4ed8;color:#fff;border:0;
border-radius:4px;font:inherit;cursor:pointer}
.hint{color:#4b5563;font-size:.9rem;margin:.25rem 0 0}
.error{color:#8a1c00;font-weight:600}
code{word-break:break-all}
"""

_BANNER = "Development provider \u2014 not for production. Any password is accepted."


def _layout(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        # same-origin, not no-referrer: under no-referrer browsers send `Origin: null` with the
        # form's POST, and the login form's same-origin check refuses it.
        '<meta name="referrer" content="same-origin">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<header class="banner" role="banner">{escape(_BANNER)}</header>'
        f"<main>{body}</main></body></html>\n"
    )


def login_page(
    action: str,
    client_id: str,
    hidden: Iterable[tuple[str, str]],
    *,
    email: str = "",
    name: str = "",
    groups: str = "",
    problem: str = "",
) -> str:
    """The sign-in form; `hidden` carries the authorization request through the POST, where it
    is validated again from scratch."""
    fields = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in hidden)
    notice = f'<p class="error" role="alert">{escape(problem)}</p>' if problem else ""
    body = (
        "<h1>Sign in</h1>"
        f"<p>Signing in to <code>{escape(client_id)}</code>.</p>{notice}"
        f'<form method="post" action="{escape(action)}">{fields}'
        '<label for="login_email">Email</label>'
        f'<input id="login_email" name="login_email" type="email" required autofocus '
        f'autocomplete="username" value="{escape(email)}">'
        '<label for="login_password">Password</label>'
        '<input id="login_password" name="login_password" type="password" '
        'autocomplete="current-password">'
        '<p class="hint">Any password, or none, is accepted.</p>'
        '<label for="login_name">Display name (optional)</label>'
        f'<input id="login_name" name="login_name" type="text" value="{escape(name)}">'
        '<label for="login_groups">Groups (optional, comma-separated)</label>'
        f'<input id="login_groups" name="login_groups" type="text" value="{escape(groups)}">'
        '<button type="submit">Sign in</button></form>'
    )
    return _layout("Sign in \u2014 development provider", body)


def signed_out_page() -> str:
    body = "<h1>Signed out</h1><p>You are signed out of the development provider.</p>"
    return _layout("Signed out \u2014 development provider", body)


def error_page(title: str, detail: str) -> str:
    body = f'<h1>{escape(title)}</h1><p class="error">{escape(detail)}</p>'
    return _layout(f"{title} \u2014 development provider", body)
