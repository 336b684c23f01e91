"""APOP: a challenge bound to this server, connection and time; MD5 over the password."""

from __future__ import annotations

import pytest

from mailwarden.sasl.apop import Apop, ApopProof
from mailwarden.sasl.base import Finished, MechanismContext, MechanismFailed
from tests.sasl.clients import md5, proof

# The reference's example (§1.6): SPID 12603 = 0x313b, CUID 3, time 0x6b03c99a.
CHALLENGE = b"<313b.3.6b03c99a.123@host>"
CONTEXT = MechanismContext(spid=12603, cuid=3, started=0x6B03C99A - 60)


def apop_response(challenge: bytes, user: bytes, password: bytes) -> bytes:
    return challenge + b"\0" + user + b"\0" + md5(challenge + password)


def test_the_reference_example_finishes_with_a_proof_of_the_password() -> None:
    step = Apop(CONTEXT).start(apop_response(CHALLENGE, b"alice", b"secret"))
    assert isinstance(step, Finished)
    assert (step.authcid, step.authzid) == ("alice", None)
    assert isinstance(step.credentials, ApopProof)
    assert step.credentials.schemes == ("PLAIN",)
    assert proof(step).check("PLAIN", b"secret")
    assert not proof(step).check("PLAIN", b"wrong")
    assert not proof(step).check("CRAM-MD5", b"secret")


def test_a_digest_containing_nul_bytes_is_fine() -> None:
    # Find a password whose digest has a NUL: APOP is allowed NULs in its data.
    password = next(
        p for p in (str(i).encode() for i in range(10000)) if b"\0" in md5(CHALLENGE + p)
    )
    step = Apop(CONTEXT).start(apop_response(CHALLENGE, b"alice", password))
    assert isinstance(step, Finished)
    assert step.credentials is not None
    assert proof(step).check("PLAIN", password)


@pytest.mark.parametrize(
    ("challenge", "why"),
    [
        (b"<313c.3.6b03c99a.1@host>", "another server's pid"),
        (b"<313b.4.6b03c99a.1@host>", "another connection"),
        (b"<313b.3.6b03c000.1@host>", "minted before the server started"),
        (b"<313b.3.6b03c99a@host>", "no trailing dot after the time"),
        (b"313b.3.6b03c99a.1@host", "no angle bracket"),
        (b"<1234.1.1.@x>", "a syntactically fine but foreign challenge"),
    ],
)
def test_challenges_not_minted_by_this_connection_are_refused(challenge: bytes, why: str) -> None:
    assert isinstance(
        Apop(CONTEXT).start(apop_response(challenge, b"alice", b"secret")), MechanismFailed
    ), why


def test_hex_fields_with_a_0x_prefix_are_read_like_sscanf_does() -> None:
    step = Apop(CONTEXT).start(apop_response(b"<0x313b.0x3.6b03c99a.1@h>", b"alice", b"s"))
    assert isinstance(step, Finished)


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",
        CHALLENGE,
        CHALLENGE + b"\0alice",
        CHALLENGE + b"\0alice\0" + b"x" * 15,
        CHALLENGE + b"\0alice\0" + b"x" * 17,
        CHALLENGE + b"\0\0" + b"x" * 16,
    ],
)
def test_malformed_initial_responses_fail(data: bytes | None) -> None:
    assert isinstance(Apop(CONTEXT).start(data), MechanismFailed)
