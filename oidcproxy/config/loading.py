"""From argv, the environment and the --config file to one checked Settings, or one ConfigError.

Precedence: flag > env > file > default. A name that is neither an option nor an alias (config.names)
is a problem like a bad value, and every problem is reported in the same run. The flags come from an
argparse parser generated from the model, so --help cannot drift from it. Imports config's own
modules and errors only.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from oidcproxy.config.providers import merge_providers
from oidcproxy.config.settings import Settings
from oidcproxy.config.sources import EnvironmentSource, TomlFileSource, option_names
from oidcproxy.config.values import ENV_PREFIX, env_name, flag_name, kind, shown_default
from oidcproxy.errors import ConfigError

__all__ = ["build_parser", "load_settings"]


def build_parser(prog: str = "oidcproxy") -> argparse.ArgumentParser:
    """One flag per settings field, generated, so --help cannot drift from the model."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Authenticating reverse proxy for OpenID Connect.",
        epilog="Booleans take --name, --name=true or --name=false. Repeatable options take the "
        "flag several times, or a comma-separated list in the environment variable.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,  # --email-dom must not pass for --email-domain (fail closed, README)
    )
    parser.add_argument("--config", metavar="FILE", help=f"TOML file of options [env {ENV_PREFIX}CONFIG]")
    fields = Settings.model_fields
    for name, info in fields.items():
        help_text = f"{info.description} [env {env_name(name)}, default {shown_default(name, info)}]"
        _add_flag(parser, name, kind(info), help_text)
    for alias, option in option_names(Settings).aliases.items():  # oauth2-proxy's names, kept out of --help
        _add_flag(parser, alias, kind(fields[option]), argparse.SUPPRESS)
    return parser


def _add_flag(parser: argparse.ArgumentParser, name: str, how: str, help_text: str) -> None:
    if how == "bool":
        parser.add_argument(
            flag_name(name), dest=name, nargs="?", const="true", metavar="BOOL", help=help_text
        )
    elif how == "list":
        parser.add_argument(flag_name(name), dest=name, action="append", help=help_text)
    else:
        parser.add_argument(flag_name(name), dest=name, metavar="VALUE", help=help_text)


def _dev_defaults(*sources: Mapping[str, Any]) -> dict[str, Any]:
    """--dev fills in what the demo needs wherever the person has not set it themselves."""

    def given(name: str) -> bool:
        return any(name in source for source in sources)

    demo: dict[str, Any] = {
        "oidc_type": "embedded",
        "upstream": ["builtin:whoami"],
        "cookie_secure": False,
        "cookie_secret": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "email_domain": ["*"],
        "provider_display_name": "the development provider",
        "shutdown_delay": 0.0,  # no ingress to tell: Ctrl-C or SIGTERM stops at once
    }
    return {k: v for k, v in demo.items() if not given(k)}


def _is_true(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def load_settings(argv: Sequence[str]) -> Settings:
    """Parse flags, the environment and the file into Settings; ConfigError has one line a problem.

    Any name that is not an option or an alias (a flag, an `OIDCPROXY_*` variable, a key in the file)
    is a problem too, so that a misspelt restriction stops start-up instead of vanishing.
    """
    parsed, extra = build_parser().parse_known_args(list(argv))
    given = vars(parsed)
    path_text = given.pop("config", None) or os.environ.get(f"{ENV_PREFIX}CONFIG", "")
    names = option_names(Settings)
    flags, problems = names.resolve(given, flag_name)
    environment = EnvironmentSource(Settings)
    file = TomlFileSource(Settings, path_text)
    problems = [*names.unknown_arguments(extra, flag_name), *problems, *environment.problems, *file.problems]
    dev = flags.get("dev", environment.values.get("dev", file.values.get("dev", False)))
    if _is_true(dev):
        flags = {**_dev_defaults(flags, environment.values, file.values), **flags}
    try:  # the sources built above, so the environment and the file are each read once
        providers = merge_providers(file.providers, environment.providers)
        settings = Settings.from_sources(flags, environment, file, providers=providers)
    except ValidationError as exc:  # reported with the name problems: every problem at once
        raise ConfigError([*problems, *_describe(exc)]) from None
    if problems:
        raise ConfigError(problems)
    return settings


def _describe(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in err["loc"] if isinstance(part, str)]
        message = str(err["msg"]).removeprefix("Value error, ")
        if not loc:
            lines.extend(message.splitlines())
            continue
        name = loc[0]
        if name in Settings.model_fields:
            lines.append(f"{flag_name(name)} (env {env_name(name)}): {_friendly(err, message)}")
        else:
            lines.append(f"{name!r} is not an option; see oidcproxy --help for the list")
    return lines


def _friendly(err: Mapping[str, Any], message: str) -> str:
    kind = err.get("type", "")
    if kind == "literal_error":
        return message.replace("Input should be", "must be one of")
    if kind == "bool_parsing":
        return "must be true or false"
    return message
