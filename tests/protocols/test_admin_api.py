"""The admin API's pure request parsing: any JSON gets a result or a clear error."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mailwarden.accounts.rules import account_to_json, apply_json
from mailwarden.errors import AccountError, ProtocolError
from mailwarden.model import Account
from mailwarden.protocols import admin_api
from mailwarden.schemes.common import check_password

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=8,
)
keys = st.sampled_from(
    [
        "uid",
        "mail",
        "password",
        "generate",
        "scheme",
        "services",
        "service.imap",
        "status",
        "quota_bytes",
        "passdb_fields",
        "profile",
        "profile.c",
        "alternate_addresses",
        "x",
    ]
) | st.text(max_size=12)
bodies = st.dictionaries(keys, json_values, max_size=6)


@given(bodies)
def test_any_create_body_parses_or_fails_with_a_message(body: dict[str, Any]) -> None:
    try:
        create = admin_api.parse_create(body)
        apply_json(create.account, create.changes)
    except (ProtocolError, AccountError) as exc:
        assert str(exc)


@given(bodies)
def test_any_patch_body_applies_or_fails_with_a_message(body: dict[str, Any]) -> None:
    base = Account(uid="alice", mail="alice@example.com", passdb_fields={"nologin": ""})
    try:
        new = apply_json(base, admin_api.parse_update(body, uid="alice"))
    except (ProtocolError, AccountError) as exc:
        assert str(exc)
    else:
        assert new.uid == "alice"
        assert new.password == base.password


@given(bodies)
def test_any_password_body_parses_or_fails_with_a_message(body: dict[str, Any]) -> None:
    try:
        change = admin_api.parse_password(body)
    except ProtocolError as exc:
        assert str(exc)
    else:
        assert (change.password is None) == (body.get("generate") is True)
        if change.password is not None:
            check_password(change.password)  # the hasher will take it


@given(st.text(max_size=8), st.text(max_size=8))
def test_a_password_with_a_nul_byte_is_a_protocol_error_not_a_hashing_crash(
    before: str, after: str
) -> None:
    for parse in (admin_api.parse_password, admin_api.parse_create):
        try:
            parse({"uid": "bob", "password": before + "\x00" + after})
        except ProtocolError as exc:
            assert "NUL" in str(exc)
        else:
            raise AssertionError("a NUL byte was accepted")


def test_get_output_patched_back_is_the_same_account() -> None:
    account = Account(
        uid="alice",
        mail="alice@example.com",
        services={"pop3": False},
        passdb_fields={"nologin": "", "reason": "x"},
        quota_bytes=10,
    )
    assert apply_json(account, admin_api.parse_update(account_to_json(account), uid="ALICE")) == (
        account
    )


@given(st.text(max_size=60))
def test_route_never_raises(path: str) -> None:
    r = admin_api.route("/api/v1/accounts/" + path)
    if r is not None and path:
        assert r.uid and "/" not in r.uid
    assert admin_api.route("/api/v1/accountsx" + path) is None
