"""The client-socket codec: handshake bytes, AUTH/CONT/CANCEL events, replies, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarden.errors import ProtocolError
from mailwarden.model import DenyReason
from mailwarden.protocols.dovecot_client import (
    AuthClientConnection,
    AuthRequest,
    CancelRequest,
    ClientCpid,
    ClientEvent,
    ClientVersion,
    ConnectionClosed,
    ContinueRequest,
    RequestRejected,
    handshake,
)
from mailwarden.sasl import MECHANISMS
from tests.protocols.feeding import bytewise, collect, events_every_way

COOKIE = bytes.fromhex("b3aad1d6c353d6b2a12adf8cb87888a0")

# Reference §1.2, verbatim from Dovecot 2.3.19.1 (auth_mechanisms without DIGEST-MD5).
REFERENCE_HANDSHAKE = (
    b"VERSION\t1\t2\n"
    b"MECH\tPLAIN\tplaintext\n"
    b"MECH\tLOGIN\tplaintext\n"
    b"MECH\tCRAM-MD5\tdictionary\tactive\n"
    b"MECH\tSCRAM-SHA-1\tmutual-auth\n"
    b"MECH\tSCRAM-SHA-256\tmutual-auth\n"
    b"MECH\tANONYMOUS\tanonymous\n"
    b"MECH\tEXTERNAL\n"
    b"MECH\tAPOP\tprivate\tdictionary\tactive\n"
    b"MECH\tOAUTHBEARER\tplaintext\n"
    b"MECH\tXOAUTH2\tplaintext\n"
    b"SPID\t12603\n"
    b"CUID\t1\n"
    b"COOKIE\tb3aad1d6c353d6b2a12adf8cb87888a0\n"
    b"DONE\n"
)
REFERENCE_ORDER = [
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "ANONYMOUS",
    "EXTERNAL",
    "APOP",
    "OAUTHBEARER",
    "XOAUTH2",
]


def test_the_handshake_matches_dovecot_2_3_19_1_byte_for_byte() -> None:
    mechs = [(name, MECHANISMS[name].flag_words()) for name in REFERENCE_ORDER]
    assert handshake(mechs, spid=12603, cuid=1, cookie=COOKIE) == REFERENCE_HANDSHAKE


def test_the_handshake_sends_mech_lines_before_spid() -> None:
    data = handshake([("PLAIN", ["plaintext"])], spid=1, cuid=7, cookie=bytes(16))
    assert data.index(b"MECH\t") < data.index(b"SPID\t") < data.index(b"COOKIE\t")
    assert data.endswith(b"CUID\t7\nCOOKIE\t" + b"00" * 16 + b"\nDONE\n")


def test_a_handshake_needs_a_mechanism_and_a_16_byte_cookie() -> None:
    with pytest.raises(ValueError, match="mechanism"):
        handshake([], spid=1, cuid=1, cookie=bytes(16))
    with pytest.raises(ValueError, match="cookie"):
        handshake([("PLAIN", [])], spid=1, cuid=1, cookie=bytes(8))


def new() -> AuthClientConnection:
    return AuthClientConnection(mechanisms=MECHANISMS)


def ready(minor: int = 2) -> AuthClientConnection:
    conn = new()
    collect(conn, [f"VERSION\t1\t{minor}\nCPID\t42\n".encode()])
    return conn


def events(data: bytes) -> list[ClientEvent]:
    return events_every_way(new, data, trailing=b"AUTH\t99\tPLAIN\tservice=sm")


POSTFIX = (
    b"VERSION\t1\t0\n"
    b"CPID\t14315\n"
    b"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=AGFsaWNlAHNlY3JldA==\n"
    b"AUTH\t2\tLOGIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\n"
)


def test_postfix_over_tls_marks_the_request_secured() -> None:
    data = (
        b"VERSION\t1\t0\nCPID\t14315\n"
        + b"AUTH\t3\tPLAIN\tservice=smtp\tnologin\tlip=::1\trip=::1\tsecured\tresp==\n"
    )
    request = events(data)[-1]
    assert isinstance(request, AuthRequest)
    assert (request.secured, request.is_secured, request.initial_response) == ("", True, b"")
    assert (request.lip, request.rip) == ("::1", "::1")


EXIM = (
    b"VERSION\t1\t0\nCPID\t13878\n"
    b"AUTH\t1\tLOGIN\tservice=smtp\trip=127.0.0.2\tlip=127.0.0.1\tnologin\tresp=\n"
)


def test_exim_over_tls_with_a_verified_certificate() -> None:
    data = (
        b"VERSION\t1\t0\nCPID\t1\nAUTH\t1\tPLAIN\tservice=smtp\tsecured\tvalid-client-cert\t"
        b"rip=192.0.2.1\tlip=192.0.2.2\tnologin\tresp=AGEAYg==\n"
    )
    request = events(data)[-1]
    assert isinstance(request, AuthRequest)
    assert request.valid_client_cert and request.is_secured


DOVEADM = (
    b"VERSION\t1\t2\nCPID\t13456\n"
    b"AUTH\t1\tPLAIN\tservice=smtp\tdebug\trip=192.0.2.9\tlport=25\tresp=YWxpY2UAYWxpY2UAc2VjcmV0\n"
)


# (peer, its lines, the events they give)
PEER_LINES: list[tuple[str, bytes, list[ClientEvent]]] = [
    (
        "postfix 3.7",
        POSTFIX,
        [
            ClientVersion(major=1, minor=0),
            ClientCpid(pid=14315),
            AuthRequest(
                id=1,
                mechanism="PLAIN",
                service="smtp",
                nologin=True,
                lip="127.0.0.1",
                rip="127.0.0.1",
                initial_response=b"\0alice\0secret",
            ),
            AuthRequest(
                id=2,
                mechanism="LOGIN",
                service="smtp",
                nologin=True,
                lip="127.0.0.1",
                rip="127.0.0.1",
                initial_response=None,
            ),
        ],
    ),
    (
        # Exim 4.96's empty resp= means no initial response for a 1.0 client.
        "exim 4.96",
        EXIM,
        [
            ClientVersion(major=1, minor=0),
            ClientCpid(pid=13878),
            AuthRequest(
                id=1,
                mechanism="LOGIN",
                service="smtp",
                rip="127.0.0.2",
                lip="127.0.0.1",
                nologin=True,
                initial_response=None,
            ),
        ],
    ),
    (
        "doveadm auth test",
        DOVEADM,
        [
            ClientVersion(major=1, minor=2),
            ClientCpid(pid=13456),
            AuthRequest(
                id=1,
                mechanism="PLAIN",
                service="smtp",
                debug=True,
                rip="192.0.2.9",
                lport=25,
                initial_response=b"alice\0alice\0secret",
            ),
        ],
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [row[1:] for row in PEER_LINES], ids=[row[0] for row in PEER_LINES]
)
def test_peer_lines_parse_to_the_expected_events(data: bytes, expected: list[ClientEvent]) -> None:
    assert events(data) == expected


def test_an_empty_resp_from_a_1_2_client_is_an_empty_initial_response() -> None:
    data = b"VERSION\t1\t2\nCPID\t1\nAUTH\t1\tPLAIN\tservice=imap\tresp=\n"
    request = events(data)[-1]
    assert isinstance(request, AuthRequest)
    assert request.initial_response == b""


def test_every_parameter_of_a_dovecot_login_process_is_parsed() -> None:
    forward = "a=1\tb=x\x01ty"  # the list as doveadm builds it, before line escaping
    line = "\t".join(
        [
            "AUTH",
            "7",
            "plain",
            "service=imap",
            "session=QbN1",
            "lip=10.0.0.1",
            "rip=10.0.0.2",
            "lport=993",
            "rport=50000",
            "real_lip=192.0.2.1",
            "real_rip=192.0.2.2",
            "real_lport=143",
            "real_rport=40000",
            "local_name=mail.example.org",
            'client_id=\x01tname\x01t"x"',
            "secured=tls",
            "valid-client-cert",
            "cert_username=alice",
            "no-penalty",
            "final-resp-ok",
            "forward_fields=" + forward.replace("\x01", "\x011").replace("\t", "\x01t"),
            "transport=TLS",
            "future-flag",
            "resp=AGEAYg==",
        ]
    )
    data = b"VERSION\t1\t2\nCPID\t1\n" + line.encode() + b"\n"
    assert events(data)[-1] == AuthRequest(
        id=7,
        mechanism="PLAIN",
        service="imap",
        session="QbN1",
        lip="10.0.0.1",
        rip="10.0.0.2",
        lport=993,
        rport=50000,
        real_lip="192.0.2.1",
        real_rip="192.0.2.2",
        real_lport=143,
        real_rport=40000,
        local_name="mail.example.org",
        client_id='\tname\t"x"',
        secured="tls",
        valid_client_cert=True,
        cert_username="alice",
        no_penalty=True,
        final_resp_ok=True,
        forward_fields=(("a", "1"), ("b", "x\ty")),
        extra_params=(("transport", "TLS"), ("future-flag", None)),
        initial_response=b"\0a\0b",
    )


def test_bad_addresses_and_ports_are_silently_ignored() -> None:
    data = b"VERSION\t1\t0\nCPID\t1\nAUTH\t1\tPLAIN\tservice=smtp\trip=unknown\tlport=0\trport=x\n"
    request = events(data)[-1]
    assert isinstance(request, AuthRequest)
    assert (request.rip, request.lport, request.rport) == (None, None, None)


def test_an_empty_cert_username_counts_as_none() -> None:
    data = b"VERSION\t1\t0\nCPID\t1\nAUTH\t1\tEXTERNAL\tservice=smtp\tcert_username=\n"
    request = events(data)[-1]
    assert isinstance(request, AuthRequest)
    assert request.cert_username is None


def test_the_repr_of_a_request_hides_the_initial_response() -> None:
    request = events(POSTFIX)[2]
    assert "secret" not in repr(request) and "AGFsaWNl" not in repr(request)


def test_cont_after_a_challenge_is_delivered_and_cancel_drops_the_request() -> None:
    conn = ready()
    conn.receive_data(b"AUTH\t5\tLOGIN\tservice=smtp\n")
    assert isinstance(conn.next_event(), AuthRequest)
    assert conn.cont(5, b"Username:") == b"CONT\t5\tVXNlcm5hbWU6\n"
    assert collect(conn, bytewise(b"CONT\t5\tYWxpY2U=\n")) == [ContinueRequest(id=5, data=b"alice")]
    assert conn.cont(5, b"Password:") == b"CONT\t5\tUGFzc3dvcmQ6\n"
    assert collect(conn, [b"CANCEL\t5\n"]) == [CancelRequest(id=5)]
    assert conn.pending == ()


def test_cancel_of_an_unknown_request_is_ignored_silently() -> None:
    conn = ready()
    assert collect(conn, [b"CANCEL\t77\n"]) == []


def test_cont_for_an_unknown_id_fails_that_id_as_timed_out_and_keeps_the_connection() -> None:
    conn = ready()
    assert collect(conn, [b"CONT\t9\tYQ==\n"]) == [
        RequestRejected(
            id=9,
            reason="Authentication request timed out",
            reply=b"FAIL\t9\treason=Authentication request timed out\n",
        )
    ]
    assert collect(conn, [b"AUTH\t9\tPLAIN\tservice=smtp\n"])[0] == AuthRequest(
        id=9, mechanism="PLAIN", service="smtp"
    )


def test_an_unexpected_cont_fails_and_forgets_the_request() -> None:
    conn = ready()
    collect(conn, [b"AUTH\t3\tPLAIN\tservice=smtp\tresp=AGEAYg==\n"])
    rejected = collect(conn, [b"CONT\t3\t\n"])
    assert rejected == [
        RequestRejected(
            id=3,
            reason="Unexpected continuation",
            reply=b"FAIL\t3\treason=Unexpected continuation\n",
        )
    ]
    assert conn.pending == ()
    with pytest.raises(ValueError, match="not pending"):
        conn.ok(3, "alice")


def test_invalid_base64_in_auth_fails_the_request_with_dovecots_code() -> None:
    conn = ready()
    assert collect(conn, [b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AGFsaWNl!\n"]) == [
        RequestRejected(
            id=1,
            reason="Invalid base64 data in initial response",
            reply=b"FAIL\t1\tcode=invalid_base64\treason=Invalid base64 data in initial response\n",
        )
    ]
    assert conn.pending == ()


def test_invalid_base64_in_cont_fails_the_request_with_dovecots_code() -> None:
    conn = ready()
    collect(conn, [b"AUTH\t1\tLOGIN\tservice=smtp\n"])
    conn.cont(1, b"Username:")
    assert collect(conn, [b"CONT\t1\tYWxpY2U\n"]) == [
        RequestRejected(
            id=1,
            reason="Invalid base64 data in continued response",
            reply=b"FAIL\t1\tcode=invalid_base64\t"
            b"reason=Invalid base64 data in continued response\n",
        )
    ]
    assert conn.pending == ()


def test_requests_past_the_in_flight_cap_fail_temporarily_and_the_rest_go_on() -> None:
    conn = AuthClientConnection(mechanisms=["PLAIN"], max_pending=2)
    got = collect(
        conn,
        [
            b"VERSION\t1\t2\nCPID\t1\n"
            + b"".join(b"AUTH\t%d\tPLAIN\tservice=smtp\n" % i for i in (1, 2, 3))
        ],
    )
    assert got[-1] == RequestRejected(
        id=3,
        reason="Too many pending authentication requests",
        reply=b"FAIL\t3\tcode=temp_fail\treason=Too many pending authentication requests\n",
    )
    assert conn.pending == (1, 2)
    conn.fail(1)
    assert collect(conn, [b"AUTH\t3\tPLAIN\tservice=smtp\n"]) == [
        AuthRequest(id=3, mechanism="PLAIN", service="smtp")
    ]


def test_ok_puts_user_first_and_sends_nologin_and_proxy_bare() -> None:
    conn = ready()
    collect(conn, [b"AUTH\t18\tPLAIN\tservice=imap\n"])
    reply = conn.ok(
        18,
        "dave",
        {
            "proxy": "y",
            "host": "10.0.0.5",
            "port": "143",
            "destuser": "dave@backend",
            "nologin": "",
        },
    )
    assert (
        reply
        == b"OK\t18\tuser=dave\tproxy\thost=10.0.0.5\tport=143\tdestuser=dave@backend\tnologin\n"
    )


def test_ok_escapes_values_and_carries_final_sasl_data() -> None:
    conn = ready()
    collect(conn, [b"AUTH\t10\tPLAIN\tservice=imap\n"])
    reply = conn.ok(10, "eve", [("reason", "line\none")], resp=b"v=abc")
    assert reply == b"OK\t10\tuser=eve\treason=line\x01none\tresp=dj1hYmM=\n"


def test_fail_fields_come_in_dovecots_order() -> None:
    conn = ready()
    collect(conn, [b"AUTH\t4\tPLAIN\tservice=smtp\n"])
    assert conn.fail(4, user="bob", code="temp_fail") == b"FAIL\t4\tuser=bob\tcode=temp_fail\n"
    collect(conn, [b"AUTH\t5\tPLAIN\tservice=smtp\n"])
    assert conn.fail(5, user="carol", reason="Account\tsuspended", fields={"nodelay": None}) == (
        b"FAIL\t5\tuser=carol\treason=Account\x01tsuspended\tnodelay\n"
    )


def test_an_accepted_login_sends_passdb_fields_then_original_user_auth_user_anonymous() -> None:
    conn = ready()
    collect(conn, [b"AUTH\t6\tPLAIN\tservice=imap\n"])
    reply = conn.accepted(
        6,
        user="alice@example.com",
        passdb_fields={"nologin": "", "reason": "moved"},
        original_user="Alice",
        master_user="admin",
        anonymous=True,
        resp=b"v=1",
    )
    assert reply == (
        b"OK\t6\tuser=alice@example.com\tnologin\treason=moved\toriginal_user=Alice"
        b"\tauth_user=admin\tanonymous\tresp=dj0x\n"
    )
    collect(conn, [b"AUTH\t7\tPLAIN\tservice=imap\n"])
    assert conn.accepted(7, user="bob", passdb_fields={}, original_user="bob") == (
        b"OK\t7\tuser=bob\n"
    )


@pytest.mark.parametrize(
    ("reason", "nodelay", "expected"),
    [
        (DenyReason.CREDENTIALS, False, b"FAIL\t3\tuser=Bob\n"),
        (DenyReason.NETWORK, False, b"FAIL\t3\tuser=Bob\n"),
        (DenyReason.SCHEME, False, b"FAIL\t3\tuser=Bob\n"),
        (DenyReason.BLOCKED, False, b"FAIL\t3\tuser=Bob\n"),
        (DenyReason.CREDENTIALS, True, b"FAIL\t3\tuser=Bob\tnodelay\n"),
        (DenyReason.DISABLED, False, b"FAIL\t3\tuser=Bob\tcode=user_disabled\treason=gone\n"),
        (
            DenyReason.SERVICE_DISABLED,
            False,
            b"FAIL\t3\tuser=Bob\tcode=user_disabled\treason=gone\n",
        ),
        (DenyReason.AUTHZ, False, b"FAIL\t3\tuser=Bob\tcode=authz_fail\n"),
    ],
)
def test_a_denied_login_says_why_only_for_disabled_accounts_and_authorization(
    reason: DenyReason, nodelay: bool, expected: bytes
) -> None:
    conn = ready()
    collect(conn, [b"AUTH\t3\tPLAIN\tservice=smtp\n"])
    assert conn.denied(3, user="Bob", reason=reason, message="gone", nodelay=nodelay) == expected


def test_a_temporary_failure_is_a_fail_with_dovecots_temp_fail_code() -> None:
    conn = ready()
    collect(conn, [b"AUTH\t8\tPLAIN\tservice=smtp\n"])
    assert conn.temp_failed(8, user="Bob") == b"FAIL\t8\tuser=Bob\tcode=temp_fail\n"
    collect(conn, [b"AUTH\t9\tPLAIN\tservice=smtp\n"])
    assert conn.temp_failed(9, user=None) == b"FAIL\t9\tcode=temp_fail\n"


def test_an_empty_challenge_is_a_cont_with_an_empty_field() -> None:
    conn = ready()
    collect(conn, [b"AUTH\t2\tPLAIN\tservice=smtp\n"])
    assert conn.cont(2, b"") == b"CONT\t2\t\n"


def test_replies_for_requests_that_are_not_pending_are_caller_bugs() -> None:
    conn = ready()
    with pytest.raises(ValueError, match="not pending"):
        conn.fail(1)
    with pytest.raises(ValueError, match="not pending"):
        conn.cont(1, b"")
    collect(conn, [b"AUTH\t1\tLOGIN\tservice=smtp\n"])
    conn.cont(1, b"Username:")
    with pytest.raises(ValueError, match="already waiting"):
        conn.cont(1, b"again")


def test_the_client_closing_reports_the_unanswered_requests() -> None:
    conn = ready()
    assert collect(conn, [b"AUTH\t1\tPLAIN\tservice=smtp\nAUTH\t2\tPL", b""])[-1] == (
        ConnectionClosed(pending=(1,))
    )
    assert conn.closed and conn.next_event() is None


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"VERSION\t2\t0\n", "major version 2"),
        (b"VERSION\t1\n", "no minor version"),
        (b"VERSION\t1\t2\t3\n", "extra field"),
        (b"VERSION 1 2\n", "spaces"),
        (b"CPID\t1\n", "CPID before VERSION"),
        (b"VERSION\t1\t2\nAUTH\t1\tPLAIN\tservice=smtp\n", "AUTH before CPID"),
        (b"VERSION\t1\t2\nSERVICE\tsmtp\n", "the v1.0 document's SERVICE line"),
        (b"VERSION\t1\t2\nCPID\t0\n", "CPID 0"),
        (b"VERSION\t1\t2\nCPID\tabc\n", "non-numeric CPID"),
        (b"VERSION\t1\t2\nCPID\t1\nHELO\n", "unknown command"),
        (b"VERSION\t1\t2\nCPID\t1\nAUTH\n", "AUTH without tab"),
        (b"VERSION\t1\t2\nCPID\t1\nauth\t1\tPLAIN\tservice=smtp\n", "lower-case command"),
        (b"VERSION\t1\t2\nCPID\t1\nAUTH\t1\tGSSAPI\tservice=smtp\n", "unknown mechanism"),
        (b"VERSION\t1\t2\nCPID\t1\nAUTH\t1\tPLAIN\trip=1.2.3.4\n", "missing service"),
        (b"VERSION\t1\t2\nCPID\t1\nAUTH\t0\tPLAIN\tservice=smtp\n", "id zero"),
        (b"VERSION\t1\t2\nCPID\t1\nAUTH\tx\tPLAIN\tservice=smtp\n", "non-numeric id"),
        (b"VERSION\t1\t2\nCPID\t1\nAUTH\t1\n", "no mechanism"),
        (
            b"VERSION\t1\t2\nCPID\t1\nAUTH\t1\tPLAIN\tservice=smtp\tresp=YQ==\tsecured\n",
            "parameter after resp",
        ),
        (
            b"VERSION\t1\t2\nCPID\t1\nAUTH\t1\tPLAIN\tservice=smtp\tresp=YQ==\t\n",
            "empty field after resp",
        ),
        (
            b"VERSION\t1\t2\nCPID\t1\nAUTH\t1\tPLAIN\tservice=smtp\nAUTH\t1\tPLAIN\tservice=smtp\n",
            "duplicate id",
        ),
        (b"VERSION\t1\t2\nCPID\t1\nCONT\t1\n", "CONT without data"),
        (b"VERSION\t1\t2\nCPID\t1\nCONT\tx\tYQ==\n", "CONT with a bad id"),
        (b"VERSION\t1\t2\nCPID\t1\nCANCEL\tx\n", "CANCEL with a bad id"),
        (b"VERSION\t1\t2\nCPID\t1\n" + b"A" * 16384, "overlong line"),
    ],
)
def test_protocol_violations_that_make_dovecot_disconnect_raise_protocol_error(
    data: bytes, why: str
) -> None:
    for chunks in ([data], bytewise(data)):
        conn = new()
        with pytest.raises(ProtocolError):
            collect(conn, chunks)
        with pytest.raises(ProtocolError):
            conn.next_event()  # the connection stays failed


def test_the_mechanism_name_is_case_insensitive() -> None:
    data = b"VERSION\t1\t2\nCPID\t1\nAUTH\t1\tscram-sha-256\tservice=imap\n"
    request = events(data)[-1]
    assert isinstance(request, AuthRequest)
    assert request.mechanism == "SCRAM-SHA-256"


def test_the_line_limit_is_configurable() -> None:
    conn = AuthClientConnection(mechanisms=["PLAIN"], max_line_length=64)
    collect(conn, [b"VERSION\t1\t2\nCPID\t1\n"])
    with pytest.raises(ProtocolError):
        collect(conn, [b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b"A" * 64 + b"\n"])


def fresh_events(chunks: list[bytes]) -> list[ClientEvent] | ProtocolError:
    try:
        return collect(new(), [c for c in chunks if c])  # b"" would mean end of stream
    except ProtocolError as exc:
        return exc


LINES = [
    b"VERSION\t1\t2\n",
    b"VERSION\t1\t0\n",
    b"CPID\t7\n",
    b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AGEAYg==\n",
    b"AUTH\t2\tLOGIN\tservice=smtp\n",
    b"AUTH\t3\tSCRAM-SHA-1\tservice=imap\tresp=\n",
    b"CONT\t1\tYQ==\n",
    b"CONT\t2\t\n",
    b"CANCEL\t2\n",
    b"CANCEL\t1\n",
    b"\n",
    b"\t",
    b"\x01",
    b"=",
    b"resp=",
    b"\r\n",
]


@settings(max_examples=300)
@given(
    parts=st.lists(st.sampled_from(LINES) | st.binary(max_size=30), max_size=12),
    cut=st.integers(min_value=1, max_value=7),
    shake_hands=st.booleans(),
)
def test_any_bytes_give_events_or_a_protocol_error_whole_or_in_pieces(
    parts: list[bytes], cut: int, shake_hands: bool
) -> None:
    data = (b"VERSION\t1\t2\nCPID\t1\n" if shake_hands else b"") + b"".join(parts)
    whole = fresh_events([data])
    pieces = fresh_events([data[i : i + cut] for i in range(0, len(data), cut)])
    if isinstance(whole, ProtocolError):
        assert isinstance(pieces, ProtocolError)
    else:
        assert pieces == whole


def test_a_forgotten_request_gets_no_reply_and_a_late_cont_is_told_it_timed_out() -> None:
    conn = ready()
    collect(conn, [b"AUTH\t1\tLOGIN\tservice=smtp\n"])
    conn.cont(1, b"Username:")
    conn.forget(1)
    assert conn.pending == ()
    assert collect(conn, [b"CONT\t1\tYWxpY2U=\n"]) == [
        RequestRejected(
            id=1,
            reason="Authentication request timed out",
            reply=b"FAIL\t1\treason=Authentication request timed out\n",
        )
    ]
