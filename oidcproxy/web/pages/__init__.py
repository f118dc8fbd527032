"""The pages people see: sign-in, signed-out and errors. One layout, one stylesheet, no external assets.

`PageOptions` is what the settings say (--banner, --footer, --custom-sign-in-logo,
--custom-templates-dir); `Pages.load(options)` reads the files once (blocking: call it off the event
loop) and renders. Every value put into a page is HTML-escaped here. Imports only the standard library;
the web layer (middleware, handlers) decides when to render which page.
"""

from __future__ import annotations

import asyncio
import base64
import html
import mimetypes
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template

__all__ = ["DEFAULT_FOOTER", "LOGO_TYPES", "PageCache", "PageOptions", "Pages"]

DEFAULT_FOOTER = "Protected by oidcproxy"
LOGO_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
}

# What the person can do next, by status; the error's own text says what happened.
_ADVICE = {
    400: "Start the sign-in again. If it keeps failing, close other sign-in tabs and try once more.",
    401: "Sign in, then open the page again.",
    403: "If you think you should have access, ask your administrator, or sign in with a different account.",
    404: "Check the address, or ask your administrator which applications are set up here.",
    431: "Clear this site's cookies in your browser, then open the page again.",
    500: "Try again in a moment. If it keeps happening, tell your administrator.",
    502: "Try again in a moment. If it keeps happening, tell your administrator.",
    504: "Try again in a moment. If it keeps happening, tell your administrator.",
}


@dataclass(frozen=True, slots=True)
class PageOptions:
    """The settings that shape the pages; empty strings mean the defaults."""

    display_name: str = "OpenID Connect"
    banner: str = ""
    footer: str = ""
    logo: str = ""
    templates_dir: str = ""


def _logo_src(logo: str) -> str:
    """A data: URL for the logo: it travels inside the page, so nothing is fetched from elsewhere."""
    if not logo or logo == "-":
        return ""
    if logo.startswith("data:"):
        return logo
    path = Path(logo)
    kind = LOGO_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(logo)[0] or "image/png"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _packaged(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _template_text(templates_dir: str, name: str) -> str:
    if templates_dir and (Path(templates_dir) / name).is_file():
        return (Path(templates_dir) / name).read_text(encoding="utf-8")
    return _packaged(name)


@dataclass(frozen=True, slots=True)
class Pages:
    """Renders the proxy's pages; built once from `PageOptions` by `load`."""

    display_name: str
    banner: str
    footer: str
    logo_src: str = field(repr=False)
    layout: Template = field(repr=False)
    style: str = field(repr=False)

    @classmethod
    def load(cls, options: PageOptions) -> Pages:
        """Read the templates and the logo. Blocking file reads: call at start-up or in a thread."""
        footer = options.footer or DEFAULT_FOOTER
        return cls(
            display_name=options.display_name,
            banner=options.banner,
            footer="" if footer == "-" else footer,
            logo_src=_logo_src(options.logo),
            layout=Template(_template_text(options.templates_dir, "layout.html")),
            style=_template_text(options.templates_dir, "style.css"),
        )

    def _page(self, title: str, body: str) -> str:
        banner = f'<header class="banner"><p>{html.escape(self.banner)}</p></header>' if self.banner else ""
        footer = f"<footer><p>{html.escape(self.footer)}</p></footer>" if self.footer else ""
        return self.layout.safe_substitute(
            title=html.escape(title),
            style=self.style,
            banner=banner,
            body=body,
            footer=footer,
            provider=html.escape(self.display_name),
        )

    def sign_in(self, start_url: str) -> str:
        logo = f'<img class="logo" src="{html.escape(self.logo_src)}" alt="">' if self.logo_src else ""
        name = html.escape(self.display_name)
        body = (
            f'{logo}<h1 id="heading">Sign in to continue</h1>'
            "<p>The page you asked for is protected. Sign in with your account at "
            f"<strong>{name}</strong> and you will be taken straight back to it.</p>"
            f'<a class="button" href="{html.escape(start_url)}">Sign in with {name}</a>'
        )
        return self._page("Sign in", body)

    def choose(self, choices: list[tuple[str, str]]) -> str:
        """The sign-in page with several providers: one button each, (start URL, display name)."""
        logo = f'<img class="logo" src="{html.escape(self.logo_src)}" alt="">' if self.logo_src else ""
        buttons = "".join(
            f'<li><a class="button" href="{html.escape(url)}">Sign in with {html.escape(name)}</a></li>'
            for url, name in choices
        )
        body = (
            f'{logo}<h1 id="heading">Sign in to continue</h1>'
            "<p>The page you asked for is protected. Choose where you have your account and you will "
            "be taken straight back to it.</p>"
            f'<ul class="providers" aria-labelledby="heading">{buttons}</ul>'
        )
        return self._page("Sign in", body)

    def signed_out(self, sign_in_url: str, *, at_provider: bool = False) -> str:
        name = html.escape(self.display_name)
        where = (
            f"You are signed out at {name} too." if at_provider else f"You may still be signed in at {name}."
        )
        body = (
            '<h1 id="heading">You are signed out</h1>'
            f"<p>Your session here has ended and this browser no longer has access. {where}</p>"
            f'<a class="button" href="{html.escape(sign_in_url)}">Sign in again</a>'
        )
        return self._page("Signed out", body)

    def error(
        self,
        status: int,
        title: str,
        message: str,
        request_id: str,
        *,
        action: tuple[str, str] | None = None,
        debug: str = "",
    ) -> str:
        """An error page: what happened, what to do, an optional button (url, label), the request id."""
        parts = [
            f'<p class="status">Error {status}</p>',
            f'<h1 id="heading">{html.escape(title)}</h1>',
            f"<p>{html.escape(message)}</p>",
        ]
        advice = _ADVICE.get(status, _ADVICE[500] if status >= 500 else "")
        if advice:
            parts.append(f"<p>{html.escape(advice)}</p>")
        if action is not None:
            url, label = action
            parts.append(f'<a class="button" href="{html.escape(url)}">{html.escape(label)}</a>')
        parts.append(
            '<p class="muted">If you contact your administrator, quote this request id: '
            f'<code class="rid">{html.escape(request_id)}</code></p>'
        )
        if debug:
            parts.append(
                "<details open><summary>Details for administrators</summary>"
                f"<pre>{html.escape(debug)}</pre></details>"
            )
        return self._page(title, "".join(parts))


class PageCache:
    """An app's `Pages`, one per PageOptions, each read once off the event loop (in a thread)."""

    __slots__ = ("_loaded",)

    def __init__(self) -> None:
        self._loaded: dict[PageOptions, Pages] = {}

    async def get(self, options: PageOptions) -> Pages:
        found = self._loaded.get(options)
        if found is None:
            found = self._loaded[options] = await asyncio.to_thread(Pages.load, options)
        return found
