"""The command line: `oidcproxy [serve] [options]`, `oidcproxy check [options]`, `oidcproxy idp ...`.

Bad configuration is one line a problem on stderr and exit code 2, before anything listens.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from oidcproxy.config import load_settings
from oidcproxy.errors import ConfigError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args and args[0] in ("serve", "check", "idp") else "serve"
    if args and args[0] == command:
        args = args[1:]
    if command == "idp":
        from oidcproxy.idp import run_standalone

        return run_standalone(args)
    try:
        settings = load_settings(args)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"oidcproxy: {line}", file=sys.stderr)
        return 2
    if command == "check":
        print("oidcproxy: configuration is valid")
        return 0
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from oidcproxy.server import run

    return run(settings, announce=lambda line: print(line, flush=True))
