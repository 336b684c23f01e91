"""The master/userdb-socket codec against doveadm's and the login master's lines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarden.errors import ProtocolError
from mailwarden.protocols.dovecot_master import (
    AuthMasterConnection,
    CacheFlush,
    ConnectionClosed,
    FinishedLogin,
    ListUsers,
    MasterEvent,
    MasterRequest,
    MasterVersion,
    PassLookup,
    UserLookup,
    handshake,
)
from tests.protocols.feeding import bytewise, collect, events_every_way


def events(data: bytes, *, userdb_only: bool = False) -> list[MasterEvent]:
    return events_every_way(
        lambda: AuthMasterConnection(userdb_only=userdb_only), data, trailing=b"USER\t9\tbo"
    )


def test_the_master_handshake_is_version_1_1_then_spid() -> None:
    assert handshake(spid=12603) == b"VERSION\t1\t1\nSPID\t12603\n"


# (case, the lines after VERSION, the events they give after MasterVersion)
COMMANDS: list[tuple[str, bytes, list[MasterEvent]]] = [
    (
        "doveadm user",
        b"USER\t1\talice\tservice=doveadm\tdebug\n",
        [UserLookup(id=1, user="alice", service="doveadm", debug=True)],
    ),
    (
        "a user lookup with connection details keeps them",
        b"USER\t1\talice\tservice=imap\trip=127.0.0.2\tsession=x\tfoo=bar\n",
        [
            UserLookup(
                id=1,
                user="alice",
                service="imap",
                rip="127.0.0.2",
                session="x",
                extra_params=(("foo", "bar"),),
            )
        ],
    ),
    (
        "doveadm auth lookup sends PASS",
        b"PASS\t1\talice\tservice=doveadm\n",
        [PassLookup(id=1, user="alice", service="doveadm")],
    ),
    (
        "doveadm user with a wildcard sends LIST with a mask",
        b"LIST\t1\tuser=a*\tservice=doveadm\n",
        [ListUsers(id=1, user_mask="a*", service="doveadm")],
    ),
    ("LIST without parameters has no mask and an empty service", b"LIST\t7\n", [ListUsers(id=7)]),
    (
        "the login master's REQUEST of the reference",
        b"REQUEST\t100\t12930\t7\td1845abb98640233ee1a4fb41f7384ca\tsession_pid=12930\t"
        b"request_auth_token\n",
        [
            MasterRequest(
                id=100,
                client_pid=12930,
                auth_id=7,
                cookie=bytes.fromhex("d1845abb98640233ee1a4fb41f7384ca"),
                session_pid=12930,
                request_auth_token=True,
            )
        ],
    ),
    (
        "CACHE-FLUSH with and without users",
        b"CACHE-FLUSH\t8\nCACHE-FLUSH\t9\talice\tb\x01tob\n",
        [CacheFlush(id=8), CacheFlush(id=9, users=("alice", "b\tob"))],
    ),
]


@pytest.mark.parametrize(
    ("lines", "expected"), [row[1:] for row in COMMANDS], ids=[row[0] for row in COMMANDS]
)
@pytest.mark.parametrize("minor", [0, 1])
def test_peer_commands_parse_to_the_expected_events(
    lines: bytes, expected: list[MasterEvent], minor: int
) -> None:
    version = f"VERSION\t1\t{minor}\n".encode()
    assert events(version + lines) == [MasterVersion(major=1, minor=minor), *expected]


def test_the_version_line_needs_only_the_major_version() -> None:
    assert events(b"VERSION\t1\n") == [MasterVersion(major=1, minor=None)]


def test_closing_the_connection_is_an_event() -> None:
    conn = AuthMasterConnection()
    assert collect(conn, [b"VERSION\t1\t0\nUSER\t1\ta", b""])[-1] == ConnectionClosed()
    assert conn.closed and conn.next_event() is None


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"VERSION\t2\t0\n", "major 2"),
        (b"USER\t1\talice\tservice=imap\n", "no VERSION first"),
        (b"VERSION\t1\t0\nUSER\t9\talice\n", "USER without service (reference §2.2)"),
        (b"VERSION\t1\t0\nPASS\t9\talice\trip=1.2.3.4\n", "PASS without service"),
        (b"VERSION\t1\t0\nUSER\t9\n", "USER without user"),
        (b"VERSION\t1\t0\nUSER\tx\talice\tservice=imap\n", "bad id"),
        (b"VERSION\t1\t0\nLIST\tx\n", "LIST with a bad id"),
        (b"VERSION\t1\t0\nCPID\t123\n", "a client on the master socket"),
        (b"VERSION\t1\t0\nDIE\n", "the v1.0 document's DIE"),
        (b"VERSION\t1\t0\nREQUEST\t1\t2\t3\n", "REQUEST without cookie"),
        (b"VERSION\t1\t0\nREQUEST\t1\t2\t3\txyz\n", "REQUEST with a non-hex cookie"),
        (b"VERSION\t1\t0\nREQUEST\t1\t2\t3\t" + b"ab" * 17 + b"\n", "REQUEST with a long cookie"),
        (b"VERSION\t1\t0\nCACHE-FLUSH\tx\n", "CACHE-FLUSH with a bad id"),
    ],
)
def test_lines_dovecot_disconnects_for_raise_protocol_error(data: bytes, why: str) -> None:
    for chunks in ([data], bytewise(data)):
        conn = AuthMasterConnection()
        with pytest.raises(ProtocolError):
            collect(conn, chunks)
        with pytest.raises(ProtocolError):
            conn.next_event()


@pytest.mark.parametrize("command", [b"REQUEST\t1\t2\t3\t" + b"00" * 16, b"CACHE-FLUSH\t1"])
def test_a_userdb_socket_refuses_master_only_commands(command: bytes) -> None:
    conn = AuthMasterConnection(userdb_only=True)
    with pytest.raises(ProtocolError):
        collect(conn, [b"VERSION\t1\t0\n" + command + b"\n"])
    assert collect(AuthMasterConnection(), [b"VERSION\t1\t0\n" + command + b"\n"])[1:]


def test_userdb_replies_match_the_reference_byte_for_byte() -> None:
    conn = AuthMasterConnection()
    assert conn.user_found(
        1,
        "alice",
        {
            "uid": "1000",
            "gid": "1000",
            "home": "/home/alice",
            "mail": "maildir:~/Maildir",
            "quota_rule": "*:storage=1G",
        },
    ) == (
        b"USER\t1\talice\tuid=1000\tgid=1000\thome=/home/alice\tmail=maildir:~/Maildir\t"
        b"quota_rule=*:storage=1G\n"
    )
    assert conn.not_found(2) == b"NOTFOUND\t2\n"
    assert conn.pass_found(
        5,
        "dave",
        [("proxy", None), ("host", "10.0.0.5"), ("port", "143"), ("destuser", "dave@backend")],
    ) == (b"PASS\t5\tuser=dave\tproxy\thost=10.0.0.5\tport=143\tdestuser=dave@backend\n")
    assert conn.list_user(7, "alice") + conn.list_done(7) == b"LIST\t7\talice\nDONE\t7\t\n"
    assert conn.list_done(7, failed=True) == b"DONE\t7\tfail\n"
    assert conn.cache_flushed(8, 3) == b"OK\t8\t3\n"
    assert conn.fail(101) == b"FAIL\t101\n"


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        (
            FinishedLogin(user="alice", mechanism="PLAIN", service="imap"),
            b"USER\t9\talice\tuid=1000\tnopassword\tauth_mech=PLAIN\n",
        ),
        (
            FinishedLogin(
                user="alice",
                mechanism="PLAIN",
                service="imap",
                master_user="admin",
                original_user="Alice",
                local_name="mail.example.com",
                anonymous=True,
            ),
            b"USER\t9\talice\tuid=1000\tnopassword\tmaster_user=admin\tauth_mech=PLAIN"
            b"\tanonymous\tauth_user=admin\tlocal_name=mail.example.com\n",
        ),
        (
            FinishedLogin(user="alice", mechanism="LOGIN", service="imap", original_user="Alice"),
            b"USER\t9\talice\tuid=1000\tnopassword\tauth_mech=LOGIN\tauth_user=Alice\n",
        ),
    ],
)
def test_the_reply_to_request_appends_the_login_fields_in_dovecots_order(
    login: FinishedLogin, expected: bytes
) -> None:
    conn = AuthMasterConnection()
    assert conn.request_found(9, "alice", {"uid": "1000", "nopassword": ""}, login) == expected


def test_a_userdb_master_user_field_is_not_repeated_in_the_request_reply() -> None:
    login = FinishedLogin(user="bob", mechanism="PLAIN", service="imap", master_user="admin")
    reply = AuthMasterConnection().request_found(2, "bob", {"master_user": "boss"}, login)
    assert reply == b"USER\t2\tbob\tmaster_user=boss\tauth_mech=PLAIN\tauth_user=admin\n"


def test_a_user_reply_without_fields_still_ends_the_username_with_a_tab() -> None:
    assert AuthMasterConnection().user_found(3, "bob") == b"USER\t3\tbob\t\n"


def test_reply_values_are_escaped() -> None:
    conn = AuthMasterConnection()
    assert conn.fail(4, reason="db\tdown") == b"FAIL\t4\treason=db\x01tdown\n"
    assert conn.list_user(1, "we\nird") == b"LIST\t1\twe\x01nird\n"


LINES = [
    b"VERSION\t1\t0\n",
    b"USER\t1\talice\tservice=x\n",
    b"PASS\t2\tbob\tservice=y\n",
    b"LIST\t3\tuser=*\n",
    b"CACHE-FLUSH\t4\n",
    b"REQUEST\t5\t1\t2\t" + b"0f" * 16 + b"\n",
    b"\n",
    b"\t",
    b"\x01",
]


@settings(max_examples=300)
@given(
    parts=st.lists(st.sampled_from(LINES) | st.binary(max_size=30), max_size=12),
    userdb_only=st.booleans(),
)
def test_any_bytes_give_events_or_a_protocol_error(parts: list[bytes], userdb_only: bool) -> None:
    data = b"".join(parts)
    try:
        whole = collect(AuthMasterConnection(userdb_only=userdb_only), [data] if data else [])
    except ProtocolError:
        with pytest.raises(ProtocolError):
            collect(AuthMasterConnection(userdb_only=userdb_only), bytewise(data))
    else:
        assert collect(AuthMasterConnection(userdb_only=userdb_only), bytewise(data)) == whole
