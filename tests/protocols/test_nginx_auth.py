"""nginx mail auth_http: request headers in, reply headers out, no server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.errors import ProtocolError
from mailwarden.model import Accepted, Account, Denied, DenyReason, Password, Unavailable
from mailwarden.protocols import nginx_auth

BACKENDS = {
    "mx1": {"imap": "127.0.0.1:1143", "pop3": "127.0.0.1:1110"},
    "mx2": {"imap": "127.0.0.2:2143", "pop3": "127.0.0.2:2110", "smtp": "127.0.0.2:25"},
}


def request(protocol: str = "imap", attempt: str = "1") -> nginx_auth.NginxRequest:
    return nginx_auth.parse_headers(
        {
            "auth-method": "plain",
            "auth-user": "alice",
            "auth-pass": "se%20cret%25",
            "auth-protocol": protocol,
            "auth-login-attempt": attempt,
            "client-ip": "192.0.2.7",
        }
    )


def reply(outcome: Accepted | Denied | Unavailable, req: nginx_auth.NginxRequest) -> dict[str, str]:
    return dict(
        nginx_auth.reply(
            outcome, req, backends=BACKENDS, default_host="mx1", disabled_text="Account not enabled"
        )
    )


def test_headers_parse_and_the_escaped_password_is_decoded() -> None:
    req = request()
    assert req.user == "alice"
    assert req.password == Password(b"se cret%")
    assert (req.protocol, req.attempt, req.client_ip) == ("imap", 1, "192.0.2.7")


@pytest.mark.parametrize(
    "headers",
    [
        {"auth-pass": "x", "auth-protocol": "imap"},
        {"auth-user": "a", "auth-protocol": "imap"},
        {"auth-user": "a", "auth-pass": "x", "auth-protocol": "nntp"},
        {"auth-user": "a", "auth-pass": "x", "auth-protocol": "imap", "auth-login-attempt": "x"},
    ],
)
def test_incomplete_or_wrong_headers_raise_protocol_error(headers: dict[str, str]) -> None:
    with pytest.raises(ProtocolError):
        nginx_auth.parse_headers(headers)


@given(
    st.dictionaries(
        st.sampled_from(
            ["auth-user", "auth-pass", "auth-protocol", "auth-login-attempt", "client-ip"]
        ),
        st.text(),
    )
)
def test_any_headers_parse_or_raise_protocol_error(headers: dict[str, str]) -> None:
    try:
        req = nginx_auth.parse_headers(headers)
    except ProtocolError:
        return
    assert req.protocol in nginx_auth.PROTOCOLS


#: Header values as nginx may send them: any text, digits of every script.
_VALUES = st.one_of(
    st.text(),
    st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=8),
    st.sampled_from(["1", "\u00b2", "\u0663", "\uff11", "99999999999", "%ff", "%C3%A9"]),
)
_OTHERS = ("auth-method", "auth-user", "auth-pass", "auth-protocol", "client-ip")


@given(
    st.fixed_dictionaries(
        {"auth-login-attempt": _VALUES}, optional=dict.fromkeys(_OTHERS, _VALUES)
    ).map(lambda h: {"auth-user": "alice", "auth-pass": "x", "auth-protocol": "imap", **h})
)
def test_any_header_value_parses_or_raises_protocol_error_and_the_request_is_usable(
    headers: dict[str, str],
) -> None:
    try:
        req = nginx_auth.parse_headers(headers)
    except ProtocolError:
        return
    assert 0 <= req.attempt <= 1000
    assert nginx_auth.wait_seconds(req.attempt) >= 1
    assert isinstance(req.password.value, bytes)
    req.user.encode("utf-8")


@pytest.mark.parametrize("attempt", ["\u00b2", "\u0663", "\uff11", "1\u00b2"])
def test_a_login_attempt_in_non_ascii_digits_is_a_protocol_error(attempt: str) -> None:
    with pytest.raises(ProtocolError, match="Auth-Login-Attempt"):
        request(attempt=attempt)


@pytest.mark.parametrize(
    ("host", "protocol", "server", "port"),
    [
        ("mx1", "imap", "127.0.0.1", "1143"),
        ("mx2", "pop3", "127.0.0.2", "2110"),
        (None, "pop3", "127.0.0.1", "1110"),
    ],
)
def test_success_routes_to_the_backend_of_the_accounts_mail_host(
    host: str | None, protocol: str, server: str, port: str
) -> None:
    account = Account(uid="alice", mail_host=host)
    headers = reply(Accepted(user="alice", account=account), request(protocol))
    assert headers == {
        "Auth-Status": "OK",
        "Auth-Server": server,
        "Auth-Port": port,
        "Auth-User": "alice",
    }


def test_a_protocol_with_no_backend_is_a_temporary_failure_not_a_wrong_password() -> None:
    headers = reply(Accepted(user="alice", account=Account(uid="alice")), request("smtp"))
    assert headers["Auth-Status"] == nginx_auth.TEMPFAIL
    assert headers["Auth-Error-Code"] == "451 4.3.0"


def test_failures_wait_longer_with_each_attempt_up_to_the_cap() -> None:
    denied = Denied(reason=DenyReason.CREDENTIALS)
    waits = [int(reply(denied, request(attempt=str(n)))["Auth-Wait"]) for n in (1, 2, 3, 50)]
    assert waits == sorted(waits) and waits[0] < waits[2]
    assert waits[-1] == nginx_auth.MAX_WAIT
    assert reply(denied, request())["Auth-Status"] == "Invalid login or password"


def test_disabled_text_only_after_a_proven_password() -> None:
    proven = Denied(reason=DenyReason.DISABLED, message="disabled")
    assert reply(proven, request())["Auth-Status"] == "Account not enabled"
    unproven = Denied(reason=DenyReason.DISABLED)
    assert reply(unproven, request())["Auth-Status"] == "Invalid login or password"


def test_smtp_temporary_failure_carries_the_451_error_code() -> None:
    headers = reply(Unavailable(detail="down"), request("smtp"))
    assert headers["Auth-Status"] == nginx_auth.TEMPFAIL
    assert headers["Auth-Error-Code"] == "451 4.3.0"
    assert "Auth-Error-Code" not in reply(Unavailable(detail="down"), request("imap"))
