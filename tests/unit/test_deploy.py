"""deploy/: every manifest parses and validates against the Kubernetes API schema (kubernetes-validate,
schemas shipped in the package, offline), and the things people rely on are really there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate.utils import validate

from oidcproxy.config import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.31.0"
PATTERNS = ["sidecar", "auth-request"]


def _resources(directory: Path) -> list[dict[str, Any]]:
    """The documents a kustomization names, following directory references like ../base."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    docs: list[dict[str, Any]] = []
    for entry in kustomization["resources"]:
        target = (directory / entry).resolve()
        if target.is_dir():
            docs += _resources(target)
        else:
            docs += [d for d in yaml.safe_load_all(target.read_text()) if d]
    return docs


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (deployment,) = _by_kind(docs, "Deployment")
    (found,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return dict(found)


def test_every_yaml_file_is_used_by_a_kustomization() -> None:
    used = {p.resolve() for d in [DEPLOY / "base", *(DEPLOY / p for p in PATTERNS)] for p in d.glob("*.yaml")}
    assert used == {p.resolve() for p in DEPLOY.rglob("*.yaml")}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_manifests_validate_against_the_kubernetes_schema(pattern: str) -> None:
    docs = _resources(DEPLOY / pattern)
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "Ingress", "Secret"}
    for doc in docs:
        validate(doc, K8S_VERSION, strict=True)  # raises ValidationError naming the field


def test_validator_catches_a_broken_manifest() -> None:
    doc = _by_kind(_resources(DEPLOY / "sidecar"), "Deployment")[0]
    doc["spec"]["replicas"] = "two"
    with pytest.raises(Exception, match="two"):
        validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_deployment_is_replicated_probed_restricted_and_bounded(pattern: str) -> None:
    docs = _resources(DEPLOY / pattern)
    (deployment,) = _by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] > 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["limits"] and container["resources"]["requests"]
    proxy = _container(docs, "oidcproxy")
    assert proxy["livenessProbe"]["httpGet"]["path"] == "/ping"
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/ready"
    secret_names = {s["metadata"]["name"] for s in _by_kind(docs, "Secret")}
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in proxy["env"] if "valueFrom" in e}
    refs |= {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert refs and refs <= secret_names


@pytest.mark.parametrize("pattern", PATTERNS)
def test_oidcproxy_arguments_are_accepted_by_the_real_option_parser(
    pattern: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = _container(_resources(DEPLOY / pattern), "oidcproxy")
    secret_file = tmp_path / "client-secret"
    secret_file.write_text("s3cret")
    args = [a.replace("/secrets/client-secret", str(secret_file)) for a in proxy["args"]]
    monkeypatch.setenv("OIDCPROXY_COOKIE_SECRET", "0123456789abcdef0123456789abcdef")
    settings = load_settings(args)
    assert settings.workers >= 1  # explicit: the node's CPU count says nothing about the pod's limit
    assert settings.reverse_proxy and settings.trusted_proxy_ip != ["127.0.0.0/8", "::1/128"]
    assert settings.redirect_url.startswith("https://")


def test_sidecar_ingress_carries_the_documented_snippets() -> None:
    (ingress,) = _by_kind(_resources(DEPLOY / "sidecar"), "Ingress")
    notes = ingress["metadata"]["annotations"]
    assert (
        "proxy_set_header X-Forwarded-Proto $scheme;"
        in notes["nginx.ingress.kubernetes.io/configuration-snippet"]
    )
    assert "large_client_header_buffers 4 64k;" in notes["nginx.ingress.kubernetes.io/server-snippet"]


def test_auth_request_ingress_asks_oidcproxy_and_passes_identity_and_cookies() -> None:
    docs = _resources(DEPLOY / "auth-request")
    (app,) = [i for i in _by_kind(docs, "Ingress") if i["metadata"]["name"] == "grafana"]
    notes = app["metadata"]["annotations"]
    (service,) = _by_kind(docs, "Service")
    assert f"//{service['metadata']['name']}." in notes["nginx.ingress.kubernetes.io/auth-url"]
    assert notes["nginx.ingress.kubernetes.io/auth-url"].split("?")[0].endswith("/oauth2/auth")
    assert "/oauth2/start?rd=" in notes["nginx.ingress.kubernetes.io/auth-signin"]
    passed = notes["nginx.ingress.kubernetes.io/auth-response-headers"].split(",")
    assert {"X-Auth-Request-Email", "X-Auth-Request-Groups", "Authorization"} <= set(passed)
    assert notes["nginx.ingress.kubernetes.io/auth-always-set-cookie"] == "true"
