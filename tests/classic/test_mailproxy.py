"""The login dialog of cluster forwarding: server lines in, commands out."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.cluster.mailproxy import LoggedIn, LoginDialog, Refused, Send, client_reply
from mailwarden.errors import ProtocolError


def test_pop3_sends_user_then_pass_and_ends_with_the_hosts_reply() -> None:
    d = LoginDialog("pop3", b"alice", b"secret")
    assert d.receive_line(b"+OK Dovecot ready.\r\n") == Send(data=b"USER alice\r\n")
    assert d.receive_line(b"+OK\r\n") == Send(data=b"PASS secret\r\n")
    assert d.receive_line(b"+OK Logged in.\r\n") == LoggedIn(reply=b"+OK Logged in.\r\n")


def test_pop3_refusal_of_the_password_is_refused() -> None:
    d = LoginDialog("pop3", b"alice", b"secret")
    d.receive_line(b"+OK\r\n")
    d.receive_line(b"+OK\r\n")
    assert isinstance(d.receive_line(b"-ERR [AUTH] failed\r\n"), Refused)


def test_imap_authenticate_plain_sends_the_initial_token_after_the_continuation() -> None:
    d = LoginDialog("imap", b"alice", b"secret")
    assert d.receive_line(b"* OK ready\r\n") == Send(data=b"M1 AUTHENTICATE PLAIN\r\n")
    step = d.receive_line(b"+ \r\n")
    assert isinstance(step, Send)
    assert base64.b64decode(step.data) == b"\0alice\0secret"
    assert d.receive_line(b"* CAPABILITY IMAP4rev1\r\n") is None
    assert d.receive_line(b"M1 OK Logged in\r\n") == LoggedIn(reply=b"M1 OK Logged in\r\n")


def test_imap_login_quotes_its_arguments() -> None:
    d = LoginDialog("imap", b"alice", b'se"c\\ret', imap_method="login")
    step = d.receive_line(b"* OK ready\r\n")
    assert step == Send(data=b'M1 LOGIN "alice" "se\\"c\\\\ret"\r\n')
    assert isinstance(d.receive_line(b"M1 NO [AUTHENTICATIONFAILED] x\r\n"), Refused)


def test_the_clients_imap_tag_replaces_ours() -> None:
    assert client_reply("imap", b"M1 OK Logged in\r\n", b"a7") == b"a7 OK Logged in\r\n"
    assert client_reply("imap", b"M1 OK Logged in\r\n", b"") == b""
    assert client_reply("pop3", b"+OK Logged in.\r\n", b"") == b"+OK Logged in.\r\n"


def test_credentials_with_line_breaks_are_never_sent() -> None:
    with pytest.raises(ProtocolError):
        LoginDialog("pop3", b"alice", b"x\r\nDELE 1")


@given(st.lists(st.binary(max_size=40), max_size=6), st.sampled_from(["pop3", "imap"]))
def test_any_server_lines_give_a_step_or_a_protocol_error(lines: list[bytes], proto: str) -> None:
    d = LoginDialog("imap" if proto == "imap" else "pop3", b"u", b"p")
    for line in lines:
        try:
            step = d.receive_line(line)
        except ProtocolError:
            return
        if isinstance(step, LoggedIn | Refused):
            return
