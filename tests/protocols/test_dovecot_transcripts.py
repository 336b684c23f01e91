"""The verbatim Dovecot 2.3.19.1 exchanges of reference §1.6, replayed through our code.

Each client line goes through AuthClientConnection and the SASL mechanism, driven
by a synchronous stand-in for the front end (sync_frontend.py). The server lines
must match the reference byte for byte, with one deliberate difference: Dovecot
ends some OK lines with a stray TAB (hidden passdb fields, §1.5) or an empty field;
we send no empty fields, which every client tolerates either way.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from mailwarden.protocols.dovecot_client import AuthRequest
from mailwarden.sasl.base import MechanismContext
from tests.protocols.feeding import bytewise
from tests.protocols.sync_frontend import SyncClientFrontend, ToyEngine
from tests.sasl.clients import ScramClient, md5

P = "service=smtp\tlip=127.0.0.1\trip=127.0.0.2\tlport=25\trport=40000"
DOVEADM_SCRAM_256 = (
    b"4096,4Y+JN2FQykrI/pxBBNS08w==,X9W5CwFbgKzZRn+vdr3Sf/QJL5FGqrNCG6su6kbWVLk=,"
    b"GMGKCEbEum36jGF1yIdJOLJVPw3xuYKsFa4bjvQAsFY="
)


def engine() -> ToyEngine:
    return ToyEngine(
        passwords={
            "alice": b"secret",
            "eve": b"secret",
            "tok": b"ya29.tokenvalue",
            "admin": b"masterpw",
        },
        masters=frozenset({"admin"}),
        stored={("eve", "SCRAM-SHA-256"): DOVEADM_SCRAM_256},
    )


def reference_context(request: AuthRequest) -> MechanismContext:
    # Pins what the reference's server drew at random: the CRAM-MD5 challenge
    # <2391638359693591.1795410328@vm>, and the APOP binding (SPID 0x313b, CUID 3).
    digits = bytes(int(d) for d in "2391638359693591")
    return MechanismContext(
        hostname="vm",
        clock=lambda: 1795410328.0,
        random_bytes=lambda n: digits,
        spid=12603,
        cuid=3,
        started=1795410000,
        cert_username=request.cert_username,
    )


Say = Callable[[str], str]


@pytest.fixture(params=["whole", "bytewise"])
def say(request: pytest.FixtureRequest) -> Say:
    """Send one client line (whole, or byte by byte) and return the server's reply."""
    frontend = SyncClientFrontend(engine(), cuid=3, context=reference_context)

    def send_line(line: str) -> str:
        data = (line + "\n").encode()
        chunks = [data] if request.param == "whole" else bytewise(data)
        return b"".join(frontend.feed(c) for c in chunks).decode()

    assert send_line("VERSION\t1\t2") == ""
    assert send_line("CPID\t4242") == ""
    return send_line


def scram_rounds(say: Say, request_id: int, extra: str) -> tuple[str, bytes]:
    client = ScramClient("sha256", "eve", b"secret", "rOprNGfwEbeRWgbNEkqO")
    reply = say(
        f"AUTH\t{request_id}\tSCRAM-SHA-256\t{P}{extra}\t"
        "resp=biwsbj1ldmUscj1yT3ByTkdmd0ViZVJXZ2JORWtxTw=="
    )
    prefix = f"CONT\t{request_id}\t"
    assert reply.startswith(prefix)
    server_first = base64.b64decode(reply[len(prefix) :])
    assert server_first.startswith(b"r=rOprNGfwEbeRWgbNEkqO")
    assert server_first.endswith(b",s=4Y+JN2FQykrI/pxBBNS08w==,i=4096")
    final, verifier = client.final(server_first)
    return say(f"CONT\t{request_id}\t{base64.b64encode(final).decode()}"), verifier


def test_scram_sha_256_sends_server_final_in_an_extra_round(say: Say) -> None:
    reply, verifier = scram_rounds(say, 9, "")
    assert reply == f"CONT\t9\t{base64.b64encode(verifier).decode()}\n"
    assert say("CONT\t9\t") == "OK\t9\tuser=eve\n"


def test_scram_sha_256_with_final_resp_ok_sends_server_final_in_ok(say: Say) -> None:
    reply, verifier = scram_rounds(say, 10, "\tfinal-resp-ok")
    assert reply == f"OK\t10\tuser=eve\tresp={base64.b64encode(verifier).decode()}\n"


_APOP_CHALLENGE = b"<313b.3.6b03c99a.123@host>"
_APOP = _APOP_CHALLENGE + b"\0alice\0" + md5(_APOP_CHALLENGE + b"secret")
_XOAUTH2_EXPIRED = base64.b64encode(b"user=tok\x01auth=Bearer expired\x01\x01").decode()
_MASTER_PLAIN = base64.b64encode(b"alice\0admin\0masterpw").decode()

# (exchange, [(client line, the server's reply), ...])
TRANSCRIPTS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "plain with an initial response",
        [(f"AUTH\t1\tPLAIN\t{P}\tresp=AGFsaWNlAHNlY3JldA==", "OK\t1\tuser=alice\n")],
    ),
    (
        "plain without an initial response",
        [
            (f"AUTH\t2\tPLAIN\t{P}", "CONT\t2\t\n"),
            ("CONT\t2\tYWxpY2UAYWxpY2UAc2VjcmV0", "OK\t2\tuser=alice\n"),
        ],
    ),
    (
        "plain with a bad password",
        [(f"AUTH\t3\tPLAIN\t{P}\tresp=AGFsaWNlAHdyb25n", "FAIL\t3\tuser=alice\n")],
    ),
    (
        "login in two rounds and with the username as initial response",
        [
            (f"AUTH\t5\tLOGIN\t{P}", "CONT\t5\tVXNlcm5hbWU6\n"),
            ("CONT\t5\tYWxpY2U=", "CONT\t5\tUGFzc3dvcmQ6\n"),
            ("CONT\t5\tc2VjcmV0", "OK\t5\tuser=alice\n"),
            (f"AUTH\t6\tLOGIN\t{P}\tresp=YWxpY2U=", "CONT\t6\tUGFzc3dvcmQ6\n"),
        ],
    ),
    (
        "cram-md5 with the reference challenge and response",
        [
            (f"AUTH\t7\tCRAM-MD5\t{P}", "CONT\t7\tPDIzOTE2MzgzNTk2OTM1OTEuMTc5NTQxMDMyOEB2bT4=\n"),
            (
                "CONT\t7\tYWxpY2UgN2YwMmExMWMxY2I1MTU1N2JkNjYyZjk3ZTgyMTNhNWY=",
                "OK\t7\tuser=alice\n",
            ),
        ],
    ),
    (
        "anonymous with trace information",
        [
            (
                f"AUTH\t11\tANONYMOUS\t{P}\tresp=dHJhY2UtaW5mbw==",
                "OK\t11\tuser=anonymous\tanonymous\n",
            )
        ],
    ),
    (
        "external without a certificate username fails",
        [(f"AUTH\t12\tEXTERNAL\t{P}\tresp=", "FAIL\t12\n")],
    ),
    (
        "apop with a challenge from this connection",
        [
            (
                f"AUTH\t13\tAPOP\t{P}\tresp={base64.b64encode(_APOP).decode()}",
                "OK\t13\tuser=alice\n",
            )
        ],
    ),
    (
        "xoauth2 success",
        [
            (
                f"AUTH\t14\tXOAUTH2\t{P}\tresp=dXNlcj10b2sBYXV0aD1CZWFyZXIgeWEyOS50b2tlbnZhbHVlAQE=",
                "OK\t14\tuser=tok\n",
            )
        ],
    ),
    (
        "xoauth2 bad token gets the json challenge then a failure",
        [
            (
                f"AUTH\t15\tXOAUTH2\t{P}\tresp={_XOAUTH2_EXPIRED}",
                "CONT\t15\teyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=\n",
            ),
            ("CONT\t15\t", "FAIL\t15\tuser=tok\n"),
        ],
    ),
    (
        "oauthbearer success",
        [
            (
                f"AUTH\t16\tOAUTHBEARER\t{P}\tresp=bixhPXRvaywBaG9zdD1tYWlsLmV4YW1wbGUuY29t"
                "AXBvcnQ9OTkzAWF1dGg9QmVhcmVyIHlhMjkudG9rZW52YWx1ZQEB",
                "OK\t16\tuser=tok\n",
            )
        ],
    ),
    (
        "a master user login through the plain authzid",
        [
            (
                f"AUTH\t19\tPLAIN\t{P}\tresp={_MASTER_PLAIN}",
                "OK\t19\tuser=alice\toriginal_user=admin\tauth_user=admin\n",
            )
        ],
    ),
]


@pytest.mark.parametrize(
    "exchange", [row[1] for row in TRANSCRIPTS], ids=[row[0] for row in TRANSCRIPTS]
)
def test_the_reference_exchanges_get_the_reference_replies(
    say: Say, exchange: list[tuple[str, str]]
) -> None:
    for line, reply in exchange:
        assert say(line) == reply
