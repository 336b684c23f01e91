"""CRAM-MD5 against RFC 2195's client computation and Dovecot's stored state."""

from __future__ import annotations

import hmac
import re

from mailwarden.sasl.base import Challenge, Finished, MechanismContext, MechanismFailed
from mailwarden.sasl.cram_md5 import CramMd5, CramMd5Proof
from tests.sasl.clients import cram_md5_state, proof

# The challenge of reference §1.6: <2391638359693591.1795410328@vm>
DIGITS = bytes(int(d) for d in "2391638359693591")
PINNED = MechanismContext(hostname="vm", clock=lambda: 1795410328.7, random_bytes=lambda n: DIGITS)


def respond(mech: CramMd5, password: bytes, user: bytes = b"alice") -> Finished | MechanismFailed:
    challenge = mech.start(None)
    assert isinstance(challenge, Challenge)
    digest = hmac.new(password, challenge.data, "md5").hexdigest().encode()
    step = mech.respond(user + b" " + digest)
    assert isinstance(step, Finished | MechanismFailed)
    return step


def test_the_challenge_is_dovecots_digits_time_and_hostname() -> None:
    assert CramMd5(PINNED).start(None) == Challenge(data=b"<2391638359693591.1795410328@vm>")


def test_random_challenges_have_dovecots_shape() -> None:
    step = CramMd5(MechanismContext(hostname="mx.example.org")).start(None)
    assert isinstance(step, Challenge)
    assert re.fullmatch(rb"<\d{16}\.\d+@mx\.example\.org>", step.data)


def test_the_reference_transcript_response_verifies_against_dovecots_stored_state() -> None:
    mech = CramMd5(PINNED)
    mech.start(None)
    step = mech.respond(b"alice 7f02a11c1cb51557bd662f97e8213a5f")
    assert isinstance(step, Finished)
    assert step.authcid == "alice"
    assert isinstance(step.credentials, CramMd5Proof)
    assert proof(step).check("CRAM-MD5", cram_md5_state(b"secret"))


def test_the_proof_verifies_against_a_plaintext_password_and_the_hex_state() -> None:
    step = respond(CramMd5(), b"secret")
    assert isinstance(step, Finished)
    proof = step.credentials
    assert isinstance(proof, CramMd5Proof)
    assert proof.check("PLAIN", b"secret")
    assert proof.check("HMAC-MD5", cram_md5_state(b"secret").hex().encode())


def test_the_proof_of_a_wrong_password_does_not_verify() -> None:
    step = respond(CramMd5(), b"wrong")
    assert isinstance(step, Finished)
    assert step.credentials is not None
    assert not proof(step).check("CRAM-MD5", cram_md5_state(b"secret"))
    assert not proof(step).check("PLAIN", b"secret")


def test_malformed_stored_state_never_verifies() -> None:
    step = respond(CramMd5(), b"secret")
    assert isinstance(step, Finished)
    assert step.credentials is not None
    assert not proof(step).check("CRAM-MD5", b"short")
    assert not proof(step).check("CRAM-MD5", b"z" * 64)


def test_the_response_is_split_at_the_last_space_so_usernames_may_contain_spaces() -> None:
    step = respond(CramMd5(), b"secret", user=b"alice liddell")
    assert isinstance(step, Finished)
    assert step.authcid == "alice liddell"


def test_an_uppercase_hex_digest_is_accepted() -> None:
    mech = CramMd5()
    challenge = mech.start(None)
    assert isinstance(challenge, Challenge)
    digest = hmac.new(b"secret", challenge.data, "md5").hexdigest().upper().encode()
    step = mech.respond(b"alice " + digest)
    assert isinstance(step, Finished)
    assert step.credentials is not None
    assert proof(step).check("PLAIN", b"secret")


def test_responses_without_a_username_or_a_proper_digest_fail() -> None:
    for response in (
        b"alice",
        b" 7f02a11c1cb51557bd662f97e8213a5f",
        b"alice 7f02",
        b"alice " + b"g" * 32,
    ):
        mech = CramMd5()
        mech.start(None)
        assert isinstance(mech.respond(response), MechanismFailed), response


def test_an_initial_response_is_ignored_and_the_server_still_challenges() -> None:
    assert isinstance(CramMd5().start(b"alice"), Challenge)
