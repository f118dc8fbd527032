"""The Docker image, tried outside Docker (no engine runs here): its settings are what we promise, and
its entrypoint, run with its environment, serves the proxy."""

from __future__ import annotations

import json
import os
import shlex
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
Step = tuple[str, str]


def stages() -> list[list[Step]]:
    """The Dockerfile's instructions, one list per stage (FROM starts one); `\\` continues a line."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not pending):
            continue
        pending = f"{pending} {line}".strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
        else:
            logical.append(pending)
            pending = ""
    found: list[list[Step]] = []
    for line in logical:
        op, arg = line.split(None, 1)
        if op.upper() == "FROM":
            found.append([])
        found[-1].append((op.upper(), arg))
    return found


def instructions() -> list[Step]:
    return [step for stage in stages() for step in stage]


def final_stage() -> list[Step]:
    return stages()[-1]


def test_image_is_slim_non_root_and_exposes_4180() -> None:
    every = stages()
    assert all(stage[0][1].startswith("python:3.11-slim") for stage in every)
    final = final_stage()
    user = [arg for op, arg in final if op == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert ("EXPOSE", "4180") in final
    entry = [json.loads(arg) for op, arg in final if op == "ENTRYPOINT"]
    assert entry == [["oidcproxy"]]
    for op, arg in instructions():
        if op == "COPY" and not arg.startswith("--from="):
            for source in arg.split()[:-1]:
                assert (DOCKERFILE.parent / source).exists(), f"COPY {source}: no such path"


def test_final_stage_has_the_builders_venv_and_no_build_steps() -> None:
    *builders, final = stages()
    assert builders, "multi-stage: a builder stage installs, the final stage copies"
    builder_name = builders[-1][0][1].split()[-1]
    copied = [arg for op, arg in final if op == "COPY" and arg.startswith(f"--from={builder_name} ")]
    assert copied and copied[0].split()[1:] == ["/opt/venv", "/opt/venv"]
    assert not [arg for op, arg in final if op == "RUN" and "pip" in arg], "pip belongs to the builder"
    env = image_env()
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "a read-only root must not be written to"


def _labels() -> dict[str, str]:
    labels: dict[str, str] = {}
    args = {}
    for op, arg in final_stage():
        if op == "ARG" and "=" in arg:
            key, value = arg.split("=", 1)
            args[key] = value
        elif op == "LABEL":
            for item in shlex.split(arg):
                key, value = item.split("=", 1)
                labels[key] = value.replace("${VERSION}", args["VERSION"]).replace(
                    "${SOURCE}", args["SOURCE"]
                )
    return labels


def test_image_carries_oci_labels_that_match_the_project() -> None:
    project = tomllib.loads((DOCKERFILE.parent / "pyproject.toml").read_text())["project"]
    labels = _labels()
    assert labels["org.opencontainers.image.version"] == project["version"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]["text"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    license_text = (DOCKERFILE.parent / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text, "the full licence text, not a pointer to it"


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
    runs = [arg for op, arg in stages()[0] if op == "RUN" and "pip install" in arg]
    assert any("--require-hashes -r requirements.lock" in run for run in runs)
    assert any("--no-deps ." in run for run in runs), "the project itself must not resolve dependencies again"


def image_env() -> dict[str, str]:
    """The final stage's ENV (PATH as the image has it: read it, do not run with it)."""
    env = {}
    for op, arg in final_stage():
        if op == "ENV":
            key, value = arg.split("=", 1)
            env[key] = value
    return env


def run_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OIDCPROXY_")}
    env.update({k: v for k, v in image_env().items() if k != "PATH"})
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


def _read_only_root(command: list[str], tmp: bool = False) -> list[str]:
    """`command` in a private mount namespace whose whole tree is remounted read-only, as Kubernetes'
    readOnlyRootFilesystem leaves a container: no HOME, no TMPDIR, no __pycache__ can be written. With
    `tmp`, a fresh tmpfs on /tmp, as the chart's and deploy/'s emptyDir gives it."""
    mounts = "mount -o remount,bind,ro /" + (" && mount -t tmpfs -o size=1m tmpfs /tmp" if tmp else "")
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        f'{mounts} && exec "$@"',
        "sh",
        *command,
    ]


def _can_make_read_only_root() -> str:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        _read_only_root(["sh", "-c", "! touch /tmp/.oidcproxy-ro-probe 2>/dev/null"]),
        capture_output=True,
        text=True,
        check=False,
    )
    return (
        ""
        if probe.returncode == 0
        else f"cannot remount / read-only here (needs root): {probe.stderr.strip()}"
    )


@pytest.mark.parametrize(
    ("workers", "tmp"),
    [
        ("1", False),  # one process writes nothing at all
        # workers share state through an abstract unix socket: nothing on disk, no /tmp needed
        ("2", False),
    ],
)
def test_entrypoint_serves_on_a_read_only_root(unused_tcp_port: int, workers: str, tmp: bool) -> None:
    reason = _can_make_read_only_root()
    if reason:
        pytest.skip(reason)
    entry = shutil.which("oidcproxy")
    assert entry is not None
    env = run_env(
        OIDCPROXY_HTTP_ADDRESS=f"127.0.0.1:{unused_tcp_port}",
        OIDCPROXY_WORKERS=workers,
        HOME="/nonexistent",  # the image's user has no home
    )
    env.pop("TMPDIR", None)
    process = subprocess.Popen(
        _read_only_root([entry], tmp=tmp), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening" in line, (line, process.stderr.read() if process.poll() is not None else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/ping", timeout=10) as reply:
            assert reply.status == 200
    finally:
        stop(process)
    assert not Path("/tmp/.oidcproxy-ro-probe").exists()
