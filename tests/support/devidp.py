"""Signs in at oidcproxy's embedded development provider over HTTP, as a person filling its form would.

Kept apart from the provider's code: it reads the HTML form it is shown and posts it back.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import aiohttp

__all__ = ["dev_login"]


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")


async def dev_login(
    session: aiohttp.ClientSession,
    authorize_url: str,
    *,
    email: str,
    name: str = "",
    groups: str = "",
    extra: dict[str, Any] | None = None,
) -> str:
    """Fill the provider's sign-in form; answers its redirect back to the client, not followed."""
    async with session.get(authorize_url, allow_redirects=False) as page:
        assert page.status == 200, await page.text()
        form = _Form()
        form.feed(await page.text())
    data = {**form.fields, "login_email": email, "login_password": "pw", "login_name": name}
    data["login_groups"] = groups
    data.update(extra or {})
    target = urljoin(authorize_url, form.action)
    origin = "/".join(authorize_url.split("/")[:3])
    async with session.post(target, data=data, headers={"Origin": origin}, allow_redirects=False) as done:
        assert done.status in (302, 303), await done.text()
        return str(done.headers["Location"])
