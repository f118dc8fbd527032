"""The Docker image, tried outside Docker (no engine runs here): its settings are what we promise, and
its entrypoint, run with its environment, serves the proxy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.factories import COOKIE_SECRET
from tests.support.process import stop

DOCKERFILE = Path(__file__).parents[2] / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]  # type: ignore[misc]


def test_image_is_slim_non_root_and_exposes_4180() -> None:
    steps = instructions()
    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:3.11-slim")
    user = [arg for op, arg in steps if op == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert ("EXPOSE", "4180") in steps
    entry = [json.loads(arg) for op, arg in steps if op == "ENTRYPOINT"]
    assert entry == [["oidcproxy"]]
    for op, arg in steps:
        if op == "COPY":
            for source in arg.split()[:-1]:
                assert (DOCKERFILE.parent / source).exists(), f"COPY {source}: no such path"


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from requirements.lock."""
    pins: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for raw in (DOCKERFILE.parent / "requirements.lock").read_text().splitlines():
        line = raw.strip().rstrip("\\").strip()
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.lower()] = (version.strip(), [])
        elif line.startswith("--hash=") and name:
            pins[name][1].append(line)
    return pins


def test_image_installs_hash_locked_dependencies_of_every_runtime_requirement() -> None:
    project = tomllib.loads((DOCKERFILE.parent / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["speed"]]]
    pins = locked()
    for req in wanted:
        name = req.name.lower()
        assert name in pins, f"{req.name} is not in requirements.lock: re-run pip-compile"
        version, hashes = pins[name]
        assert req.specifier.contains(version), f"requirements.lock has {name}=={version}; pyproject: {req}"
        assert hashes, f"{name} has no --hash in requirements.lock"
    runs = [arg for op, arg in instructions() if op == "RUN" and "pip install" in arg]
    assert any("--require-hashes -r requirements.lock" in run for run in runs)
    assert any("--no-deps ." in run for run in runs), "the project itself must not resolve dependencies again"


def image_env() -> dict[str, str]:
    env = {}
    for op, arg in instructions():
        if op == "ENV":
            key, value = arg.split("=", 1)
            env[key] = value
    return env


def run_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OIDCPROXY_")}
    env.update(image_env())
    env.update(
        OIDCPROXY_UPSTREAM="http://127.0.0.1:9/",
        OIDCPROXY_OIDC_ISSUER_URL="https://idp.example.com",
        OIDCPROXY_CLIENT_ID="dashboard",
        OIDCPROXY_CLIENT_SECRET="s3cret",
        OIDCPROXY_COOKIE_SECRET=COOKIE_SECRET,
        OIDCPROXY_EMAIL_DOMAIN="example.com",
    )
    env.update(extra)
    return env


def test_entrypoint_accepts_the_image_environment() -> None:
    entry = shutil.which("oidcproxy")
    assert entry is not None, "the console script is not installed"
    done = subprocess.run(
        [entry, "check"], env=run_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert image_env()["OIDCPROXY_HTTP_ADDRESS"] == "0.0.0.0:4180"


def test_entrypoint_serves(unused_tcp_port: int) -> None:
    entry = shutil.which("oidcproxy")
    assert entry is not None
    # Same command and environment as the image, but on loopback: tests never bind other addresses.
    env = run_env(OIDCPROXY_HTTP_ADDRESS=f"127.0.0.1:{unused_tcp_port}", OIDCPROXY_WORKERS="1")
    process = subprocess.Popen([entry], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening" in line, (line, process.stderr.read() if process.poll() is not None else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/ping", timeout=10) as reply:
            assert reply.status == 200
    finally:
        stop(process)
    if process.returncode not in (0, -15):
        pytest.fail(f"entrypoint exited {process.returncode}")
