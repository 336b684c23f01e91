"""Dovecot's auth-policy requests, parsed; the replies Dovecot reads (sans I/O).

The bodies are the ones Dovecot 2.3.19 sent, captured on loopback
(/work/shared/reference/dovecot-auth-policy.md §3); the real Dovecot drives the
whole route in tests/peers/test_dovecot_policy.py.
"""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.errors import ProtocolError
from mailwarden.protocols.dovecot_policy import (
    AttributeNames,
    Command,
    PolicyRequest,
    Verdict,
    parse_command,
    parse_request,
    report_reply,
    verdict_reply,
)

DEFAULT = AttributeNames()
ALLOW_BODY = (
    b'{"device_id":"","login":"pfamd5@example.com","protocol":"imap","pwhash":"02a8",'
    b'"remote":"192.0.2.10","session_id":"SESS1","tls":true}'
)
REPORT_BODY = (
    b'{"device_id":"","login":"pfamd5@example.com","protocol":"imap","pwhash":"02a8",'
    b'"remote":"192.0.2.10","session_id":"SESS1","success":true,"policy_reject":false,'
    b'"tls":true}'
)


def test_dovecots_allow_body_parses_into_the_fields_the_guard_needs() -> None:
    request = parse_request(Command.ALLOW, ALLOW_BODY, DEFAULT)
    assert request == PolicyRequest(
        command=Command.ALLOW,
        login="pfamd5@example.com",
        remote="192.0.2.10",
        pwhash="02a8",
        protocol="imap",
        mechanism="",
        success=False,
        policy_reject=False,
        tls=True,
    )


def test_dovecots_report_body_carries_success_and_policy_reject() -> None:
    request = parse_request(Command.REPORT, REPORT_BODY, DEFAULT)
    assert request.success is True
    assert request.policy_reject is False


@pytest.mark.parametrize(
    ("query", "command"),
    [
        (b"command=allow", Command.ALLOW),
        (b"command=report", Command.REPORT),
        (b"site=a&command=report", Command.REPORT),  # a URL ending in & gets only command=
        (b"command=allow&command=allow", Command.ALLOW),
    ],
)
def test_the_command_is_read_from_the_query_in_either_form(query: bytes, command: Command) -> None:
    assert parse_command(query) is command


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (b"", "required"),
        (b"mode=allow", "required"),
        (b"command=deny", "unknown command"),
        (b"command=allow&command=report", "more than one"),
        (b"command=\xff", "not ASCII"),
    ],
)
def test_a_missing_or_unknown_command_is_a_protocol_error(query: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_command(query)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "JSON object"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deep"),
        (b'{"remote":"192.0.2.1"}', "no 'login'"),
        (b'{"login":7}', "'login' must be a string"),
        (b'{"login":"a","remote":["x"]}', "'remote' must be a string"),
        (b'{"login":"a","pwhash":"zz"}', "hexadecimal"),
        (b'{"login":"a\\u0000b"}', "NUL"),
        (b'{"login":"a","tls":"yes"}', "'tls' must be true or false"),
        (json.dumps({"login": "x" * 1025}).encode(), "longer than"),
        (json.dumps({str(i): "" for i in range(65)}).encode(), "more than 64 keys"),
    ],
)
def test_bad_bodies_are_protocol_errors_with_a_clear_message(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_request(Command.ALLOW, body, DEFAULT)


def test_a_report_without_success_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="'success'"):
        parse_request(Command.REPORT, ALLOW_BODY, DEFAULT)


def test_attribute_names_come_from_the_configuration() -> None:
    names = AttributeNames(login="user", remote="ip", pwhash="pw", protocol="svc")
    body = b'{"user":"Bob","ip":"2001:db8::1","pw":"0ABC","svc":"pop3","success":false}'
    request = parse_request(Command.REPORT, body, names)
    assert (request.login, request.remote, request.pwhash, request.protocol) == (
        "Bob",
        "2001:db8::1",
        "0abc",
        "pop3",
    )
    with pytest.raises(ProtocolError, match="no 'user'"):
        parse_request(Command.ALLOW, ALLOW_BODY, names)


@pytest.mark.parametrize(("mech", "kept"), [("PLAIN", "02a8"), ("login", "02a8"), ("", "02a8")])
def test_a_plaintext_mechanism_keeps_the_pwhash(mech: str, kept: str) -> None:
    body = json.dumps({"login": "a", "pwhash": "02a8", "mech": mech}).encode()
    assert parse_request(Command.ALLOW, body, DEFAULT).pwhash == kept


@pytest.mark.parametrize("mech", ["CRAM-MD5", "SCRAM-SHA-256", "DIGEST-MD5"])
def test_a_challenge_response_mechanism_drops_the_pwhash_which_covers_no_password(
    mech: str,
) -> None:
    body = json.dumps({"login": "a", "pwhash": "0afc", "mech": mech}).encode()
    assert parse_request(Command.ALLOW, body, DEFAULT).pwhash == ""


def test_replies_are_the_json_dovecot_reads() -> None:
    assert json.loads(verdict_reply(Verdict(status=0)).body) == {"status": 0}
    assert json.loads(verdict_reply(Verdict(status=3)).body) == {"status": 3}
    refused = verdict_reply(Verdict(status=-1, message="go away"))
    assert (refused.status, json.loads(refused.body)) == (200, {"status": -1, "msg": "go away"})
    assert refused.content_type == "application/json"
    assert report_reply().status == 200


@given(st.binary(max_size=300))
def test_any_body_parses_or_raises_protocol_error(body: bytes) -> None:
    for command in Command:
        try:
            request = parse_request(command, body, DEFAULT)
        except ProtocolError:
            continue
        assert isinstance(request.login, str)


JSON_VALUES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.sampled_from(["0a1b", "0ABC", "PLAIN", "CRAM-MD5"])
    | st.lists(st.integers(), max_size=3)
)


@given(
    st.dictionaries(
        st.sampled_from(["login", "remote", "pwhash", "protocol", "mech", "success", "tls", "x"]),
        JSON_VALUES,
        max_size=6,
    )
)
def test_any_json_object_parses_or_raises_protocol_error(data: dict[str, object]) -> None:
    body = json.dumps(data).encode()
    for command in Command:
        try:
            request = parse_request(command, body, DEFAULT)
        except ProtocolError:
            continue
        assert request.login == data["login"]
        assert all(c in "0123456789abcdef" for c in request.pwhash)


@given(st.binary(max_size=80))
def test_any_query_names_a_command_or_raises_protocol_error(query: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        assert isinstance(parse_command(query), Command)
