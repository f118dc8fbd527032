"""Rewrites the options table in README.md from the settings model: `python scripts/config_table.py`.

tests/unit/test_config.py fails when the README's table and the model disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from oidcproxy.config import Settings, env_name, flag_name, shown_default

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- options:start -->", "<!-- options:end -->"


def table() -> str:
    rows = ["| flag | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = shown_default(name, info).replace("|", "\\|")
        meaning = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{flag_name(name)}` | `{env_name(name)}` | {default} | {meaning} |")
    return "\n".join(rows)


def render(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
    sys.exit(0)
