"""The client side of Dovecot's auth protocols against our own server codecs.

What :mod:`mailwarden.protocols.dovecot_libauth` writes is fed to the server codecs
(:mod:`~mailwarden.protocols.dovecot_client`, :mod:`~mailwarden.protocols.dovecot_master`),
and what they answer is fed back, whole and byte by byte.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.errors import ProtocolError
from mailwarden.protocols import dovecot_libauth as libauth
from mailwarden.protocols.dovecot_client import AuthClientConnection, AuthRequest, ClientCpid
from mailwarden.protocols.dovecot_client import handshake as client_handshake
from mailwarden.protocols.dovecot_master import AuthMasterConnection, UserLookup
from mailwarden.protocols.dovecot_master import handshake as master_handshake

GREETING = client_handshake(
    [("PLAIN", ("plaintext",)), ("LOGIN", ("plaintext",))], spid=42, cuid=7, cookie=bytes(16)
)


def auth_request(**kwargs: object) -> tuple[AuthClientConnection, AuthRequest]:
    """The AUTH a client_request() makes, as the server codec reads it."""
    server = AuthClientConnection(mechanisms=["PLAIN", "LOGIN"])
    server.receive_data(libauth.client_request(**kwargs))  # type: ignore[arg-type]
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    assert isinstance(events[1], ClientCpid)
    assert isinstance(events[2], AuthRequest)
    return server, events[2]


def client_reply(line: bytes, *, bytewise: bool = False) -> libauth.AuthReply | None:
    replies = libauth.ClientReplies()
    data = GREETING + line
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for chunk in chunks:
        replies.receive_data(chunk)
    reply = replies.next_event()
    assert replies.mechanisms == {"PLAIN", "LOGIN"}
    return reply


def test_the_server_reads_the_plain_request_with_its_parameters() -> None:
    _, request = auth_request(
        pid=1234,
        mechanism="PLAIN",
        service="pop3",
        params=[("rip", "192.0.2.7"), ("lip", "192.0.2.1")],
        initial_response=libauth.plain_response("alice\tx", b"secret"),
    )
    assert request.id == libauth.REQUEST_ID
    assert request.service == "pop3"
    assert (request.rip, request.lip) == ("192.0.2.7", "192.0.2.1")
    assert request.initial_response == b"\0alice\tx\0secret"


@pytest.mark.parametrize("bytewise", [False, True])
def test_an_ok_reply_gives_the_user_and_the_fields_in_order(bytewise: bool) -> None:
    server, request = auth_request(pid=1, mechanism="PLAIN", service="pop3")
    line = server.ok(
        request.id,
        "alice",
        [("proxy", None), ("host", "mx\t1"), ("auth_user", "admin")],
    )
    reply = client_reply(line, bytewise=bytewise)
    assert reply == libauth.AuthOk(
        user="alice", fields=(("proxy", None), ("host", "mx\t1"), ("auth_user", "admin"))
    )


@pytest.mark.parametrize(
    ("code", "temporary"), [(None, False), ("user_disabled", False), ("temp_fail", True)]
)
def test_a_fail_reply_says_whether_it_is_temporary(code: str | None, temporary: bool) -> None:
    server, request = auth_request(pid=1, mechanism="PLAIN", service="pop3")
    reply = client_reply(server.fail(request.id, user="alice", code=code, reason="why"))
    assert isinstance(reply, libauth.AuthFail)
    assert (reply.user, reply.code, reply.reason) == ("alice", code, "why")
    assert reply.temporary is temporary


def test_a_reply_before_the_whole_handshake_is_not_a_reply_yet() -> None:
    replies = libauth.ClientReplies()
    replies.receive_data(GREETING[:-5])
    assert replies.next_event() is None


def test_the_connection_closing_before_the_reply_is_a_protocol_error() -> None:
    replies = libauth.ClientReplies()
    replies.receive_data(GREETING)
    replies.receive_data(b"")
    with pytest.raises(ProtocolError, match="closed"):
        replies.next_event()


@pytest.mark.parametrize(
    "data",
    [
        b"VERSION\t2\t0\n",  # another major version
        b"SPID\t1\n",  # not a Dovecot handshake
        GREETING + b"OK\t2\tuser=alice\n",  # another request
        GREETING + b"OK\t1\n",  # no user=
        GREETING + b"BYE\t1\n",
    ],
)
def test_anything_else_from_the_server_is_a_protocol_error(data: bytes) -> None:
    replies = libauth.ClientReplies()
    replies.receive_data(data)
    with pytest.raises(ProtocolError):
        replies.next_event()


@given(st.binary(max_size=300))
def test_any_server_output_gives_a_reply_none_or_a_protocol_error(data: bytes) -> None:
    for replies in (libauth.ClientReplies(), libauth.MasterReplies()):
        replies.receive_data(data)
        replies.receive_data(b"")
        with contextlib.suppress(ProtocolError):
            replies.next_event()


# --------------------------------------------------------------------------- master


def user_lookup(user: str, **kwargs: object) -> tuple[AuthMasterConnection, UserLookup]:
    server = AuthMasterConnection(userdb_only=True)
    server.receive_data(libauth.user_request(user, **kwargs))  # type: ignore[arg-type]
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    assert isinstance(events[1], UserLookup)
    return server, events[1]


def master_reply(reply: bytes) -> libauth.UserReply | None:
    replies = libauth.MasterReplies()
    for i in range(len(data := master_handshake(spid=42) + reply)):
        replies.receive_data(data[i : i + 1])
    return replies.next_event()


def test_a_user_lookup_round_trips_with_its_extension_parameter() -> None:
    server, lookup = user_lookup(
        "al\tice", service="pop3", params=[("mailwarden_login_shell", None)]
    )
    assert (lookup.user, lookup.service) == ("al\tice", "pop3")
    assert ("mailwarden_login_shell", None) in lookup.extra_params
    line = server.user_found(lookup.id, "alice", [("home", "/h"), ("flag", None)])
    assert master_reply(line) == libauth.UserFound(
        user="alice", fields=(("home", "/h"), ("flag", None))
    )


def test_notfound_and_fail_are_told_apart() -> None:
    server, lookup = user_lookup("nobody", service="pop3")
    assert master_reply(server.not_found(lookup.id)) == libauth.UserNotFound()
    server, lookup = user_lookup("alice", service="pop3")
    assert master_reply(server.fail(lookup.id, "db down")) == libauth.LookupFailed(reason="db down")


def test_requests_need_a_service() -> None:
    with pytest.raises(ValueError, match="service"):
        libauth.user_request("alice", service="")
    with pytest.raises(ValueError, match="service"):
        libauth.client_request(pid=1, mechanism="PLAIN", service="")
