"""Where option values come from besides flags: `OIDCPROXY_*` variables and the --config TOML file.

Both also carry the `[[providers]]` entries (`providers`: the file's tables, the environment's
`OIDCPROXY_PROVIDERS_<n>_*` variables), kept apart from the flat options and checked by
config.providers.

Each source resolves what it was given through config.names, once, when it is built: aliases become
option names, and every unknown name or option given twice becomes a problem line (fail closed).
The file is read by pydantic-settings' own TomlConfigSettingsSource; only the name resolution and
today's "--config: cannot read" line for a missing file are ours. Imports config.names/values only.
"""

from __future__ import annotations

import functools
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource

from oidcproxy.config.names import Names, env_given
from oidcproxy.config.providers import env_providers
from oidcproxy.config.values import ENV_PREFIX, env_name, kind
from oidcproxy.errors import ConfigError

__all__ = ["EnvironmentSource", "TomlFileSource", "option_names"]

_ENV_RESERVED = frozenset({"CONFIG"})  # OIDCPROXY_CONFIG names the file; it is not an option


@functools.cache
def option_names(settings_cls: type[BaseSettings]) -> Names:
    """The option names of a settings class and their aliases (plurals of its repeatable options)."""
    fields = settings_cls.model_fields
    return Names.of(fields, [name for name, info in fields.items() if kind(info) == "list"])


class EnvironmentSource(PydanticBaseSettingsSource):
    """The `OIDCPROXY_*` variables, aliases resolved; `problems` names each variable that is no option."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None) -> None:
        super().__init__(settings_cls)
        given = env_given(os.environ if environ is None else environ, ENV_PREFIX, _ENV_RESERVED)
        given, self.providers = env_providers(given)  # OIDCPROXY_PROVIDERS_<n>_* (config.providers)
        self.values, self.problems = option_names(settings_cls).resolve(given, env_name)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


class TomlFileSource(TomlConfigSettingsSource):
    """The --config file, aliases resolved; `problems` names each key that is no option, with the file.

    Raises ConfigError when the file cannot be read or parsed: nothing else can be checked then.
    """

    def __init__(self, settings_cls: type[BaseSettings], path_text: str) -> None:
        path = Path(path_text) if path_text else None
        try:
            if path is not None and not path.is_file():
                path.open("rb").close()  # the OSError today's message quotes (pydantic-settings skips it)
            # absolute: pydantic-settings would expand a leading ~, which we never did
            super().__init__(settings_cls, toml_file=path.absolute() if path else None)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError([f"--config: cannot read {path_text!r}: {exc}"]) from exc
        where = f" in {path_text}"
        data = dict(self.toml_data)
        listed = data.pop("providers", [])  # the [[providers]] tables (config.providers)
        self.providers: list[Any] = listed if isinstance(listed, list) else [listed]
        self.values, self.problems = option_names(settings_cls).resolve(data, str, where)

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)
