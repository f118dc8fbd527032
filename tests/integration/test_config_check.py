"""`oidcproxy check` as an operator runs it: a misspelt restriction is an error, not a valid configuration."""

from __future__ import annotations

import os
import subprocess
import sys

ARGS = [
    "--upstream=http://127.0.0.1:8080/",
    "--oidc-issuer-url=https://idp.example.com",
    "--client-id=c",
    "--client-secret=s",
    "--cookie-secret=0123456789abcdef",
    "--email-domain=example.com",
]


def check(**variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OIDCPROXY_")}
    return subprocess.run(
        [sys.executable, "-m", "oidcproxy", "check", *ARGS],
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_refuses_a_misspelt_variable_with_exit_2() -> None:
    done = check(OIDCPROXY_ALOWED_GROUP="admins")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "oidcproxy: OIDCPROXY_ALOWED_GROUP: not an option; did you mean OIDCPROXY_ALLOWED_GROUP?"
    ]
    assert "valid" not in done.stdout


def test_check_refuses_an_option_given_twice_under_its_two_names() -> None:
    done = check(OIDCPROXY_ALLOWED_GROUP="admins", OIDCPROXY_ALLOWED_GROUPS="everyone")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "oidcproxy: OIDCPROXY_ALLOWED_GROUP and OIDCPROXY_ALLOWED_GROUPS: the same option twice; keep one"
    ]
