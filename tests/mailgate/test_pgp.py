"""Signature checks with real GnuPG: which mails identify a key, and which are refused."""

from __future__ import annotations

import base64
import quopri
import subprocess
import time

import pytest

from mailwarden.accounts.openpgp import Unsigned, VerificationError, Verifier, split_multipart
from tests.mailgate.conftest import DAY, Keys, gpg, mail, mime_mail, revoke_in_gateway


@pytest.fixture(scope="module")
def verifier(keys: Keys) -> Verifier:
    return Verifier(str(keys.gateway))


def test_a_clearsigned_mail_yields_the_signed_text_and_the_primary_fingerprint(
    keys: Keys, verifier: Verifier
) -> None:
    before = int(time.time())
    signed = verifier.verify_message(mail(keys.clearsign("ircnick: alice\n", keys.alice)))
    assert signed.fingerprint == keys.alice
    assert signed.kind == "clearsign"
    assert signed.text.strip() == "ircnick: alice"
    assert before - 5 <= signed.signed_at <= time.time() + 5


def test_text_outside_the_clearsigned_armour_is_not_part_of_the_signed_text(
    keys: Keys, verifier: Verifier
) -> None:
    body = b"del ircnick\n" + keys.clearsign("ping\n", keys.alice) + b"loginshell: /bin/sh\n"
    signed = verifier.verify_message(mail(body))
    assert signed.text.strip() == "ping"


def test_a_clearsigned_body_in_quoted_printable_or_base64_is_verified(
    keys: Keys, verifier: Verifier
) -> None:
    block = keys.clearsign("c: DE\n", keys.bob)
    for encoding, encoded in (
        ("quoted-printable", quopri.encodestring(block)),
        ("base64", base64.encodebytes(block)),
    ):
        raw = (
            b"From: x@example\nSubject: t\nMIME-Version: 1.0\n"
            b"Content-Type: text/plain; charset=utf-8\n"
            b"Content-Transfer-Encoding: " + encoding.encode() + b"\n\n" + encoded
        )
        assert verifier.verify_message(raw).fingerprint == keys.bob


def test_a_pgp_mime_mail_is_verified_over_the_exact_first_part(
    keys: Keys, verifier: Verifier
) -> None:
    signed = verifier.verify_message(mime_mail(keys, "ircnick: alice\nc: GB\n", keys.alice))
    assert signed.kind == "pgp/mime"
    assert signed.fingerprint == keys.alice
    assert signed.text == "ircnick: alice\r\nc: GB\r\n"


def test_a_pgp_mime_mail_survives_lf_line_endings(keys: Keys, verifier: Verifier) -> None:
    # MTAs hand mail to pipes with LF line ends; the signed part is made CRLF again.
    raw = mime_mail(keys, "ping\n", keys.alice).replace(b"\r\n", b"\n")
    assert verifier.verify_message(raw).fingerprint == keys.alice


@pytest.mark.parametrize("kind", ["clearsign", "pgp/mime"])
def test_a_tampered_mail_is_refused(keys: Keys, verifier: Verifier, kind: str) -> None:
    if kind == "clearsign":
        raw = mail(keys.clearsign("ircnick: alice\n", keys.alice))
    else:
        raw = mime_mail(keys, "ircnick: alice\n", keys.alice)
    tampered = raw.replace(b"ircnick: alice", b"ircnick: mallet")
    assert tampered != raw
    with pytest.raises(VerificationError, match="bad"):
        verifier.verify_message(tampered)


def test_an_unsigned_mail_is_refused(verifier: Verifier) -> None:
    with pytest.raises(Unsigned):
        verifier.verify_message(mail(b"ircnick: alice\n"))


def test_a_key_missing_from_the_gateway_keyring_is_refused(keys: Keys, verifier: Verifier) -> None:
    with pytest.raises(VerificationError, match="no public key"):
        verifier.verify_message(mail(keys.clearsign("ping\n", keys.mallory)))


def test_a_signature_by_an_expired_key_is_refused(keys: Keys, verifier: Verifier) -> None:
    # Signed while the key was still valid (36 hours ago), checked now that it is not.
    body = keys.clearsign("ping\n", keys.expired, at=time.time() - 1.5 * DAY)
    with pytest.raises(VerificationError, match="expired"):
        verifier.verify_message(mail(body))


def test_a_signature_by_a_revoked_key_is_refused(keys: Keys) -> None:
    body = keys.clearsign("ping\n", keys.revoked)
    verifier = Verifier(str(keys.gateway))
    assert verifier.verify_message(mail(body)).fingerprint == keys.revoked
    revoke_in_gateway(keys)
    with pytest.raises(VerificationError, match="revoked"):
        verifier.verify_message(mail(body))


def test_two_signed_blocks_are_refused(keys: Keys, verifier: Verifier) -> None:
    body = keys.clearsign("ping\n", keys.alice) + keys.clearsign("ping\n", keys.bob)
    with pytest.raises(VerificationError, match="more than one"):
        verifier.verify_message(mail(body))


def test_a_message_signed_by_two_keys_is_refused(keys: Keys, verifier: Verifier) -> None:
    body = gpg(keys.world, "-u", keys.alice, "-u", keys.bob, "--clearsign", stdin=b"ping\n")
    with pytest.raises(VerificationError, match="2 signatures"):
        verifier.verify_message(mail(body))


def test_split_multipart_keeps_each_part_byte_for_byte() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\npre\n--b\nA: 1\n\nx \n\n--b \nB\n--b--\nepi"
    )
    assert split_multipart(raw, "b") == [b"A: 1\n\nx \n", b"B"]
    with pytest.raises(VerificationError, match="closing"):
        split_multipart(b"H: 1\n\n--b\nA\n", "b")


def test_replies_are_encrypted_to_the_account_key_only(keys: Keys, verifier: Verifier) -> None:
    armoured = verifier.encrypt("secret words", keys.alice, sign_with=keys.gateway_key)
    assert "secret words" not in armoured
    assert gpg(keys.world, "--decrypt", stdin=armoured.encode()) == b"secret words"
    # The gateway holds no secret key of alice: it cannot read its own reply.
    done = subprocess.run(
        ["gpg", "--homedir", str(keys.gateway), "--batch", "--decrypt"],
        input=armoured.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
