"""The claims rules, as pure functions over fixed times."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.oauth2.claims import (
    ClaimRules,
    TokenIdentity,
    TokenRefused,
    check_claims,
    token_scopes,
)
from tests.oauth2.issuer import AUDIENCE, ISSUER, NOW, claims

RULES = ClaimRules(issuer=ISSUER, audiences=(AUDIENCE,), scopes=("mail",), leeway=30.0)


def reason(result: TokenIdentity | TokenRefused) -> str:
    assert isinstance(result, TokenRefused), result
    return result.reason


def test_a_good_token_gives_its_user_subject_and_expiry() -> None:
    assert check_claims(claims(), RULES, NOW) == TokenIdentity(
        username="alice@example.com", subject="5f1c-alice", expires_at=NOW + 600
    )


@pytest.mark.parametrize(
    ("name", "username"),
    [("email", "alice@example.com"), ("preferred_username", "alice"), ("sub", "5f1c-alice")],
)
def test_the_username_claim_is_configurable(name: str, username: str) -> None:
    rules = ClaimRules(issuer=ISSUER, audiences=(AUDIENCE,), username_claim=name)
    result = check_claims(claims(), rules, NOW)
    assert isinstance(result, TokenIdentity)
    assert result.username == username


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"exp": int(NOW) - 31}, "expired"),
        ({"exp": None}, "no exp claim"),
        ({"exp": "tomorrow"}, "exp is not a number"),
        ({"exp": True}, "exp is not a number"),
        ({"exp": float("nan")}, "exp is not a number"),
        ({"exp": 10**400}, "exp is not a number"),
        ({"nbf": float("inf")}, "nbf is not a number"),
        ({"nbf": int(NOW) + 31}, "not valid yet"),
        ({"iat": int(NOW) + 31}, "issued in the future"),
        ({"iss": "https://evil.example.test/"}, "wrong issuer"),
        ({"iss": None}, "wrong issuer"),
        ({"aud": "https://webmail.example.test/"}, "wrong audience"),
        ({"aud": ["a", "b"]}, "wrong audience"),
        ({"aud": None}, "wrong audience"),
        ({"aud": 7}, "wrong audience"),
        ({"scope": "openid profile"}, "scope missing: mail"),
        ({"scope": None}, "scope missing: mail"),
        ({"email": None}, "no email claim"),
        ({"email": ""}, "no email claim"),
        ({"email": ["alice@example.com"]}, "no email claim"),
    ],
)
def test_a_token_that_breaks_a_rule_is_refused(changes: dict[str, Any], why: str) -> None:
    assert reason(check_claims(claims(**changes), RULES, NOW)) == why


def test_the_leeway_allows_that_much_clock_skew_and_no_more() -> None:
    assert isinstance(check_claims(claims(exp=int(NOW) - 29), RULES, NOW), TokenIdentity)
    assert isinstance(check_claims(claims(nbf=int(NOW) + 29), RULES, NOW), TokenIdentity)
    assert isinstance(check_claims(claims(iat=int(NOW) + 29), RULES, NOW), TokenIdentity)
    strict = ClaimRules(issuer=ISSUER, audiences=(AUDIENCE,), leeway=0.0)
    assert reason(check_claims(claims(exp=int(NOW)), strict, NOW)) == "expired"


def test_one_matching_audience_of_several_is_enough() -> None:
    token = claims(aud=["https://webmail.example.test/", AUDIENCE])
    assert isinstance(check_claims(token, RULES, NOW), TokenIdentity)


def test_every_configured_scope_is_required() -> None:
    rules = ClaimRules(issuer=ISSUER, audiences=(AUDIENCE,), scopes=("mail", "imap"))
    assert reason(check_claims(claims(scope="mail"), rules, NOW)) == "scope missing: imap"
    assert isinstance(check_claims(claims(scope="imap mail x"), rules, NOW), TokenIdentity)


def test_scopes_are_read_from_a_string_or_a_list() -> None:
    assert token_scopes({"scope": "a b  c"}) == {"a", "b", "c"}
    assert token_scopes({"scp": ["a", "b", 3]}) == {"a", "b"}
    assert token_scopes({"scope": 3}) == frozenset()


def test_an_introspection_answer_must_be_active() -> None:
    answer = {**claims(), "active": True}
    assert isinstance(check_claims(answer, RULES, NOW, introspected=True), TokenIdentity)
    for active in (False, "true", None):
        inactive = {**claims(), "active": active}
        assert reason(check_claims(inactive, RULES, NOW, introspected=True)).startswith("inactive")


def test_an_introspection_answer_may_leave_out_exp_iss_and_aud_but_not_contradict_them() -> None:
    bare = {"active": True, "email": "alice@example.com", "scope": "mail"}
    result = check_claims(bare, RULES, NOW, introspected=True)
    assert result == TokenIdentity(username="alice@example.com")
    wrong = {**bare, "aud": "https://webmail.example.test/"}
    assert reason(check_claims(wrong, RULES, NOW, introspected=True)) == "wrong audience"
    expired = {**bare, "exp": int(NOW) - 100}
    assert reason(check_claims(expired, RULES, NOW, introspected=True)) == "expired"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
CLAIM_NAMES = st.sampled_from(
    ["iss", "aud", "exp", "nbf", "iat", "scope", "scp", "email", "active"]
)


@given(st.dictionaries(CLAIM_NAMES | st.text(max_size=8), JSON, max_size=10), st.booleans())
def test_any_claims_give_an_identity_or_a_refusal_never_an_exception(
    data: dict[str, Any], introspected: bool
) -> None:
    result = check_claims(data, RULES, NOW, introspected=introspected)
    assert isinstance(result, TokenIdentity | TokenRefused)
