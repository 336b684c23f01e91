"""OpenPGP through GnuPG, for the mail gateway and the web page: find the signed text
of a mail, verify it, encrypt replies, and read the public keys accounts give.

Everything that runs GnuPG lives here (through python-gnupg, which runs the ``gpg``
program with ``--status-fd`` and parses its machine-readable status lines). Two
ways of signing a mail are understood:

* **clearsigned** (``-----BEGIN PGP SIGNED MESSAGE-----`` in a text body, possibly
  quoted-printable or base64 encoded): the signed text is what GnuPG says was
  signed, never the text around the armour, which anybody may have added.
* **PGP/MIME** (RFC 3156, ``multipart/signed; protocol="application/pgp-signature"``):
  the detached signature is verified over the *exact bytes* of the first body
  part — its MIME headers and body, from the line after the boundary up to the
  line break before the next boundary — with every line break made CRLF, as the
  RFC requires. The part is taken from the raw message, not re-serialised by
  Python's ``email`` package, which would refold headers and break signatures.

Trust. The keyring (``[mailgate] gnupg_home``) holds only the keys the
administrator imported for accounts; GnuPG's web of trust is not consulted. What
makes a signature count is that the *primary* key fingerprint GnuPG reports
(``VALIDSIG``'s last field: a signing subkey maps to its primary key) is the
``pgp_fingerprint`` of exactly one account. A signature is refused unless GnuPG
reports it good (``GOODSIG`` and ``VALIDSIG``), with no problem (expired or revoked
key, expired signature, missing key), and there is exactly one signature — a
second signer could otherwise choose which account the message acts on.
"""

from __future__ import annotations

import email.message
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Literal

import gnupg  # type: ignore[import-untyped]

from mailwarden.errors import FieldError, MailwardenError
from mailwarden.mailgate import mime


class VerificationError(MailwardenError):
    """The mail is unsigned, or its signature cannot be trusted.

    Raised by :class:`Verifier`; caught by the gateway, which logs it and sends no
    mail at all (the sender cannot be trusted, so a reply could be backscatter).
    ``reason`` is one short phrase for the log.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unsigned(VerificationError):
    """Neither a clearsigned body nor a PGP/MIME signature was found."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedText:
    """What a verified signature covers and who made it."""

    text: str
    signed_bytes: bytes
    fingerprint: str
    signed_at: int
    kind: Literal["clearsign", "pgp/mime"]


_BEGIN = b"-----BEGIN PGP SIGNED MESSAGE-----"
_END_SIGNATURE = b"-----END PGP SIGNATURE-----"
_STATUS_PROBLEMS = frozenset(
    {"signature bad", "signature error", "signature expired", "no public key", "no secret key"}
)


def _lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def _crlf(data: bytes) -> bytes:
    return _lf(data).replace(b"\n", b"\r\n")


def split_multipart(raw: bytes, boundary: str) -> list[bytes]:
    """The body parts of the multipart message ``raw``, byte for byte (LF line ends).

    A part runs from the line after a ``--boundary`` line to the line break before
    the next one (RFC 2046 section 5.1.1: that line break belongs to the delimiter).
    The preamble and epilogue are dropped. Raises VerificationError if the closing
    delimiter is missing.
    """
    text = _lf(raw)
    header_end = text.find(b"\n\n")
    body = text[header_end + 2 :] if header_end >= 0 else b""
    delimiter = b"--" + boundary.encode("ascii", "replace")
    parts: list[bytes] = []
    current: list[bytes] | None = None
    for line in body.split(b"\n"):
        stripped = line.rstrip(b" \t")
        if stripped == delimiter + b"--":
            if current is not None:
                parts.append(b"\n".join(current))
            return parts
        if stripped == delimiter:
            if current is not None:
                parts.append(b"\n".join(current))
            current = []
        elif current is not None:
            current.append(line)
    raise VerificationError("multipart/signed without its closing boundary")


def _text_of(part: email.message.Message) -> str:
    """The decoded text of a text/plain part (its charset, utf-8 by default)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _first_text(message: email.message.Message) -> str | None:
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            return _text_of(part)
    return None


def _bodies(message: email.message.Message) -> list[bytes]:
    """Every decoded text/plain body: where a clearsigned block can be."""
    out: list[bytes] = []
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                out.append(payload)
    return out


def _parse(raw: bytes) -> email.message.Message:
    """``raw`` parsed within :mod:`.mime`'s limits; VerificationError beyond them."""
    try:
        return mime.parse(raw)
    except mime.TooComplex as exc:
        raise VerificationError(str(exc)) from exc


class Verifier:
    """Verifies mails against the keyring in ``gnupg_home``; also encrypts and signs replies."""

    def __init__(self, gnupg_home: str, *, gpg_binary: str = "gpg") -> None:
        if not os.path.isdir(gnupg_home):
            raise VerificationError(f"GnuPG home {gnupg_home} does not exist")
        try:
            self._gpg = gnupg.GPG(gnupghome=gnupg_home, gpgbinary=gpg_binary)
        except (OSError, ValueError) as exc:  # python-gnupg: the binary does not run
            raise VerificationError(f"cannot run {gpg_binary}: {exc}") from exc
        # python-gnupg decodes gpg's stderr (status lines and messages, which can
        # quote the mail's bytes) with this codec, strictly, in a reader thread:
        # with utf-8, one stray byte kills that thread (a traceback on stderr) and
        # the rest of the status is lost. latin-1 decodes any byte; every text we
        # hand to gpg is encoded to UTF-8 bytes here, and every text we take back
        # is decoded from bytes here, so this codec is used for nothing else.
        self._gpg.encoding = "latin-1"

    # ------------------------------------------------------------------ verify

    def verify_message(self, raw: bytes) -> SignedText:
        """The signed text of the mail ``raw`` and its signer; VerificationError if none."""
        message = _parse(raw)
        if (
            message.get_content_type() == "multipart/signed"
            and (message.get_param("protocol") or "") == "application/pgp-signature"
        ):
            return self._verify_mime(raw, message)
        blocks = [body for body in _bodies(message) if _BEGIN in body]
        if not blocks:
            raise Unsigned("no OpenPGP signature")
        if len(blocks) > 1 or blocks[0].count(_BEGIN) > 1:
            raise VerificationError("more than one signed block")
        return self._verify_clearsigned(blocks[0])

    def _verify_clearsigned(self, body: bytes) -> SignedText:
        start = body.index(_BEGIN)
        end = body.find(_END_SIGNATURE, start)
        if end < 0:
            raise VerificationError("clearsigned block without its signature")
        block = body[start : end + len(_END_SIGNATURE)] + b"\n"
        # gpg --decrypt on a clearsigned block verifies it and outputs exactly the
        # signed text (dash-escaping undone), so nothing outside the armour counts.
        result = self._gpg.decrypt(block, extra_args=["--no-auto-key-retrieve"])
        fingerprint, signed_at = self._check(result)
        signed = bytes(result.data)
        return SignedText(
            text=signed.decode("utf-8", "replace"),
            signed_bytes=signed,
            fingerprint=fingerprint,
            signed_at=signed_at,
            kind="clearsign",
        )

    def _verify_mime(self, raw: bytes, message: email.message.Message) -> SignedText:
        boundary = message.get_boundary()
        if not boundary:
            raise VerificationError("multipart/signed without a boundary")
        parts = split_multipart(raw, boundary)
        if len(parts) != 2:
            raise VerificationError(f"multipart/signed with {len(parts)} parts, not 2")
        signature_part = _parse(parts[1])
        if signature_part.get_content_type() != "application/pgp-signature":
            raise VerificationError("the second part is not application/pgp-signature")
        signature = signature_part.get_payload(decode=True)
        if not isinstance(signature, bytes) or not signature.strip():
            raise VerificationError("empty signature part")
        signed = _crlf(parts[0])
        # verify_data reads the detached signature from a file.
        with tempfile.NamedTemporaryFile(prefix="mailgate-sig-", suffix=".asc") as sig_file:
            sig_file.write(signature)
            sig_file.flush()
            result = self._gpg.verify_data(
                sig_file.name, signed, extra_args=["--no-auto-key-retrieve"]
            )
        fingerprint, signed_at = self._check(result)
        inner = _parse(signed)
        text = _first_text(inner)
        if text is None:
            raise VerificationError("the signed part has no text/plain body")
        return SignedText(
            text=text,
            signed_bytes=signed,
            fingerprint=fingerprint,
            signed_at=signed_at,
            kind="pgp/mime",
        )

    def _check(self, result: gnupg.Verify) -> tuple[str, int]:
        """(primary key fingerprint, signature time) of a good, sole signature."""
        status = result.status or "no signature"
        if result.key_status:
            raise VerificationError(result.key_status)
        if not result.valid or result.problems or status in _STATUS_PROBLEMS:
            # gpg reports ERRSIG before its cause (NO_PUBKEY ...): the last one says most.
            problem = result.problems[-1]["status"] if result.problems else status
            raise VerificationError(str(problem))
        if len(result.sig_info) != 1:
            raise VerificationError(f"{len(result.sig_info)} signatures, expected exactly one")
        fingerprint = result.pubkey_fingerprint or result.fingerprint
        if not fingerprint or not result.sig_timestamp:
            raise VerificationError("GnuPG reported no signing key")
        return str(fingerprint).upper(), int(result.sig_timestamp)

    # ------------------------------------------------------------------ replies

    def encrypt(self, text: str, fingerprint: str, *, sign_with: str = "") -> str:
        """``text`` encrypted to the key ``fingerprint`` only (ASCII armour)."""
        result = self._gpg.encrypt(
            text.encode("utf-8"),
            [fingerprint],
            always_trust=True,
            sign=sign_with or None,
            armor=True,
            extra_args=["--no-encrypt-to", "--no-default-recipient", "--pinentry-mode", "loopback"],
        )
        if not result.ok:
            raise VerificationError(f"cannot encrypt to {fingerprint}: {result.status}")
        return bytes(result.data).decode("ascii")

    def clearsign(self, text: str, key: str) -> str:
        """``text`` clearsigned with the gateway's key ``key`` (no passphrase)."""
        result = self._gpg.sign(
            text.encode("utf-8"),
            keyid=key,
            clearsign=True,
            extra_args=["--pinentry-mode", "loopback"],
        )
        if not result.data:
            raise VerificationError(f"cannot sign with {key}: {result.status}")
        return bytes(result.data).decode("utf-8")

    def public_key(self, fingerprint: str) -> str:
        """The ASCII-armoured public key ``fingerprint`` ('' if the keyring lacks it)."""
        return str(self._gpg.export_keys(fingerprint))  # ASCII armour: any codec does


_FPR_RE = re.compile(r"^[0-9A-F]{40}([0-9A-F]{24})?$")


def is_fingerprint(value: str) -> bool:
    """Whether ``value`` is a full v4 (40 hex) or v5 (64 hex) fingerprint, spaces allowed."""
    return bool(_FPR_RE.match(value.replace(" ", "").upper()))


# --------------------------------------------------------------------------- a key pasted by a user


def public_key_fingerprint(armored: str, *, gpg_binary: str = "gpg") -> str:
    """The primary fingerprint (upper-case hex) of the one armoured public key in ``armored``.

    GnuPG reads the key (``--import --import-options show-only`` into a throwaway
    home, so no keyring changes): what it cannot read, nobody stores. FieldError
    with a message for the user when the text is a private key (refused before
    GnuPG sees it), holds no key or several, or is damaged. Blocking (runs
    ``gpg``; OSError if it cannot): call it in a thread.
    """
    if "PRIVATE KEY BLOCK" in armored:
        raise FieldError("this is a private key: paste the public key only")
    with tempfile.TemporaryDirectory(prefix="mailwarden-gpg-") as home:
        result = gnupg.GPG(gnupghome=home, gpgbinary=gpg_binary).scan_keys_mem(armored)
    keys = [key for key in result if key.get("type") == "pub"]
    if len(keys) == 1:
        return str(keys[0]["fingerprint"]).upper()
    if "CRC error" in (result.stderr or ""):
        raise FieldError("the armour checksum does not match: the key was damaged")
    raise FieldError("paste exactly one ASCII-armoured public key block")


def import_public_key(gnupg_home: str, armored: str, *, gpg_binary: str = "gpg") -> list[str]:
    """Import a key into the gateway's keyring; the fingerprints GnuPG imported.

    The gateway trusts exactly the keys in its keyring (the module docstring),
    so the web page puts a user's new key there. Blocking: call it in a thread.
    """
    result = gnupg.GPG(gnupghome=gnupg_home, gpgbinary=gpg_binary).import_keys(armored)
    return [str(f).upper() for f in result.fingerprints]
