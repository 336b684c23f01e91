"""SCRAM-SHA-1 and SCRAM-SHA-256 against the RFC 5802 / RFC 7677 test vectors."""

from __future__ import annotations

import base64
import re

import pytest

from mailwarden.sasl.base import (
    Challenge,
    Finished,
    MechanismContext,
    MechanismFailed,
    NeedCredentials,
)
from mailwarden.sasl.scram import ScramProof, ScramSha1, ScramSha256, unescape_saslname
from tests.sasl.clients import ScramClient, proof, scram_stored


def nonce_bytes(nonce: str) -> bytes:
    """Random bytes that Dovecot's nonce mapping turns into ``nonce``."""
    return bytes(ord(c) - ord("!") for c in nonce)


def pinned(nonce: str) -> MechanismContext:
    return MechanismContext(random_bytes=lambda n: nonce_bytes(nonce))


def test_rfc_5802_vector_scram_sha_1() -> None:
    creds = scram_stored("sha1", b"pencil", base64.b64decode("QSXCR+Q6sek8bf92"), 4096)
    mech = ScramSha1(pinned("3rfcNHYJY1ZVvWVs7j"))
    need = mech.start(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")
    assert need == NeedCredentials(username="user", scheme="SCRAM-SHA-1")
    server_first = mech.provide_credentials(creds)
    assert server_first == Challenge(
        data=b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
    )
    step = mech.respond(
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    )
    assert isinstance(step, Finished)
    assert step.success_data == b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="
    assert (step.authcid, step.authzid) == ("user", None)
    assert isinstance(step.credentials, ScramProof)
    assert proof(step).check("SCRAM-SHA-1", creds)
    assert proof(step).check("PLAIN", b"pencil")
    assert not proof(step).check("PLAIN", b"pencil2")


def test_rfc_7677_vector_scram_sha_256() -> None:
    creds = scram_stored("sha256", b"pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
    mech = ScramSha256(pinned("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"))
    mech.start(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    server_first = mech.provide_credentials(creds)
    assert server_first == Challenge(
        data=b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    step = mech.respond(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert isinstance(step, Finished)
    assert step.success_data == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert step.credentials is not None
    assert proof(step).check("SCRAM-SHA-256", creds)
    assert proof(step).check("PLAIN", b"pencil")


# doveadm pw -s SCRAM-SHA-256 -p secret (reference §4), and the client-first of the
# reference's §1.6 transcript: resp=biwsbj1ldmUscj1yT3ByTkdmd0ViZVJXZ2JORWtxTw==
DOVEADM_SCRAM_256 = (
    b"4096,4Y+JN2FQykrI/pxBBNS08w==,X9W5CwFbgKzZRn+vdr3Sf/QJL5FGqrNCG6su6kbWVLk=,"
    b"GMGKCEbEum36jGF1yIdJOLJVPw3xuYKsFa4bjvQAsFY="
)


def test_dovecots_stored_value_drives_the_exchange_of_the_reference_transcript() -> None:
    client_first = base64.b64decode("biwsbj1ldmUscj1yT3ByTkdmd0ViZVJXZ2JORWtxTw==")
    client = ScramClient("sha256", "eve", b"secret", "rOprNGfwEbeRWgbNEkqO")
    assert client.first() == client_first
    mech = ScramSha256()
    assert mech.start(client_first) == NeedCredentials(username="eve", scheme="SCRAM-SHA-256")
    server_first = mech.provide_credentials(DOVEADM_SCRAM_256)
    assert isinstance(server_first, Challenge)
    match = re.fullmatch(
        rb"r=rOprNGfwEbeRWgbNEkqO([!-~]{64}),s=4Y\+JN2FQykrI/pxBBNS08w==,i=4096", server_first.data
    )
    assert match is not None and b"," not in match.group(1)
    final, verifier = client.final(server_first.data)
    step = mech.respond(final)
    assert isinstance(step, Finished)
    assert step.success_data == verifier
    assert step.credentials is not None
    assert proof(step).check("SCRAM-SHA-256", DOVEADM_SCRAM_256)
    assert proof(step).check("PLAIN", b"secret")


def run(client: ScramClient, stored_password: bytes = b"secret") -> Finished | MechanismFailed:
    mech = ScramSha256() if client.hash_name == "sha256" else ScramSha1()
    mech.start(client.first())
    creds = scram_stored(client.hash_name, stored_password, b"0123456789abcdef", 4096)
    server_first = mech.provide_credentials(creds)
    assert isinstance(server_first, Challenge)
    final, _ = client.final(server_first.data)
    step = mech.respond(final)
    assert isinstance(step, Finished | MechanismFailed)
    return step


def test_without_an_initial_response_the_server_sends_an_empty_challenge() -> None:
    mech = ScramSha1()
    assert mech.start(None) == Challenge(data=b"")
    assert isinstance(mech.respond(b"n,,n=user,r=abc"), NeedCredentials)


def test_a_wrong_password_gives_a_proof_that_does_not_verify() -> None:
    step = run(ScramClient("sha256", "alice", b"wrong", "cnonce"))
    assert isinstance(step, Finished)
    creds = scram_stored("sha256", b"secret", b"0123456789abcdef", 4096)
    assert step.credentials is not None
    assert not proof(step).check("SCRAM-SHA-256", creds)
    assert not proof(step).check("PLAIN", b"secret")


def test_stored_keys_with_another_salt_or_count_never_verify() -> None:
    step = run(ScramClient("sha1", "alice", b"secret", "cnonce"))
    assert isinstance(step, Finished)
    assert step.credentials is not None
    assert proof(step).check(
        "SCRAM-SHA-1", scram_stored("sha1", b"secret", b"0123456789abcdef", 4096)
    )
    assert not proof(step).check(
        "SCRAM-SHA-1", scram_stored("sha1", b"secret", b"other salt", 4096)
    )
    assert not proof(step).check(
        "SCRAM-SHA-1", scram_stored("sha1", b"secret", b"0123456789abcdef", 5000)
    )


def test_an_authzid_with_escapes_is_unescaped_and_reported() -> None:
    step = run(ScramClient("sha256", "ad=min,x", b"secret", "cnonce", authzid="al,ice=x"))
    assert isinstance(step, Finished)
    assert (step.authcid, step.authzid) == ("ad=min,x", "al,ice=x")


def test_the_y_flag_is_accepted_like_n() -> None:
    step = run(ScramClient("sha256", "alice", b"secret", "cnonce", cbind="y"))
    assert isinstance(step, Finished)
    assert step.credentials is not None
    assert proof(step).check("PLAIN", b"secret")


@pytest.mark.parametrize(
    "client_first",
    [
        b"p=tls-unique,,n=user,r=abc",  # channel binding
        b"x,,n=user,r=abc",
        b"n,,m=ext,n=user,r=abc",  # mandatory extension
        b"n,,n=us=2Xer,r=abc",  # bad escape
        b"n,,n=,r=abc",
        b"n,,user,r=abc",
        b"n,,n=user,nonce",
        b"n,,n=user,r=",
        b"n,,n=user",
        b"n,b=x,n=user,r=abc",
        b"n,a=,n=user,r=abc",
        b"n,",
        b"",
    ],
)
def test_malformed_client_first_messages_fail(client_first: bytes) -> None:
    assert isinstance(ScramSha256().start(client_first), MechanismFailed)


def start_final_round() -> tuple[ScramSha256, bytes]:
    mech = ScramSha256()
    mech.start(b"n,,n=user,r=abc")
    server_first = mech.provide_credentials(scram_stored("sha256", b"pencil", b"saltsalt", 4096))
    assert isinstance(server_first, Challenge)
    return mech, server_first.data[2 : server_first.data.index(b",")]


@pytest.mark.parametrize(
    "template",
    [
        b"c=eSws,r={nonce},p=" + base64.b64encode(b"x" * 32),  # channel binding data of 'y'
        b"c=biws,r={nonce}X,p=" + base64.b64encode(b"x" * 32),  # wrong nonce
        b"c=biws,r={nonce},p=" + base64.b64encode(b"x" * 20),  # SHA-1 sized proof
        b"c=biws,r={nonce},p=!!!!",
        b"c=biws,r={nonce},q=abc",
        b"c=biws,r={nonce}",
    ],
)
def test_malformed_client_final_messages_fail(template: bytes) -> None:
    mech, nonce = start_final_round()
    assert isinstance(mech.respond(template.replace(b"{nonce}", nonce)), MechanismFailed)


@pytest.mark.parametrize(
    "stored",
    [
        b"4095,c2FsdA==,"
        + base64.b64encode(b"k" * 32)
        + b","
        + base64.b64encode(b"k" * 32),  # under Dovecot's minimum count
        b"4096,c2FsdA==," + base64.b64encode(b"k" * 20) + b"," + base64.b64encode(b"k" * 32),
        b"4096,c2FsdA==,xx,yy",
        b"plaintext",
    ],
)
def test_malformed_stored_credentials_fail_the_request(stored: bytes) -> None:
    mech = ScramSha256()
    mech.start(b"n,,n=user,r=abc")
    step = mech.provide_credentials(stored)
    assert isinstance(step, MechanismFailed)
    assert step.user == "user"


def test_a_server_nonce_never_contains_a_comma() -> None:
    mech = ScramSha256(MechanismContext(random_bytes=lambda n: bytes([11]) * n))
    mech.start(b"n,,n=user,r=abc")
    step = mech.provide_credentials(scram_stored("sha256", b"pencil", b"saltsalt", 4096))
    assert isinstance(step, Challenge)
    assert step.data.startswith(b"r=abc" + b"~" * 64 + b",")


def test_saslname_unescaping_follows_rfc_5802() -> None:
    assert unescape_saslname("a=2Cb=3Dc") == "a,b=c"
    assert unescape_saslname("a=2") is None
    assert unescape_saslname("a=2c") is None
    assert unescape_saslname("a,b") is None
