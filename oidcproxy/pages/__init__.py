"""The pages people see: sign-in, signed-out and errors. One layout, one stylesheet, no external assets.

Every value put into a page is HTML-escaped here. Templates are read once, at import.
"""

from __future__ import annotations

import html
from importlib import resources
from string import Template

__all__ = ["error_page", "sign_in_page", "signed_out_page"]

_LAYOUT = Template(resources.files(__package__).joinpath("layout.html").read_text())
_STYLE = resources.files(__package__).joinpath("style.css").read_text()
_FOOTER = "Protected by oidcproxy"


def _page(title: str, body: str) -> str:
    return _LAYOUT.substitute(title=html.escape(title), style=_STYLE, body=body, footer=_FOOTER)


def sign_in_page(display_name: str, start_url: str) -> str:
    body = (
        '<h1 id="heading">Sign in</h1>'
        "<p>This application needs you to sign in first.</p>"
        f'<a class="button" href="{html.escape(start_url)}">Sign in with {html.escape(display_name)}</a>'
    )
    return _page("Sign in", body)


def signed_out_page(sign_in_url: str) -> str:
    body = (
        '<h1 id="heading">You are signed out</h1>'
        "<p>Your session on this proxy has ended.</p>"
        f'<a class="button" href="{html.escape(sign_in_url)}">Sign in again</a>'
    )
    return _page("Signed out", body)


def error_page(
    status: int, title: str, message: str, request_id: str, retry_url: str = "", debug: str = ""
) -> str:
    parts = [
        f'<p class="status">ERROR {status}</p>',
        f'<h1 id="heading">{html.escape(title)}</h1>',
        f"<p>{html.escape(message)}</p>",
    ]
    if retry_url:
        parts.append(f'<a class="button" href="{html.escape(retry_url)}">Try again</a>')
    parts.append(
        f'<p class="muted">If this keeps happening, tell your administrator this request id: '
        f"<code>{html.escape(request_id)}</code></p>"
    )
    if debug:
        parts.append(f"<pre>{html.escape(debug)}</pre>")
    return _page(title, "".join(parts))
