"""--allowed-group on top of the email rules."""

from __future__ import annotations

from oidcproxy.authz import Policy
from oidcproxy.model import Identity


def person(*groups: str) -> Identity:
    return Identity("s", "alice@example.com", True, "alice@example.com", "alice", groups)


def test_one_allowed_group_is_enough() -> None:
    policy = Policy.build(["example.com"], [], allowed_groups=["ops", "admins"])
    assert policy.evaluate(person("dev", "admins")).allowed
    refused = policy.evaluate(person("dev"))
    assert not refused.allowed
    assert "--allowed-group" in refused.reason


def test_groups_do_not_override_the_email_rules() -> None:
    policy = Policy.build(["corp.example"], [], allowed_groups=["admins"])
    assert not policy.evaluate(person("admins")).allowed


def test_no_allowed_groups_means_email_rules_alone() -> None:
    assert Policy.build(["example.com"], []).evaluate(person()).allowed
