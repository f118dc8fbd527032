"""The Helm chart in deploy/helm/oidcproxy, rendered by the real helm program (built from its Go module
into .cache/peers/bin by scripts/setup.sh): `helm lint`, `helm template` for each mode and option set,
every manifest checked against the Kubernetes API schema (kubernetes-validate), and oidcproxy's own
option parser run on the flags and environment the chart gives the container."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate.utils import validate

from oidcproxy.config import ProviderSpec, Settings, build_parser, load_settings
from tests.factories import COOKIE_SECRET

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "oidcproxy"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
K8S_VERSION = "1.31.0"
CRDS = {"monitoring.coreos.com/v1"}  # the Prometheus Operator's: no schema in kubernetes-validate
LABELS = ("name", "instance", "version", "component", "part-of", "managed-by")
REQUIRED = {
    "config": {
        "oidc_issuer_url": "https://login.example.com/realms/main",
        "client_id": "apps",
        "redirect_url": "https://auth.example.com/oauth2/callback",
        "email_domain": ["example.com"],
    },
    "secret": {"clientSecret": "s3cret", "cookieSecret": COOKIE_SECRET},
}

sys.path.insert(0, str(ROOT / "scripts"))
import helm_schema  # noqa: E402


def _helm_program() -> str:
    built = ROOT / ".cache" / "peers" / "bin" / "helm"
    if built.exists():
        return str(built)
    if shutil.which("go") is None:
        pytest.skip("not run: helm is built from its Go module and Go is not installed here")
    pytest.fail("helm is not built: run scripts/setup.sh (it builds helm with Go into .cache/peers/bin)")


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., subprocess.CompletedProcess[str]]:
    program = _helm_program()
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [program, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    return run


@pytest.fixture(scope="module")
def render(
    helm: Callable[..., subprocess.CompletedProcess[str]], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., list[dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("values")

    def run(*values: dict[str, Any] | Path) -> list[dict[str, Any]]:
        done = template(*values)
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if d]

    def template(*values: dict[str, Any] | Path) -> subprocess.CompletedProcess[str]:
        files: list[str] = []
        for number, given in enumerate(values):
            if isinstance(given, dict):
                path = directory / f"values-{len(list(directory.iterdir()))}-{number}.yaml"
                path.write_text(yaml.safe_dump(given))
                given = path
            files += ["-f", str(given)]
        return helm(
            "template", "rel", str(CHART), "--namespace", "auth", "--kube-version", K8S_VERSION, *files
        )

    run.template = template  # type: ignore[attr-defined]
    return run


def _kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = _kind(docs, "Deployment")
    return deployment


def _container(docs: list[dict[str, Any]], name: str = "oidcproxy") -> dict[str, Any]:
    (found,) = [c for c in _deployment(docs)["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return dict(found)


def _environment(docs: list[dict[str, Any]], secret_data: dict[str, str] | None = None) -> dict[str, str]:
    """The oidcproxy container's environment, secretKeyRefs read from the rendered Secret (or given)."""
    secrets = {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for s in _kind(docs, "Secret")
    }
    env: dict[str, str] = {}
    for item in _container(docs)["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = (secret_data or secrets[ref["name"]])[ref["key"]]
    return env


def _settings(
    docs: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    secret_data: dict[str, str] | None = None,
) -> Settings:
    """What the real oidcproxy makes of the container's flags and environment; secretKeyRefs read from
    `secret_data` (an existing Secret's keys), else the cookie secret."""
    secret_file = tmp_path / "client-secret"
    secret_file.write_text("s3cret")
    args = [
        a.replace("/etc/oidcproxy/secrets/client-secret", str(secret_file)) for a in _container(docs)["args"]
    ]
    for name in [n for n in os.environ if n.startswith("OIDCPROXY_")]:
        monkeypatch.delenv(name)
    for name, value in _environment(docs, secret_data or {"cookie-secret": COOKIE_SECRET}).items():
        monkeypatch.setenv(name, value)
    return load_settings(args)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_helm_lint_passes(helm: Callable[..., subprocess.CompletedProcess[str]], values: Path) -> None:
    done = helm("lint", "--strict", str(CHART), "-f", str(values), "--kube-version", K8S_VERSION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_every_rendered_manifest_validates_and_carries_the_recommended_labels(
    render: Callable[..., list[dict[str, Any]]], values: Path
) -> None:
    docs = render(values)
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget"}
    for doc in docs:
        if doc["apiVersion"] not in CRDS:
            validate(doc, K8S_VERSION, strict=True)
        labels = doc["metadata"]["labels"]
        assert {f"app.kubernetes.io/{name}" for name in LABELS} <= labels.keys(), doc["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_pods_are_probed_restricted_bounded_and_run_explicit_workers(
    render: Callable[..., list[dict[str, Any]]], values: Path
) -> None:
    docs = render(values)
    pod = _deployment(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["limits"] and container["resources"]["requests"]
    proxy = _container(docs)
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    workers = [a for a in proxy["args"] if a.startswith("--workers=")]
    assert len(workers) == 1 and int(workers[0].split("=")[1]) >= 2
    # the workers' shared-state socket needs the one writable place of the read-only root
    (tmp,) = [m for m in proxy["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume


def test_sidecar_mode_proxies_to_the_app_on_loopback_and_only_oidcproxy_is_reachable(
    render: Callable[..., list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(CHART / "ci" / "sidecar-values.yaml")
    settings = _settings(docs, tmp_path, monkeypatch)
    assert settings.upstream == ["http://127.0.0.1:4466/"] and settings.workers == 2
    assert Path(settings.client_secret_file).read_text() == "s3cret"  # mounted from the Secret's key
    assert settings.skip_auth_route == [r"GET=^/static/.{1,64}\.(css|js)$"], "a comma in a regex survives"
    assert settings.http_address == "0.0.0.0:4180" and settings.reverse_proxy
    (policy,) = _kind(docs, "NetworkPolicy")
    pod_labels = _deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == ["http"]
    assert {p["name"] for p in _container(docs)["ports"]} == {"http"}
    assert {p["name"] for p in _container(docs, "headlamp")["ports"]} == {"app"}
    (service,) = _kind(docs, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_standalone_auth_request_with_an_existing_secret(
    render: Callable[..., list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(CHART / "ci" / "standalone-values.yaml")
    assert not _kind(docs, "Secret"), "an existing Secret is used, not created"
    pod = _deployment(docs)["spec"]["template"]
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in _container(docs)["env"] if "valueFrom" in e}
    refs |= {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
    assert refs == {"oidcproxy-credentials"}
    assert pod["metadata"]["annotations"] == {"oidcproxy/rollout-token": "2025-01-01"}
    settings = _settings(docs, tmp_path, monkeypatch)
    assert settings.set_xauthrequest and settings.whitelist_domain == [".example.com"]
    assert settings.cookie_expire == 12 * 3600 and settings.provider_max_response_size == 1048576
    (ingress,) = _kind(docs, "Ingress")
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/oauth2"
    assert not [k for k in ingress["metadata"]["annotations"] if k.endswith("-snippet")]


def test_a_changed_secret_rolls_the_pods(render: Callable[..., list[dict[str, Any]]]) -> None:
    def checksum(cookie_secret: str) -> str:
        docs = render(REQUIRED, {"secret": {"cookieSecret": cookie_secret}})
        return str(_deployment(docs)["spec"]["template"]["metadata"]["annotations"]["checksum/secret"])

    first = checksum(COOKIE_SECRET)
    assert checksum(COOKIE_SECRET) == first, "the same values keep the pods"
    assert checksum("fedcba9876543210fedcba9876543210") != first


def test_defaults_start_on_todays_oidcproxy(
    render: Callable[..., list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Metrics and Redis are off by default: their variables would stop an oidcproxy that lacks them."""
    docs = render(REQUIRED)
    assert set(_environment(docs)) == {"OIDCPROXY_COOKIE_SECRET"}
    settings = _settings(docs, tmp_path, monkeypatch)
    assert settings.upstream == ["http://127.0.0.1:9/"], "auth_request only: the placeholder upstream"
    assert not _kind(docs, "HorizontalPodAutoscaler") and not _kind(docs, "ServiceMonitor")
    assert _deployment(docs)["spec"]["replicas"] == 2


def test_metrics_enabled_is_what_the_proxy_reads_on_the_port_it_opens(
    render: Callable[..., list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(REQUIRED, {"metrics": {"enabled": True, "port": 9100}})
    settings = _settings(docs, tmp_path, monkeypatch)
    assert settings.metrics_address == "0.0.0.0:9100"
    ports = {p["name"]: p["containerPort"] for p in _container(docs)["ports"]}
    assert ports["metrics"] == 9100


def test_metrics_service_monitor_hpa_and_redis_when_switched_on(
    render: Callable[..., list[dict[str, Any]]],
) -> None:
    docs = render(CHART / "ci" / "full-values.yaml")
    env = _environment(docs)
    assert env["OIDCPROXY_METRICS_ADDRESS"] == "0.0.0.0:9090"
    assert env["OIDCPROXY_SESSION_STORE_TYPE"] == "redis"
    assert env["OIDCPROXY_REDIS_CONNECTION_URL"] == "redis://redis-master.redis.svc:6379/0"
    assert env["OIDCPROXY_REDIS_PASSWORD"] == "r3dis"
    (service,) = _kind(docs, "Service")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {
        "http": "http",
        "metrics": "metrics",
    }
    (monitor,) = _kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (hpa,) = _kind(docs, "HorizontalPodAutoscaler")
    deployment = _deployment(docs)
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    (budget,) = _kind(docs, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    policies = {p["metadata"]["name"]: p for p in _kind(docs, "NetworkPolicy")}
    app = policies["rel-oidcproxy-app"]["spec"]
    assert app["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "grafana"}
    assert app["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}}],
            "ports": [{"port": 3000, "protocol": "TCP"}],
        }
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"config": {"client_id": ""}}, "config.client_id is required"),
        (
            {"config": {"email_domain": []}},
            "config.email_domain (or config.authenticated_emails_file) is required",
        ),
        ({"config": {"emial_domain": ["example.com"]}}, "emial_domain"),
        ({"config": {"cookie_secret": "in-the-clear"}}, "cookie_secret"),
        ({"config": {"cookie_samesite": "sometimes"}}, "cookie_samesite"),
        ({"secret": {"cookieSecret": ""}}, "secret.cookieSecret is required"),
        ({"mode": "sidecar"}, "app.image is required in sidecar mode"),
        ({"metrics": {"serviceMonitor": {"enabled": True}}}, "needs metrics.enabled=true"),
        ({"redis": {"enabled": True}}, "redis.connectionUrl is required"),
        (
            {"mode": "sidecar", "app": {"image": "x"}, "config": {"upstream": ["http://a/"]}},
            "config.upstream",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_value(
    render: Callable[..., list[dict[str, Any]]], values: dict[str, Any], message: str
) -> None:
    done = render.template(REQUIRED, values)  # type: ignore[attr-defined]
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


def test_values_schema_is_generated_from_the_settings_model() -> None:
    assert (CHART / "values.schema.json").read_text() == helm_schema.render(), (
        "run: python scripts/helm_schema.py"
    )
    options = json.loads(helm_schema.render())["properties"]["config"]["properties"]
    assert set(options) | set(helm_schema.CHART_SET) == set(Settings.model_fields)
    assert not set(options) & set(helm_schema.CHART_SET)
    entry = json.loads(helm_schema.render())["properties"]["providers"]["items"]["properties"]
    chart_own = {"clientSecret", "clientSecretKey"}
    assert set(entry) - chart_own | set(helm_schema.PROVIDER_CHART_SET) == set(ProviderSpec.model_fields)


def _sample(schema: dict[str, Any]) -> Any:
    if "enum" in schema:
        return schema["enum"][-1]
    kind = schema["type"]
    return {"boolean": True, "array": ["x"], "integer": 7, "string": "x"}.get(
        kind if isinstance(kind, str) else "", "5s"
    )


def test_every_option_is_reachable_through_config(render: Callable[..., list[dict[str, Any]]]) -> None:
    """Each option of the model (but those the chart sets itself) given under config: reaches oidcproxy's
    parser as the option of the same name; the chart's own options are set by the chart."""
    options = json.loads(helm_schema.render())["properties"]["config"]["properties"]
    every = {name: _sample(schema) for name, schema in options.items()}
    docs = render(REQUIRED, {"config": every})
    args = _container(docs)["args"]
    parsed, unknown = build_parser().parse_known_args(args)
    assert unknown == []
    given = vars(parsed)
    assert set(given) == set(Settings.model_fields) - {"dev", "client_secret", "cookie_secret"}
    for name, value in every.items():
        expected = (
            value
            if isinstance(value, list)
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
        assert given[name] == expected, name
    assert "OIDCPROXY_COOKIE_SECRET" in _environment(docs)


# -- several providers: `providers:` as OIDCPROXY_PROVIDERS_<n>_<OPTION> -----------------------------

NO_FLAT_PROVIDER = {"config": {"oidc_issuer_url": "", "client_id": "", "redirect_url": ""}}


def _secret_data(docs: list[dict[str, Any]]) -> dict[str, str]:
    (secret,) = _kind(docs, "Secret")
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_providers_reach_the_real_loader_with_their_secrets_from_the_charts_secret(
    render: Callable[..., list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(CHART / "ci" / "providers-values.yaml")
    args = _container(docs)["args"]
    assert not [a for a in args if a.startswith("--client-secret-file")], "each entry has its own secret"
    assert not [v for v in _deployment(docs)["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    settings = _settings(docs, tmp_path, monkeypatch, _secret_data(docs))
    staff, google = settings.providers()
    assert settings.providers_listed and (staff.id, google.id) == ("staff", "google")
    assert (staff.display_name, google.display_name) == ("Acme staff (Keycloak)", "Google")
    assert staff.client_secret_value() == "kc-s3cret" and google.client_secret_value() == "g00gle-s3cret"
    assert staff.oidc_issuer_url == "https://keycloak.example.com/realms/acme"
    assert google.client_id == "1234-abcd.apps.googleusercontent.com"
    assert staff.redirect_url == "https://dash.example.com/oauth2/callback/staff"
    assert staff.allowed_group == ["dashboard-users", "dashboard-admins"], "a list, comma-joined and split"
    assert (staff.email_domain, google.email_domain) == (["acme.example"], ["contractor.example"])
    # what an entry leaves out comes from config:, what it gives is its own
    assert (staff.oidc_groups_claim, google.oidc_groups_claim) == ("realm_access.roles", "groups")
    checksum = _deployment(docs)["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
    changed = render(
        CHART / "ci" / "providers-values.yaml",
        {"providers": [{**p, "clientSecret": "rotated"} for p in _provider_entries()]},
    )
    assert _deployment(changed)["spec"]["template"]["metadata"]["annotations"]["checksum/secret"] != checksum


def _provider_entries() -> list[dict[str, Any]]:
    values = yaml.safe_load((CHART / "ci" / "providers-values.yaml").read_text())
    return list(values["providers"])


def test_providers_with_an_existing_secret_read_their_keys_there(
    render: Callable[..., list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staff, google = _provider_entries()
    entries = [
        {k: v for k, v in staff.items() if k != "clientSecret"},
        {**{k: v for k, v in google.items() if k != "clientSecret"}, "clientSecretKey": "google-oauth"},
    ]
    docs = render(
        CHART / "ci" / "providers-values.yaml",
        {"secret": {"existingSecret": "creds", "cookieSecret": ""}, "providers": entries},
    )
    assert not _kind(docs, "Secret")
    refs = {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in _container(docs)["env"]
        if "valueFrom" in e
    }
    assert refs == {
        "OIDCPROXY_COOKIE_SECRET": ("creds", "cookie-secret"),
        "OIDCPROXY_PROVIDERS_0_CLIENT_SECRET": ("creds", "provider-staff-client-secret"),
        "OIDCPROXY_PROVIDERS_1_CLIENT_SECRET": ("creds", "google-oauth"),
    }
    existing = {"cookie-secret": COOKIE_SECRET, "provider-staff-client-secret": "a", "google-oauth": "b"}
    settings = _settings(docs, tmp_path, monkeypatch, existing)
    assert [(p.id, p.client_secret_value()) for p in settings.providers()] == [
        ("staff", "a"),
        ("google", "b"),
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"config": {"client_id": "apps"}}, "config.client_id: leave it empty with providers"),
        (
            {"providers": [{"id": "a", "email_domain": ["x.example"]}]},
            "providers[0].clientSecret is required",
        ),
        (
            {"providers": [{"id": "a", "clientSecret": "s"}]},
            "providers[0].email_domain (or config.email_domain)",
        ),
        # in the clear, not through the Secret
        ({"providers": [{"id": "a", "client_secret": "s"}]}, "additional properties 'client_secret'"),
        ({"providers": [{"id": "A b", "clientSecret": "s"}]}, "at '/providers/0/id': 'A b'"),
        (
            {"providers": [{"id": "a", "clientSecret": "s", "email_domain": ["x,y"]}]},
            "at '/providers/0/email_domain/0': 'x,y'",  # lists are comma-joined in the variable
        ),
        ({"providers": [{"display_name": "no id", "clientSecret": "s"}]}, "missing property 'id'"),
    ],
)
def test_bad_providers_are_refused_naming_the_value(
    render: Callable[..., list[dict[str, Any]]], values: dict[str, Any], message: str
) -> None:
    base = {"config": {"oidc_issuer_url": "", "client_id": "", "redirect_url": "", "email_domain": []}}
    done = render.template(REQUIRED, base, {"providers": _provider_entries()}, values)  # type: ignore[attr-defined]
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
