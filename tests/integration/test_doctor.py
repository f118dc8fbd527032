"""`oidcproxy doctor` as an operator runs it (a real subprocess), against both real providers: the npm
oidc-provider and our embedded one, each with a registered client; and both at once as two
[[providers]] entries, each checked with its own callback and named in every finding.

Exit 0 when all is well, 1 on a finding (wrong redirect URI, wrong issuer, provider down, skewed
clock, sizes over NGINX's buffers), 2 on bad configuration.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oidcproxy.doctor import diagnose
from oidcproxy.idp import IdPClient, IdPConfig, build_app
from oidcproxy.model import system_clock
from tests.factories import COOKIE_SECRET, make_settings
from tests.support.nodeidp import NodeIdP

ROOT = Path(__file__).resolve().parents[2]
CALLBACK = "http://127.0.0.1:4180/oauth2/callback"  # registered at both providers


@dataclass(frozen=True)
class Registered:
    issuer: str
    client_id: str
    client_secret: str

    def args(self, **overrides: str) -> list[str]:
        values = {
            "upstream": "http://127.0.0.1:9/",
            "oidc-issuer-url": self.issuer,
            "client-id": self.client_id,
            "client-secret": self.client_secret,
            "cookie-secret": COOKIE_SECRET,
            "email-domain": "example.com",
            "redirect-url": CALLBACK,
            "cookie-secure": "false",
            **overrides,
        }
        return [f"--{k}={v}" for k, v in values.items() if v != "-"]


@pytest.fixture(params=["node", "embedded"])
async def registered(
    request: pytest.FixtureRequest, aiohttp_server: Any, unused_tcp_port_factory: Callable[[], int]
) -> Registered:
    if request.param == "node":
        node: NodeIdP = request.getfixturevalue("node_idp")  # registers http://127.0.0.1/oauth2/callback
        return Registered(node.issuer, node.client_id, node.client_secret)
    port = unused_tcp_port_factory()
    issuer = f"http://127.0.0.1:{port}"
    client = IdPClient(client_id="proxy", client_secret="proxy-secret", redirect_uris=(CALLBACK,))
    app, _ = build_app(IdPConfig(issuer=issuer, clients=(client,)))
    await aiohttp_server(app, port=port)
    return Registered(issuer, client.client_id, client.client_secret)


async def doctor(*args: str) -> tuple[int, str, str]:
    """Run `python -m oidcproxy doctor ...` without blocking the loop that serves the provider."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OIDCPROXY_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oidcproxy", "doctor", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def problems(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip().startswith("PROBLEM")]


async def test_all_well_exits_0(registered: Registered) -> None:
    code, out, err = await doctor(*registered.args())
    assert code == 0, out + err
    assert "0 problem(s)" in out
    for check in ("discovery", "issuer", "jwks", "clock", "redirect_uri", "cookies", "sizes"):
        assert f"ok       {check}" in out, out
    assert "cookie store: nothing to check" in out


async def test_a_redirect_uri_the_provider_does_not_know_exits_1_naming_it(registered: Registered) -> None:
    wrong = "http://127.0.0.1:4180/auth/callback"
    code, out, err = await doctor(*registered.args(**{"redirect-url": wrong}))
    assert code == 1, out + err
    (problem,) = problems(out)
    assert "redirect_uri" in problem and f"refuses the redirect URI {wrong}" in problem
    assert f"fix: register {wrong} exactly" in out


async def test_a_wrong_issuer_exits_1_naming_the_mismatch(registered: Registered) -> None:
    code, out, err = await doctor(*registered.args(**{"oidc-issuer-url": registered.issuer + "/"}))
    assert code == 1, out + err
    assert any("issuer mismatch" in p for p in problems(out)), out
    assert f"fix: set --oidc-issuer-url={registered.issuer} (character for character" in out


async def test_a_provider_that_is_down_exits_1(unused_tcp_port_factory: Callable[[], int]) -> None:
    down = Registered(f"http://127.0.0.1:{unused_tcp_port_factory()}", "proxy", "secret")
    code, out, err = await doctor(*down.args())
    assert code == 1, out + err
    (problem,) = problems(out)
    assert "discovery" in problem and "unreachable" in problem
    assert "not checked: no discovery document" in out


async def test_bad_configuration_exits_2_with_the_usual_lines() -> None:
    code, out, err = await doctor(*Registered("https://idp.example.com", "", "s").args(**{"client-id": "-"}))
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "oidcproxy: --client-id: missing; use the client id registered at your provider"
    ]
    code, _, err = await doctor(
        "--sample-groups=many", *Registered("https://idp.example.com", "c", "s").args()
    )
    assert code == 2 and err.startswith("oidcproxy: --sample-groups:")


async def test_json_output_lists_every_finding(registered: Registered) -> None:
    code, out, _ = await doctor("--json", *registered.args(**{"redirect-url": "http://127.0.0.1:1/x"}))
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["problems"] == 1
    (bad,) = [f for f in report["findings"] if f["status"] == "problem"]
    assert bad["check"] == "redirect_uri" and bad["fix"].startswith("register http://127.0.0.1:1/x")


async def test_a_skewed_clock_is_a_finding(registered: Registered) -> None:
    settings = make_settings(
        oidc_issuer_url=registered.issuer,
        client_id=registered.client_id,
        client_secret=registered.client_secret,
        redirect_url=CALLBACK,
    )
    report = await diagnose(settings, lambda: system_clock() + 600)
    (clock,) = [f for f in report.findings if f.check == "clock"]
    # Date has whole seconds, so 600 s of skew reads as 600 or 601 s depending on the fraction
    assert clock.status == "problem"
    assert re.search(r"\b60[01] s ahead of the provider's", clock.summary), clock.summary
    assert "NTP" in clock.fix


async def test_a_large_session_names_the_ingress_settings(registered: Registered) -> None:
    settings = make_settings(
        oidc_issuer_url=registered.issuer,
        client_id=registered.client_id,
        client_secret=registered.client_secret,
        redirect_url=CALLBACK,
    )
    report = await diagnose(settings, system_clock, sample_groups=600)
    fixes = [f.fix for f in report.findings if f.status == "problem"]
    assert any(f.startswith('ingress-nginx ConfigMap key large-client-header-buffers: "4 ') for f in fixes)
    assert any("nginx.ingress.kubernetes.io/proxy-buffer-size" in f for f in fixes), fixes


# -- several providers ([[providers]]) -------------------------------------------------------------

TWO_CALLBACKS = "http://127.0.0.1:4180/oauth2/callback/{}"  # each provider's own callback


async def two_providers(
    node: Any, aiohttp_server: Any, port: int, tmp_path: Path, dev_registers: str = "", **dev: str
) -> Path:
    """The npm oidc-provider ("node", its client registers /oauth2/callback/node) and the embedded one
    ("dev", on its own port, registering `dev_registers`, by default /oauth2/callback/dev), as two
    [[providers]] entries of a config file; `dev` overrides options of the dev entry ("-": unset)."""
    idp = node(clients=[{"client_id": "proxy-at-node", "client_secret": "node-secret",
                         "redirect_uris": [TWO_CALLBACKS.format("node")]}])  # fmt: skip
    issuer = f"http://127.0.0.1:{port}"
    registered = (dev_registers or TWO_CALLBACKS.format("dev"),)
    client = IdPClient("proxy-at-dev", "dev-secret", registered)
    app, _ = build_app(IdPConfig(issuer=issuer, clients=(client,)))
    await aiohttp_server(app, port=port)
    entries = {
        "node": {"oidc_issuer_url": idp.issuer, "client_id": "proxy-at-node", "client_secret": "node-secret"},
        "dev": {"oidc_issuer_url": issuer, "client_id": "proxy-at-dev", "client_secret": "dev-secret"},
    }
    text = f'upstream = ["http://127.0.0.1:9/"]\ncookie_secret = "{COOKIE_SECRET}"\ncookie_secure = false\n'
    for pid, options in entries.items():
        own = dev if pid == "dev" else {}
        values = {"id": pid, **options, "redirect_url": TWO_CALLBACKS.format(pid), **own}
        text += '\n[[providers]]\nemail_domains = ["example.com"]\n'
        text += "".join(f'{k} = "{v}"\n' for k, v in values.items() if v != "-")
    path = tmp_path / "oidcproxy.toml"
    path.write_text(text)
    return path


async def test_each_of_several_providers_is_checked_and_named(
    node: Any, aiohttp_server: Any, unused_tcp_port_factory: Callable[[], int], tmp_path: Path
) -> None:
    config = await two_providers(node, aiohttp_server, unused_tcp_port_factory(), tmp_path)
    code, out, err = await doctor("--config", str(config))
    assert code == 0, out + err
    for pid in ("node", "dev"):
        for check in ("discovery", "issuer", "jwks", "clock"):
            assert re.search(rf"ok +{check} +\[{pid}\] ", out), out
        accepted = f"[{pid}] {TWO_CALLBACKS.format(pid)} accepted"
        assert re.search(rf"ok +redirect_uri +{re.escape(accepted)}", out), out
    code, out, _ = await doctor("--json", "--config", str(config))
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    by = {(f["provider"], f["check"]) for f in report["findings"] if f["status"] == "ok"}
    assert {(p, c) for p in ("node", "dev") for c in ("issuer", "jwks", "redirect_uri")} <= by
    assert ("", "cookies") in by  # the proxy's own checks name no provider


async def test_one_providers_wrong_issuer_exits_1_naming_that_provider(
    node: Any, aiohttp_server: Any, unused_tcp_port_factory: Callable[[], int], tmp_path: Path
) -> None:
    port = unused_tcp_port_factory()
    issuer = f"http://127.0.0.1:{port}"
    config = await two_providers(node, aiohttp_server, port, tmp_path, oidc_issuer_url=issuer + "/")
    code, out, err = await doctor("--config", str(config))
    assert code == 1, out + err
    (problem,) = problems(out)
    assert "issuer" in problem and "[dev] issuer mismatch" in problem, out
    assert f"providers[1].oidc_issuer_url is '{issuer}/'" in problem
    assert f"fix: set providers[1].oidc_issuer_url={issuer} (character for character" in out
    assert re.search(r"ok +issuer +\[node\] ", out), "the other provider is fine"
    code, out, _ = await doctor("--json", "--config", str(config))
    (bad,) = [f for f in json.loads(out)["findings"] if f["status"] == "problem"]
    assert code == 1 and (bad["provider"], bad["check"]) == ("dev", "issuer")


async def test_a_provider_that_knows_only_the_single_provider_callback_is_named(
    node: Any, aiohttp_server: Any, unused_tcp_port_factory: Callable[[], int], tmp_path: Path
) -> None:
    """With several providers each has its own callback path: dev's client still registers only
    /oauth2/callback (as with one provider) and the dev entry gives no redirect_url, so the doctor
    asks with /oauth2/callback/dev, which dev refuses: the fix names the URL and the entry."""
    config = await two_providers(
        node, aiohttp_server, unused_tcp_port_factory(), tmp_path, dev_registers=CALLBACK, redirect_url="-"
    )
    code, out, err = await doctor("--config", str(config))
    assert code == 1, out + err
    (problem,) = problems(out)
    wanted = TWO_CALLBACKS.format("dev")
    assert f"redirect_uri   [dev] the provider refuses the redirect URI {wanted}" in problem, out
    assert f"fix: register {wanted} exactly as the client's redirect URI at the provider, or set " in out
    assert "providers[1].redirect_url to the one registered" in out
