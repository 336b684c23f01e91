"""The Nauthilus request/response mapping: JSON in, status/headers/body out, no server."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.errors import ProtocolError
from mailwarden.model import (
    Accepted,
    Account,
    BearerToken,
    Denied,
    DenyReason,
    NotFound,
    Password,
    Unavailable,
    UserRecord,
)
from mailwarden.protocols import nauthilus as proto
from mailwarden.protocols.http_api import Reply

ALICE = Account(uid="alice", mail="alice@example.com", password="{PLAIN}x", mail_host="mx1")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def header(reply: Reply, name: str) -> str | None:
    return dict(reply.headers).get(name)


def reply_for(outcome: Accepted | Denied | Unavailable) -> Reply:
    return proto.auth_reply(
        outcome,
        session="s1",
        mapping={"rnsMSMailPath": "userdb:mail", "Proxy-Host": "mail_host", "uid": "uid"},
        userdb=lambda a: {"mail": "maildir:~/Maildir"},
        disabled_text="Account not enabled",
    )


def test_the_seed_scripts_body_parses_with_service_and_unknown_fields_ignored() -> None:
    body = json.dumps(
        {
            "username": "alice",
            "password": "secret",
            "client_ip": "192.0.2.1",
            "client_port": "41000",
            "client_id": "Thunderbird",
            "local_ip": "192.0.2.10",
            "local_port": "993",
            "service": "IMAP",
            "method": "plain",
            "ssl": "TLSv1.3",
            "ssl_protocol": "TLSv1.3",
            "ssl_client_verify": "NONE",
            "something_new": {"nested": True},
        }
    ).encode()
    request = proto.parse_request(proto.parse_json(body), need_password=True)
    assert request.username == "alice"
    assert request.password == Password(b"secret")
    assert request.service == "imap"
    assert (request.client_ip, request.client_port) == ("192.0.2.1", 41000)
    assert request.local_port == 993
    assert request.secured is True
    attempt = request.attempt(session="s")
    assert attempt.frontend == "http" and attempt.remote_ip == "192.0.2.1"


@pytest.mark.parametrize("method", ["xoauth2", "OAUTHBEARER"])
def test_a_caller_that_names_an_oauth_method_sends_a_bearer_token(method: str) -> None:
    data = {"username": "alice", "password": "eyJ.token.sig", "method": method}
    request = proto.parse_request(data, need_password=True)
    assert request.password == BearerToken("eyJ.token.sig")
    assert request.attempt(session="s").mechanism == method.upper()


def test_any_other_method_sends_a_password() -> None:
    for method in ("plain", "login", None):
        data = {"username": "alice", "password": "eyJ.token.sig", "method": method}
        assert proto.parse_request(data, need_password=True).password == Password(b"eyJ.token.sig")


def test_an_oauth_method_without_a_password_is_still_missing_it() -> None:
    with pytest.raises(ProtocolError, match="'password' is required"):
        proto.parse_request({"username": "alice", "method": "xoauth2"}, need_password=True)


def test_protocol_is_read_when_service_is_absent() -> None:
    data = {"username": "bob", "password": "x", "protocol": "pop3"}
    assert proto.parse_request(data, need_password=True).service == "pop3"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b"\xff", "not UTF-8"),
        (b'{"password": "x"}', "'username' is required"),
        (b'{"username": "a"}', "'password' is required"),
        (b'{"username": "a", "password": 5}', "'password' must be a string"),
        (b'{"username": "a", "password": "x", "client_port": "99999"}', "port number"),
        (b'{"username": ["a"], "password": "x"}', "'username' must be a string"),
    ],
)
def test_malformed_bodies_raise_a_clear_protocol_error(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        proto.parse_request(proto.parse_json(body), need_password=True)


@given(st.binary(max_size=300))
def test_any_body_parses_or_raises_protocol_error(body: bytes) -> None:
    try:
        request = proto.parse_request(proto.parse_json(body), need_password=False)
    except ProtocolError:
        return
    assert request.username


@given(st.dictionaries(st.text(max_size=12), st.recursive(st.none() | st.text(), st.lists)))
def test_any_json_object_parses_or_raises_protocol_error(data: dict[str, object]) -> None:
    try:
        request = proto.parse_request(data, need_password=False)
    except ProtocolError:
        return
    assert request.username == data["username"]


#: Strings as a JSON encoder may write them: any text, lone surrogates included
#: (``json.dumps`` turns those into ``\\udXXX`` escapes, which ``json.loads`` accepts).
_STRINGS = st.one_of(
    st.text(st.characters(categories=["L", "N", "Cc"]), max_size=8),
    # (st.text() leaves surrogates out, so the characters are joined by hand.)
    st.lists(
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(),
        min_size=1,
        max_size=4,
    ).map("".join),
)
_FIELDS = st.sampled_from(["username", "password", "service", "client_ip", "client_port", "x"])


@given(
    st.dictionaries(_FIELDS, st.one_of(_STRINGS, st.integers(), st.none(), st.booleans())),
    st.booleans(),
)
def test_any_json_body_with_any_strings_parses_to_a_usable_request_or_protocol_error(
    data: dict[str, object], need_password: bool
) -> None:
    body = json.dumps(data).encode()
    try:
        request = proto.parse_request(proto.parse_json(body), need_password=need_password)
    except ProtocolError:
        return
    # Everything a parsed request carries can be encoded: hashing, SQLite and the
    # log never meet a string they cannot write.
    request.username.encode("utf-8")
    request.service.encode("utf-8")
    assert request.password is None or isinstance(request.password.value, bytes)
    request.attempt(session="s")


@pytest.mark.parametrize("escaped", ["\\ud800", "\\udfff", "a\\udc80b", "\\ude00\\ud83d"])
@pytest.mark.parametrize("field", ["username", "password", "service"])
def test_a_lone_surrogate_in_any_field_is_a_clear_protocol_error(escaped: str, field: str) -> None:
    fields = {"username": "alice", "password": "x", "service": "imap"}
    body = json.dumps(fields).replace(f'"{fields[field]}"', f'"{escaped}"', 1).encode()
    with pytest.raises(ProtocolError, match="lone surrogate"):
        proto.parse_request(proto.parse_json(body), need_password=True)


@pytest.mark.parametrize("field", ["client_port", "x"])
def test_a_number_too_long_for_int_is_a_protocol_error(field: str) -> None:
    body = b'{"username": "a", "password": "x", "%s": 1%s}' % (field.encode(), b"0" * 5000)
    with pytest.raises(ProtocolError, match="number too long"):
        proto.parse_json(body)


@given(
    st.dictionaries(
        st.sampled_from(list(proto.REQUEST_HEADERS)),
        st.one_of(
            st.text(max_size=12),
            st.lists(st.sampled_from(["%ff", "%C3", "%e9", "%00", "%0a", "a", "%"])).map("".join),
        ),
    ),
    st.booleans(),
)
def test_any_header_mode_request_parses_to_a_usable_request_or_protocol_error(
    headers: dict[str, str], encoded: bool
) -> None:
    if encoded:
        headers["x-auth-password-encoded"] = "1"
    try:
        request = proto.parse_request(proto.fields_from_headers(headers), need_password=False)
    except ProtocolError:
        return
    request.username.encode("utf-8")
    request.service.encode("utf-8")
    request.attempt(session="s")


def test_a_surrogate_pair_is_one_character_and_accepted() -> None:
    body = b'{"username": "a\\ud83d\\ude00", "password": "\\ud83d\\ude00"}'
    request = proto.parse_request(proto.parse_json(body), need_password=True)
    assert request.username == "a\U0001f600"
    assert request.password == Password("\U0001f600".encode())


def test_success_reply_has_the_headers_and_list_attributes_the_seed_reads() -> None:
    reply = reply_for(Accepted(user="alice", account=ALICE))
    assert reply.status == 200
    assert header(reply, "Auth-Status") == "OK"
    assert header(reply, "Auth-User") == "alice"
    assert header(reply, "X-Nauthilus-Session") == header(reply, "X-Mailwarden-Session") == "s1"
    body = json.loads(reply.body)
    assert body["ok"] is True
    assert body["attributes"] == {
        "rnsMSMailPath": ["maildir:~/Maildir"],
        "Proxy-Host": ["mx1"],
        "uid": ["alice"],
    }


def test_wrong_password_and_unknown_user_get_identical_replies() -> None:
    wrong = reply_for(Denied(reason=DenyReason.CREDENTIALS, user="alice"))
    unknown = reply_for(Denied(reason=DenyReason.CREDENTIALS))
    blocked = reply_for(Denied(reason=DenyReason.BLOCKED))
    assert wrong == unknown == blocked
    assert wrong.status == 403 and wrong.body == b"null"
    assert header(wrong, "Auth-Status") == "Invalid login or password"


def test_disabled_account_gets_the_configured_disabled_text() -> None:
    reply = reply_for(Denied(reason=DenyReason.DISABLED, message="Account disabled"))
    assert reply.status == 403
    assert header(reply, "Auth-Status") == "Account not enabled"


def test_a_disabled_denial_without_a_proven_password_looks_like_a_wrong_password() -> None:
    reply = reply_for(Denied(reason=DenyReason.SERVICE_DISABLED))
    assert header(reply, "Auth-Status") == "Invalid login or password"


def test_temporary_failure_is_500_with_a_generic_body_and_the_request_id_never_a_denial() -> None:
    reply = reply_for(Unavailable(detail="ldap://10.0.0.5:389/: Can't contact LDAP server"))
    assert reply.status == 500
    assert json.loads(reply.body) == {
        "error": "Temporary server problem, try again later",
        "request_id": "s1",
    }
    assert header(reply, "Auth-Status") == "Temporary server problem, try again later"


def test_lookup_replies_found_not_found_and_unavailable() -> None:
    found = proto.lookup_reply(
        UserRecord(user="alice", account=ALICE, fields={"home": "/h"}),
        session="s",
        mapping={"home": "userdb:home"},
    )
    assert found.status == 200 and json.loads(found.body)["attributes"] == {"home": ["/h"]}
    assert proto.lookup_reply(NotFound(), session="s", mapping={}).status == 403
    assert proto.lookup_reply(Unavailable(detail="x"), session="s", mapping={}).status == 500


def test_list_accounts_is_json_or_crlf_lines_by_accept() -> None:
    as_json = proto.list_reply(["a", "b"], accept="application/json", session="s")
    assert json.loads(as_json.body) == ["a", "b"]
    as_text = proto.list_reply(["a", "b"], accept="text/plain", session="s")
    assert as_text.body == b"a\r\nb\r\n" and as_text.content_type == "text/plain"


def test_default_attributes_never_publish_the_password() -> None:
    attrs = proto.attributes(ALICE, {}, userdb={}, passdb={})
    assert "password" not in attrs
    assert "{PLAIN}x" not in json.dumps(attrs)
    assert attrs["uid"] == ["alice"]


def test_basic_auth_needs_exactly_the_configured_credentials() -> None:
    assert proto.basic_auth_ok(basic("dovecot", "pw"), username="dovecot", password="pw")
    assert not proto.basic_auth_ok(basic("dovecot", "px"), username="dovecot", password="pw")
    assert not proto.basic_auth_ok(basic("other", "pw"), username="dovecot", password="pw")
    assert not proto.basic_auth_ok(None, username="dovecot", password="pw")
    assert not proto.basic_auth_ok("Basic !!!", username="dovecot", password="pw")


def test_with_no_credentials_configured_nothing_is_accepted() -> None:
    assert not proto.basic_auth_ok(basic("", ""), username="", password="")
    assert not proto.bearer_ok("Bearer ", token="")


def test_bearer_token_is_checked() -> None:
    assert proto.bearer_ok("Bearer t0k", token="t0k")
    assert not proto.bearer_ok("Bearer nope", token="t0k")
    assert not proto.bearer_ok(basic("t0k", ""), token="t0k")


def test_header_mode_never_sends_secret_looking_attributes() -> None:
    reply = proto.auth_reply(
        Accepted(user="alice", account=ALICE),
        session="s",
        mapping={"userPassword": "uid", "totp_secret": "uid", "Proxy-Host": "mail_host"},
        userdb=lambda a: {},
        disabled_text="x",
    )
    headers = dict(proto.as_header_reply(reply).headers)
    assert headers["X-Nauthilus-Proxy-Host"] == "mx1"
    assert not any("assword" in n or "totp" in n for n in headers)


def test_header_fields_are_url_decoded_and_base64url_passwords_understood() -> None:
    fields = proto.fields_from_headers(
        {"auth-user": "a%40b", "auth-pass": "c2VjcmV0", "x-auth-password-encoded": "1"}
    )
    assert fields == {"username": "a@b", "password": "secret"}
