"""`oidcproxy idp` as its own process: prints issuer and credentials, warns, serves, refuses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from oidcproxy.idp import run_standalone

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = "import sys; from oidcproxy.idp import run_standalone; sys.exit(run_standalone(sys.argv[1:]))"


@contextlib.asynccontextmanager
async def standalone(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, str]]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LAUNCH, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        printed: dict[str, str] = {}
        assert proc.stdout is not None
        while "redirect URLs" not in printed:
            line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
            assert line, "the provider exited before printing its settings"
            key, _, value = line.partition(":")
            printed[key.strip()] = value.strip()
        yield proc, printed
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def discover(issuer: str) -> dict[str, object]:
    """The process prints before it binds; retry connecting for a bounded time."""
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(f"{issuer}/.well-known/openid-configuration") as r:
                    body: dict[str, object] = await r.json()
                    return body
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise AssertionError("the standalone provider never answered")


async def test_standalone_serves_and_prints_its_settings(
    unused_tcp_port_factory: Callable[[], int],
) -> None:
    port = unused_tcp_port_factory()
    args = ("--http-address", f"127.0.0.1:{port}", "--signing-alg", "ES256")
    async with standalone(*args) as (proc, printed):
        issuer = printed["issuer"]
        assert issuer == f"http://127.0.0.1:{port}"
        assert printed["client id"].startswith("dev-")
        assert len(printed["client secret"]) >= 24
        assert printed["redirect URLs"] == "any loopback URL"
        meta = await discover(issuer)
        assert meta["id_token_signing_alg_values_supported"] == ["ES256"]
        params = {
            "response_type": "code",
            "client_id": printed["client id"],
            "redirect_uri": "http://127.0.0.1:9/cb",
            "scope": "openid",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        }
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{issuer}/authorize", params=params) as r,
        ):
            assert r.status == 200
    assert proc.stderr is not None
    warning = (await proc.stderr.read()).decode()
    assert "NOT FOR PRODUCTION" in warning
    assert "ANY loopback redirect URL" in warning


def test_standalone_refuses_all_interfaces(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_standalone(["--http-address", "0.0.0.0:9000"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--allow-remote" in err and len(err.splitlines()) == 1


def test_allow_remote_still_needs_an_issuer(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_standalone(["--http-address", "0.0.0.0:9000", "--allow-remote"]) == 2
    assert "--issuer" in capsys.readouterr().err
