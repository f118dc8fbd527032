"""Options of the pages people see (sign-in, signed-out, errors; oidcproxy/web/pages renders them).

One concern of the flat Settings (settings.py), checking its own fields in `problems()`.
Imports only config.values.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from oidcproxy.config.values import option

__all__ = ["PageOptions"]

_LOGO_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
_LOGO_MAX_BYTES = 256 * 1024  # every sign-in page embeds it


class PageOptions(BaseModel):
    """Text and looks of the pages."""

    banner: str = option("", "text shown above the sign-in, signed-out and error pages")
    footer: str = option("", "text at the foot of those pages; empty: 'Protected by oidcproxy'; - hides it")
    custom_sign_in_logo: str = option(
        "", "image on the sign-in page: a png/jpg/gif/svg/webp file or a data:image/ URL, embedded"
    )
    custom_templates_dir: str = option("", "folder with your own layout.html and/or style.css for the pages")

    def problems(self) -> list[str]:
        out = _logo_problems(self.custom_sign_in_logo)
        if self.custom_templates_dir and not Path(self.custom_templates_dir).is_dir():
            out.append(f"--custom-templates-dir: {self.custom_templates_dir!r} is not a folder")
        return out


def _logo_problems(logo: str) -> list[str]:
    if logo.startswith("data:"):
        if not logo.startswith("data:image/"):
            return ["--custom-sign-in-logo: a data: URL must be an image, data:image/..."]
        return []
    if not logo:
        return []
    path = Path(logo)
    if path.suffix.lower() not in _LOGO_SUFFIXES:
        return [f"--custom-sign-in-logo: {logo!r} must be a png, jpg, gif, svg or webp file"]
    if not path.is_file():
        return [f"--custom-sign-in-logo: {logo!r} is not a readable file"]
    if path.stat().st_size > _LOGO_MAX_BYTES:
        return [f"--custom-sign-in-logo: {logo!r} is over 256 KiB; every sign-in page embeds it"]
    return []
