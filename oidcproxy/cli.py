"""The command line: `oidcproxy [serve] [options]`, `oidcproxy check [options]`, `oidcproxy doctor
[--json] [--sample-groups N] [options]`, `oidcproxy version` (or `--version`), `oidcproxy idp ...`.

Bad configuration is one line a problem on stderr and exit code 2, before anything listens.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence

from oidcproxy.config import Settings, load_settings
from oidcproxy.errors import ConfigError
from oidcproxy.model import system_clock

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args and args[0] in ("serve", "check", "idp", "doctor", "version") else "serve"
    if args and args[0] == command:
        args = args[1:]
    if command == "version" or (command == "serve" and "--version" in args):
        return _version(args)
    if command == "idp":
        from oidcproxy.idp import run_standalone

        return run_standalone(args)
    doctor: dict[str, int | bool] = {}
    try:
        if command == "doctor":
            args, doctor = _doctor_options(args)
        settings = load_settings(args)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"oidcproxy: {line}", file=sys.stderr)
        return 2
    if command == "doctor":
        return _doctor(settings, json_out=bool(doctor["json"]), groups=int(doctor["groups"]))
    if command == "check":
        print("oidcproxy: configuration is valid")
        return 0
    from oidcproxy.serve import run
    from oidcproxy.web.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)

    return run(settings, announce=lambda line: print(line, flush=True))


def _version(args: list[str]) -> int:
    from oidcproxy.about import version_info

    info = version_info()
    print(json.dumps(info.as_dict(), indent=2) if "--json" in args else info.text())
    return 0


def _doctor_options(args: list[str]) -> tuple[list[str], dict[str, int | bool]]:
    """Take the doctor's own flags out; the rest is the proxy's configuration."""
    options: dict[str, int | bool] = {"json": False, "groups": 10}
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--json":
            options["json"] = True
        elif arg == "--sample-groups" or arg.startswith("--sample-groups="):
            value = arg.partition("=")[2] or next(it, "")
            if not value.isdigit():
                raise ConfigError([f"--sample-groups: {value!r} is not a whole number; e.g. 200"])
            options["groups"] = int(value)
        else:
            rest.append(arg)
    return rest, options


def _doctor(settings: Settings, *, json_out: bool, groups: int) -> int:
    from oidcproxy.doctor import diagnose

    report = asyncio.run(diagnose(settings, system_clock, sample_groups=groups))
    print(report.json() if json_out else report.text())
    return 1 if report.problems else 0
