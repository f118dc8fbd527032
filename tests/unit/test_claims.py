"""Claims -> Identity: dotted paths, group shapes, OKD prefix policies, required claims."""

from __future__ import annotations

import pytest

from oidcproxy.errors import Forbidden
from oidcproxy.oidc.claims import ClaimMapping, claim_path, missing_profile_claims, parse_pairs

ISSUER = "https://idp.example.com"
CLAIMS = {
    "sub": "u-1",
    "email": "alice@example.com",
    "email_verified": True,
    "preferred_username": "alice",
    "realm_access": {"roles": ["admin", "dev"]},
    "groups": "admins, dev ,",
    "upn": "alice@corp",
    "tenant": "t1",
}


def test_dotted_path_reaches_nested_claims_and_exact_key_wins() -> None:
    assert claim_path(CLAIMS, "realm_access.roles") == ["admin", "dev"]
    assert claim_path({"a.b": 1, "a": {"b": 2}}, "a.b") == 1
    assert claim_path(CLAIMS, "realm_access.missing") is None


def test_groups_from_nested_list_and_from_comma_separated_string() -> None:
    nested = ClaimMapping(groups_claim="realm_access.roles").identity(CLAIMS)
    assert nested.groups == ("admin", "dev")
    assert ClaimMapping().identity(CLAIMS).groups == ("admins", "dev")


def test_groups_prefix() -> None:
    assert ClaimMapping(groups_prefix="oidc:").identity(CLAIMS).groups == ("oidc:admins", "oidc:dev")


@pytest.mark.parametrize(
    ("claim", "prefix", "policy", "user"),
    [
        ("email", "", "", "alice@example.com"),  # email: no prefix by default
        ("upn", "", "", f"{ISSUER}#alice@corp"),  # other claims: issuer# (OKD, Kubernetes)
        ("upn", "corp:", "Prefix", "corp:alice@corp"),
        ("upn", "corp:", "", "corp:alice@corp"),  # a prefix given alone applies too
        ("upn", "corp:", "NoPrefix", "alice@corp"),
        ("email", "", "NoPrefix", "alice@example.com"),
        ("nothere", "", "NoPrefix", "u-1"),  # falls back to sub
    ],
)
def test_username_prefix_policies(claim: str, prefix: str, policy: str, user: str) -> None:
    mapping = ClaimMapping(
        username_claim=claim,
        username_prefix=prefix,
        username_prefix_policy=policy,  # type: ignore[arg-type]
        issuer=ISSUER,
    )
    assert mapping.identity(CLAIMS).user == user


def test_required_claims_present_absent_and_wrong() -> None:
    ok = ClaimMapping(required=parse_pairs(["tenant=t1", "realm_access.roles=dev", "email_verified=true"]))
    assert ok.identity(CLAIMS).subject == "u-1"
    with pytest.raises(Forbidden, match="'hd' is missing"):
        ClaimMapping(required=(("hd", "example.com"),)).identity(CLAIMS)
    with pytest.raises(Forbidden, match="'tenant' is not 't2'"):
        ClaimMapping(required=(("tenant", "t2"),)).identity(CLAIMS)


def test_parse_pairs_keeps_equals_in_values() -> None:
    assert parse_pairs(["a=b=c", " k = v "]) == (("a", "b=c"), ("k", "v"))


def test_userinfo_is_needed_only_when_email_or_groups_are_missing() -> None:
    assert not missing_profile_claims(CLAIMS, "email", "groups")
    assert missing_profile_claims({"sub": "x", "email": "a@b"}, "email", "groups")
    assert missing_profile_claims(CLAIMS, "email", "realm_access.nope")
