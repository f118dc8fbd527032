"""The forms of an HTML page, as the provider login helpers fill them (nodeidp, keycloak)."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

__all__ = ["Form", "forms_of"]


@dataclass(slots=True)
class Form:
    action: str
    method: str
    fields: dict[str, str]


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").upper(), {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1].fields[a["name"]] = a.get("value", "")


def forms_of(body: str) -> list[Form]:
    """Every form of `body` with its action, method and named inputs (their value attributes)."""
    parser = _FormParser()
    parser.feed(body)
    return parser.forms
