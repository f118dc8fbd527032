"""Rewrites the Helm chart's values.schema.json from the settings model: `python scripts/helm_schema.py`.

`config:` in the chart's values takes every option by its own name, typed as the model types it, and
nothing else, so `helm install` refuses a misspelt option; each entry of `providers:` takes the
options of a `[[providers]]` entry (config.ProviderSpec) the same way, its secret as `clientSecret` or
`clientSecretKey`. tests/integration/test_helm.py fails when the schema and the model disagree.
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from oidcproxy.config import ProviderSpec, Settings

SCHEMA = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "oidcproxy" / "values.schema.json"

# Options the chart sets from its own values, not from `config:` (option -> where, or why not).
CHART_SET = {
    "http_address": "service.port",
    "workers": "workers",
    "client_secret": "secret.clientSecret / secret.existingSecret",
    "client_secret_file": "secret.clientSecretKey (mounted from the Secret)",
    "cookie_secret": "secret.cookieSecret / secret.existingSecret",
    "dev": "not for a cluster: the demo mode",
}

# Entry options the chart sets from the entry's clientSecret / clientSecretKey (through the Secret).
PROVIDER_CHART_SET = {
    "client_secret": "clientSecret / clientSecretKey (an environment variable from the Secret)",
    "client_secret_file": "clientSecret / clientSecretKey",
}

_OBJECT = {"type": "object"}
_STRING = {"type": "string"}
_BOOL = {"type": "boolean"}
_INT = {"type": "integer"}


def option_schema(info: FieldInfo) -> dict[str, Any]:
    """The JSON schema of one option's value as values.yaml gives it."""
    annotation = info.annotation
    schema: dict[str, Any]
    if typing.get_origin(annotation) is typing.Literal:
        schema = {"type": "string", "enum": list(typing.get_args(annotation))}
    elif annotation is bool:
        schema = dict(_BOOL)
    elif typing.get_origin(annotation) is list:
        schema = {"type": "array", "items": {"type": "string"}}
    elif annotation is int:
        schema = dict(_INT)
    elif annotation is float:  # durations: "30s", "1h30m", or seconds
        schema = {"type": ["string", "number"]}
    else:
        schema = dict(_STRING)
    if info.description:
        schema["description"] = info.description
    return schema


def config_schema() -> dict[str, Any]:
    options = {
        name: option_schema(info) for name, info in Settings.model_fields.items() if name not in CHART_SET
    }
    return {"type": "object", "additionalProperties": False, "properties": options}


def providers_schema() -> dict[str, Any]:
    """`providers:` entries, passed as OIDCPROXY_PROVIDERS_<n>_<OPTION>: lists are comma-joined there,
    so their items hold no comma."""
    options: dict[str, Any] = {}
    for name, info in ProviderSpec.model_fields.items():
        if name in PROVIDER_CHART_SET:
            continue
        flat = Settings.model_fields.get(name)
        option = option_schema(info if flat is None or info.description else _described(info, flat))
        if option.get("type") == "array":
            option["items"] = {"type": "string", "pattern": "^[^,]*$"}
        options[name] = option
    options["id"] = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"}
    options["clientSecret"] = {"type": "string", "description": "kept in the chart's Secret"}
    options["clientSecretKey"] = {
        "type": "string",
        "description": 'the Secret\'s key (default provider-<id>-client-secret); "" for a public client',
    }
    entry = {"type": "object", "additionalProperties": False, "required": ["id"], "properties": options}
    return {"type": "array", "items": entry}


def _described(info: FieldInfo, flat: FieldInfo) -> FieldInfo:
    """The entry option's type with the flat option's description (the entry's own has none)."""
    return FieldInfo.merge_field_infos(info, description=flat.description)


def _strict(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties}


def _strings(*names: str) -> dict[str, Any]:
    return {name: dict(_STRING) for name in names}


def schema() -> dict[str, Any]:
    port = {"type": "integer", "minimum": 1, "maximum": 65535}
    properties: dict[str, Any] = {
        "mode": {"type": "string", "enum": ["sidecar", "standalone"]},
        "config": config_schema(),
        "providers": providers_schema(),
        "workers": {"type": "integer", "minimum": 1},
        "image": _strict({**_strings("repository", "tag"), "pullPolicy": dict(_STRING)}),
        "imagePullSecrets": {"type": "array"},
        "secret": _strict(
            {
                **_strings(
                    "existingSecret",
                    "clientSecret",
                    "cookieSecret",
                    "clientSecretKey",
                    "cookieSecretKey",
                    "redisPasswordKey",
                    "redisPassword",
                    "rolloutToken",
                ),
            }
        ),
        "app": _strict(
            {
                **_strings("name", "image", "pullPolicy"),
                "port": port,
                "args": {"type": "array"},
                "env": {"type": "array"},
                "volumeMounts": {"type": "array"},
                "resources": _OBJECT,
                "securityContext": _OBJECT,
            }
        ),
        "replicaCount": {"type": "integer", "minimum": 1},
        "service": _strict({"type": dict(_STRING), "port": port}),
        "metrics": _strict(
            {
                "enabled": _BOOL,
                "port": port,
                "serviceMonitor": _strict(
                    {"enabled": _BOOL, "labels": _OBJECT, **_strings("interval", "scrapeTimeout")}
                ),
            }
        ),
        "redis": _strict({"enabled": _BOOL, "connectionUrl": _STRING, "passwordFromSecret": _BOOL}),
        "resources": _OBJECT,
        "podSecurityContext": _OBJECT,
        "securityContext": _OBJECT,
        "livenessProbe": _OBJECT,
        "readinessProbe": _OBJECT,
        "serviceAccount": _strict({"create": _BOOL, "name": _STRING, "automountServiceAccountToken": _BOOL}),
        "podDisruptionBudget": _strict({"enabled": _BOOL, "maxUnavailable": {"type": ["integer", "string"]}}),
        "autoscaling": _strict(
            {
                "enabled": _BOOL,
                "minReplicas": _INT,
                "maxReplicas": _INT,
                "targetCPUUtilizationPercentage": _INT,
            }
        ),
        "networkPolicy": _strict(
            {
                "enabled": _BOOL,
                "from": {"type": "array"},
                "metricsFrom": {"type": "array"},
                "protectApp": _strict({"enabled": _BOOL, "podSelector": _OBJECT, "port": port}),
            }
        ),
        "ingress": _strict(
            {
                "enabled": _BOOL,
                "annotations": _OBJECT,
                **_strings("className", "host", "tlsSecretName"),
            }
        ),
        "podAnnotations": _OBJECT,
        "podLabels": _OBJECT,
        "nodeSelector": _OBJECT,
        "tolerations": {"type": "array"},
        "affinity": _OBJECT,
        "topologySpreadConstraints": {"type": "array"},
        "priorityClassName": _STRING,
        "global": _OBJECT,  # what a parent chart passes down
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "oidcproxy chart values (generated by scripts/helm_schema.py)",
        **_strict(properties),
    }


def render() -> str:
    return json.dumps(schema(), indent=2) + "\n"


if __name__ == "__main__":
    SCHEMA.write_text(render())
    sys.exit(0)
