"""The settings are split by concern, and still named flat and checked as a whole (STYLE C3).

Each options class owns its fields and reports its own problems; Settings holds no option of its own,
so a new option has to be put next to its concern, and one run reports every concern's problems.
"""

from __future__ import annotations

import os

import pytest
from pydantic import BaseModel

from oidcproxy.config import Settings, load_settings
from oidcproxy.config.access import AccessOptions
from oidcproxy.config.cookie import CookieOptions
from oidcproxy.config.edge import EdgeOptions
from oidcproxy.config.pages import PageOptions
from oidcproxy.config.provider import EndpointOptions, ProviderOptions
from oidcproxy.config.server import RuntimeOptions, ServerOptions
from oidcproxy.config.sessions import SessionStoreOptions
from oidcproxy.config.tokens import BearerOptions, ClaimOptions
from oidcproxy.config.websocket import WebSocketOptions
from oidcproxy.errors import ConfigError

CONCERNS: list[type[BaseModel]] = [
    ServerOptions,
    ProviderOptions,
    ClaimOptions,
    EndpointOptions,
    BearerOptions,
    CookieOptions,
    SessionStoreOptions,
    AccessOptions,
    PageOptions,
    RuntimeOptions,
    EdgeOptions,
    WebSocketOptions,
]
# One option a concern, given a value its own problems() refuses.
BAD_VALUE_PER_CONCERN = {
    ServerOptions: [],  # no --upstream at all
    ProviderOptions: ["--provider-max-response-size=1"],
    ClaimOptions: ["--oidc-username-prefix-policy=Prefix"],
    EndpointOptions: ["--auth-extra-param=novalue"],
    BearerOptions: ["--extra-jwt-issuers=novalue"],
    CookieOptions: ["--cookie-expire=0s"],
    SessionStoreOptions: ["--session-store-type=redis"],
    AccessOptions: [],  # neither --email-domain nor --authenticated-emails-file
    PageOptions: ["--custom-templates-dir=/no/such/folder"],
    RuntimeOptions: ["--workers=-1"],
    EdgeOptions: ["--max-header-size=10"],
    WebSocketOptions: ["--websocket-session-check=0s"],
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("OIDCPROXY_"):
            monkeypatch.delenv(key)


def test_every_option_belongs_to_exactly_one_concern_in_the_documented_order() -> None:
    owned = [name for concern in CONCERNS for name in concern.model_fields]
    assert owned == list(Settings.model_fields)  # README table and Helm schema keep their order


def test_one_run_reports_the_problems_of_every_concern_together() -> None:
    argv = [
        "--oidc-issuer-url=https://idp.example.com",
        "--client-id=c",
        "--client-secret=s",
        "--cookie-secret=0123456789abcdef",
    ]
    argv += [arg for args in BAD_VALUE_PER_CONCERN.values() for arg in args]
    with pytest.raises(ConfigError) as caught:
        load_settings(argv)
    named = {line.split(":")[0].split(",")[0] for line in caught.value.problems}
    for concern in CONCERNS:
        flags = {"--" + name.replace("_", "-") for name in concern.model_fields}
        assert named & flags, f"{concern.__name__} reported nothing"
