"""The session-store options (oauth2-proxy's names carry over), repeatable cookie secrets, and the
problems they report: one line each, naming the option and the fix."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from oidcproxy.config import cookie_key_material, load_settings
from oidcproxy.errors import ConfigError
from oidcproxy.model import FakeClock
from oidcproxy.sessions.cookies import CookiePolicy
from oidcproxy.sessions.keys import KeyRing
from oidcproxy.sessions.store import CookieSessionStore
from tests.unit.test_config import BASE, clean_env
from tests.unit.test_session_cache import NOW, session

__all__ = ["clean_env"]

A, B = "a" * 32, "b" * 32


def problems(*argv: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            [*(a for a in BASE if not a.startswith("--cookie-secret")), "--cookie-secret=" + A, *argv]
        )
    return caught.value.problems


def test_oauth2_proxy_redis_options_are_taken_as_they_are_spelt() -> None:
    s = load_settings(
        [
            *BASE,
            "--session-store-type=redis",
            "--redis-connection-url=rediss://cache:6380/0",
            "--redis-username=proxy",
            "--redis-password=pw",
            "--redis-insecure-skip-tls-verify",
            "--redis-connection-idle-timeout=30",
        ]
    )
    assert s.session_store_type == "redis" and s.redis_configured()
    assert s.redis_password_value() == "pw" and s.redis_connection_idle_timeout == 30
    assert s.redis_timeout == 1.0 and s.cookie_max_chunks == 2 and 0 < s.session_cache_ttl <= 10


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--session-store-type=redis"], "--session-store-type: redis needs --redis-connection-url"),
        (
            ["--redis-use-sentinel", "--redis-sentinel-connection-urls=redis://s:26379"],
            "--redis-sentinel-master-name: needed with --redis-use-sentinel",
        ),
        (["--redis-use-cluster"], "--redis-cluster-connection-urls: needed with --redis-use-cluster"),
        (["--redis-connection-url=http://cache:6379"], "--redis-connection-url: 'http://cache:6379' must"),
        (["--cookie-max-chunks=0"], "--cookie-max-chunks: must be at least 1"),
        (["--redis-timeout=0s"], "--redis-timeout: must be positive"),
    ],
)
def test_each_problem_is_one_line_naming_the_option(argv: list[str], named: str) -> None:
    found = problems(*argv)
    assert any(line.startswith(named) for line in found), found


def test_a_password_in_a_bad_url_is_not_repeated() -> None:
    (line,) = problems("--redis-connection-url=http://:hunter2@cache:6379")
    assert "hunter2" not in line


def test_cookie_secrets_repeat_and_come_from_a_file_one_a_line(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text(f"{B}\n\n{A}\n")
    argv = [a for a in BASE if not a.startswith("--cookie-secret")]
    s = load_settings([*argv, "--cookie-secret=" + A, "--cookie-secret=" + B])
    assert s.cookie_secrets() == [cookie_key_material(A), cookie_key_material(B)]
    s = load_settings([*argv, "--cookie-secret-file=" + str(secrets)])
    assert s.cookie_secrets() == [cookie_key_material(B), cookie_key_material(A)]
    secrets.write_text(f"{B}\ntoo-short\n")
    with pytest.raises(ConfigError) as caught:
        load_settings([*argv, "--cookie-secret-file=" + str(secrets)])
    assert caught.value.problems[0].startswith("--cookie-secret-file: secret 2 must be 16, 24 or 32 bytes")


def test_without_a_store_an_oversized_session_warns_naming_the_options(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CookieSessionStore(KeyRing([A.encode()]), CookiePolicy(), FakeClock(NOW), max_chunks=2)
    with caplog.at_level(logging.WARNING, "oidcproxy.cookies"):
        asyncio.run(store.save(session(groups=4000), {}))
        asyncio.run(store.save(session(groups=4000), {}))
    warned = [r.getMessage() for r in caplog.records if "--cookie-max-chunks" in r.getMessage()]
    assert len(warned) == 1 and "--redis-connection-url" in warned[0]
