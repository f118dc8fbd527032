"""deploy/: every manifest parses and validates against the Kubernetes API schema (kubernetes-validate,
schemas shipped in the package, offline), and the things people rely on are really there. The Helm chart
under deploy/helm has its own test (tests/integration/test_helm.py, with the real helm program)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes_validate.utils import validate

from oidcproxy.config import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.31.0"
PATTERNS = ["sidecar", "auth-request"]
KUSTOMIZATIONS = ["base", *PATTERNS, "gateway-api", "ingress-nginx", "redis"]
GATEWAY_API = "gateway.networking.k8s.io/v1"  # CRDs: kubernetes-validate has no schema for them


def _resources(directory: Path) -> list[dict[str, Any]]:
    """The documents a kustomization names, following directory references like ../base, less those
    its `$patch: delete` patches remove (the only kind of patch used here)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    docs: list[dict[str, Any]] = []
    for entry in kustomization["resources"]:
        target = (directory / entry).resolve()
        if target.is_dir():
            docs += _resources(target)
        else:
            docs += [d for d in yaml.safe_load_all(target.read_text()) if d]
    for patch in kustomization.get("patches", []):
        gone = yaml.safe_load(patch["patch"])
        assert gone.pop("$patch") == "delete"
        before = len(docs)
        docs = [
            d for d in docs if (d["kind"], d["metadata"]["name"]) != (gone["kind"], gone["metadata"]["name"])
        ]
        assert len(docs) == before - 1, f"the patch deletes nothing: {gone}"
    return docs


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


def _container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (deployment,) = _by_kind(docs, "Deployment")
    (found,) = [c for c in _containers(deployment) if c["name"] == name]
    return dict(found)


def test_every_yaml_file_is_used_by_a_kustomization() -> None:
    used = {p.resolve() for d in KUSTOMIZATIONS for p in (DEPLOY / d).glob("*.yaml")}
    chart = DEPLOY / "helm"
    assert used == {p.resolve() for p in DEPLOY.rglob("*.yaml") if chart not in p.parents}


@pytest.mark.parametrize("pattern", [*PATTERNS, "gateway-api", "ingress-nginx", "redis"])
def test_manifests_validate_against_the_kubernetes_schema(pattern: str) -> None:
    docs = _resources(DEPLOY / pattern)
    for doc in docs:
        if doc["apiVersion"] != GATEWAY_API:  # checked field by field below
            validate(doc, K8S_VERSION, strict=True)  # raises ValidationError naming the field
    kinds = {d["kind"] for d in docs}
    if pattern in PATTERNS:
        assert kinds >= {"Deployment", "Service", "Ingress", "Secret", "NetworkPolicy", "PodDisruptionBudget"}


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
    assert "--workers=1" in proxy["args"]  # matches limits.cpu "1"
    # a small in-memory /tmp beside the read-only root
    (tmp,) = [m for m in proxy["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
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


def test_no_manifest_needs_snippet_annotations() -> None:
    """Default ingress-nginx installs (1.9+) ignore *-snippet annotations: the recipes must not need them."""
    for pattern in PATTERNS:
        for ingress in _by_kind(_resources(DEPLOY / pattern), "Ingress"):
            notes = ingress["metadata"].get("annotations", {})
            assert not [k for k in notes if k.endswith("-snippet")], ingress["metadata"]["name"]
            assert notes["nginx.ingress.kubernetes.io/proxy-buffer-size"] == "128k"  # several Set-Cookie


def test_large_headers_come_from_the_controller_configmap() -> None:
    (config,) = _resources(DEPLOY / "ingress-nginx")
    assert config["kind"] == "ConfigMap" and config["metadata"]["namespace"] == "ingress-nginx"
    assert config["data"]["large-client-header-buffers"] == "4 64k"


def _admitted_ports(policy: dict[str, Any]) -> set[str | int]:
    return {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}


def test_sidecar_network_policy_admits_oidcproxy_and_not_the_dashboard_port() -> None:
    docs = _resources(DEPLOY / "sidecar")
    (deployment,) = _by_kind(docs, "Deployment")
    (policy,) = _by_kind(docs, "NetworkPolicy")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert _admitted_ports(policy) == {"http"}
    ports = {c["name"]: {p["name"]: p["containerPort"] for p in c["ports"]} for c in _containers(deployment)}
    assert ports["oidcproxy"]["http"] == 4180
    assert "http" not in ports["headlamp"] and 4466 not in _admitted_ports(policy)
    (service,) = _by_kind(docs, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_auth_request_app_is_reachable_from_the_ingress_controller_only() -> None:
    docs = _resources(DEPLOY / "auth-request")
    policies = {p["metadata"]["name"]: p for p in _by_kind(docs, "NetworkPolicy")}
    assert _admitted_ports(policies["oidcproxy"]) == {"http"}
    (rule,) = policies["grafana"]["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    (app,) = [i for i in _by_kind(docs, "Ingress") if i["metadata"]["name"] == "grafana"]
    backend = app["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert [p["port"] for p in rule["ports"]] == [backend["port"]["number"]]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_disruption_budget_keeps_a_replica_up(pattern: str) -> None:
    docs = _resources(DEPLOY / pattern)
    (deployment,) = _by_kind(docs, "Deployment")
    (budget,) = _by_kind(docs, "PodDisruptionBudget")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]


def test_gateway_api_route_sends_everything_to_oidcproxy() -> None:
    docs = _resources(DEPLOY / "gateway-api")
    assert not _by_kind(docs, "Ingress"), "the HTTPRoute replaces the sidecar's Ingress"
    (gateway,) = _by_kind(docs, "Gateway")
    (route,) = _by_kind(docs, "HTTPRoute")
    assert gateway["apiVersion"] == route["apiVersion"] == GATEWAY_API
    listeners = {x["name"]: x for x in gateway["spec"]["listeners"]}
    (parent,) = route["spec"]["parentRefs"]
    assert parent["name"] == gateway["metadata"]["name"]
    listener = listeners[parent["sectionName"]]
    assert listener["protocol"] == "HTTPS" and listener["tls"]["mode"] == "Terminate"
    assert listener["tls"]["certificateRefs"][0]["kind"] == "Secret"
    proxy = _container(docs, "oidcproxy")
    redirect = next(a.split("=", 1)[1] for a in proxy["args"] if a.startswith("--redirect-url="))
    assert route["spec"]["hostnames"] == [listener["hostname"]] == [urlsplit(redirect).hostname]
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    (backend,) = rule["backendRefs"]
    (service,) = _by_kind(docs, "Service")
    (port,) = service["spec"]["ports"]
    assert (backend["name"], backend["port"]) == (service["metadata"]["name"], port["port"])
    assert port["targetPort"] == "http" and "http" in {p["name"] for p in proxy["ports"]}


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


def test_redis_example_keeps_sessions_in_its_redis_with_the_password_from_the_secret(tmp_path: Path) -> None:
    docs = _resources(DEPLOY / "redis")
    proxy = _container(docs, "oidcproxy")
    for name in ("client-secret", "redis-password"):
        (tmp_path / name).write_text("s3cret\n")
    args = [a.replace("/secrets/", f"{tmp_path}/") for a in proxy["args"]]
    settings = load_settings([*args, "--cookie-secret=" + "x" * 32])
    assert settings.session_store_type == "redis" and settings.redis_password_value() == "s3cret"
    host = urlsplit(settings.redis_connection_url).hostname
    (service,) = [d for d in _by_kind(docs, "Service") if d["metadata"]["name"] == "redis"]
    assert host == "redis.oidcproxy.svc" and service["spec"]["ports"][0]["port"] == 6379
