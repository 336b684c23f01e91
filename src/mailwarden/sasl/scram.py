"""SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding.

One module for both: they differ only in the hash. The exchange follows Dovecot's
mech-scram.c: the client-first message arrives as the initial response or after
an empty challenge; its gs2 header must be ``n`` or ``y`` (``p=`` asks for channel
binding, which is refused) with an optional ``a=`` authzid; the server nonce is 64
printable characters without ``,``. The salt and iteration count come from the
user's stored ``{SCRAM-*}`` credentials (``iter,b64salt,b64storedkey,b64serverkey``)
and the salt is sent exactly as stored.

The client proof is checked by the engine through :class:`ScramProof`; the
server-final ``v=`` message is :attr:`Finished.success_data`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from mailwarden.sasl.base import (
    Challenge,
    Exchange,
    Finished,
    Mechanism,
    MechanismFailed,
    MechFlag,
    NeedCredentials,
    b64decode,
    raw,
    text,
)

SERVER_NONCE_LENGTH = 64
MIN_ITERATIONS = 4096  # Dovecot's SCRAM_MIN_ITERATE_COUNT
MAX_ITERATIONS = 2**31 - 1


def unescape_saslname(value: str) -> str | None:
    """RFC 5802 §5.1: ``=2C`` is ``,`` and ``=3D`` is ``=``; any other ``=`` is invalid."""
    out: list[str] = []
    pos = 0
    while pos < len(value):
        char = value[pos]
        if char == ",":
            return None
        if char == "=":
            escape = value[pos + 1 : pos + 3]
            if escape == "2C":
                out.append(",")
            elif escape == "3D":
                out.append("=")
            else:
                return None
            pos += 3
            continue
        out.append(char)
        pos += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """Parsed ``{SCRAM-*}`` credentials."""

    iterations: int
    salt: str
    stored_key: bytes
    server_key: bytes


def parse_credentials(data: bytes, digest_size: int) -> ScramCredentials | None:
    """``iter,b64salt,b64storedkey,b64serverkey`` parsed as Dovecot checks it, or ``None``."""
    fields = text(data).split(",")
    if len(fields) != 4:
        return None
    iterations, salt, stored, server = fields
    if not (iterations.isascii() and iterations.isdigit()):
        return None
    count = int(iterations)
    if not MIN_ITERATIONS <= count <= MAX_ITERATIONS:
        return None
    stored_key = b64decode(stored)
    server_key = b64decode(server)
    if stored_key is None or server_key is None:
        return None
    if len(stored_key) != digest_size or len(server_key) != digest_size:
        return None
    return ScramCredentials(
        iterations=count, salt=salt, stored_key=stored_key, server_key=server_key
    )


@dataclass(frozen=True, slots=True)
class ScramProof:
    """A SCRAM client proof over ``auth_message``; checks itself against stored keys.

    With ``{SCRAM-*}`` credentials the salt and iteration count must be the ones
    the exchange used (they were sent to the client). With a plaintext password the
    salted password is derived using the exchange's own salt and count, so the check
    holds whatever credentials the exchange was given (including fake ones).
    """

    scheme: str
    hash_name: str
    salt: str
    iterations: int
    auth_message: bytes
    client_proof: bytes

    @property
    def schemes(self) -> tuple[str, ...]:
        return (self.scheme, "PLAIN")

    def check(self, scheme: str, credentials: bytes) -> bool:
        size = hashlib.new(self.hash_name).digest_size
        if scheme.upper() == "PLAIN":
            salt = b64decode(self.salt)
            if salt is None:
                return False
            salted = hashlib.pbkdf2_hmac(self.hash_name, credentials, salt, self.iterations)
            client_key = hmac.digest(salted, b"Client Key", self.hash_name)
            stored_key = hashlib.new(self.hash_name, client_key).digest()
        else:
            parsed = parse_credentials(credentials, size)
            if parsed is None or (parsed.salt, parsed.iterations) != (self.salt, self.iterations):
                return False
            stored_key = parsed.stored_key
        signature = hmac.digest(stored_key, self.auth_message, self.hash_name)
        claimed_key = bytes(p ^ s for p, s in zip(self.client_proof, signature, strict=True))
        return hmac.compare_digest(hashlib.new(self.hash_name, claimed_key).digest(), stored_key)


@dataclass(frozen=True, slots=True)
class _ClientFirst:
    gs2_header: str
    bare: str
    username: str
    authzid: str | None
    cnonce: str


def _read_client_first(message: str) -> _ClientFirst | str:
    """The client-first-message, or why it is unacceptable (RFC 5802 §7)."""
    parts = message.split(",", 2)
    if len(parts) < 3:
        return "invalid client-first message: incomplete gs2 header"
    cbind, authzid_field, bare = parts
    if cbind.startswith("p"):
        return "channel binding is not supported"
    if cbind not in ("n", "y"):
        return "invalid gs2 header"
    authzid: str | None = None
    if authzid_field:
        if not authzid_field.startswith("a="):
            return "invalid authzid field"
        authzid = unescape_saslname(authzid_field[2:])
        if not authzid:
            return "authzid escaping is invalid or empty"
    fields = bare.split(",")
    if len(fields) < 2:
        return "invalid client-first message: missing nonce"
    username_field, nonce_field = fields[0], fields[1]
    if username_field.startswith("m"):
        return "mandatory extensions are not supported"
    if not username_field.startswith("n="):
        return "invalid username field"
    username = unescape_saslname(username_field[2:])
    if not username:
        return "username escaping is invalid or empty"
    if not nonce_field.startswith("r="):
        return "invalid client nonce"
    cnonce = nonce_field[2:]
    if not cnonce or not all("\x21" <= c <= "\x7e" for c in cnonce):
        return "client nonce is empty or not printable"
    return _ClientFirst(
        gs2_header=f"{cbind},{authzid_field},",
        bare=bare,
        username=username,
        authzid=authzid,
        cnonce=cnonce,
    )


class _Scram(Mechanism):
    """SCRAM, server side; subclasses fix the hash."""

    flags = MechFlag.MUTUAL_AUTH
    hash_name: str

    def _server_nonce(self) -> str:
        # Dovecot's mapping: each random byte becomes one of '!'..'}', and ',' (not
        # allowed in a nonce) becomes '~'.
        chars = (
            chr(b % (ord("~") - ord("!")) + ord("!"))
            for b in self.context.random_bytes(SERVER_NONCE_LENGTH)
        )
        return "".join("~" if c == "," else c for c in chars)

    def _exchange(self, initial_response: bytes | None) -> Exchange:
        data = initial_response
        if data is None:
            data = yield Challenge(data=b"")
        first = _read_client_first(text(data))
        if isinstance(first, str):
            return MechanismFailed(reason=first)
        size = hashlib.new(self.hash_name).digest_size
        stored = yield NeedCredentials(username=first.username, scheme=self.name)
        credentials = parse_credentials(stored, size)
        if credentials is None:
            return MechanismFailed(
                reason=f"stored {self.name} credentials are malformed", user=first.username
            )
        nonce = first.cnonce + self._server_nonce()
        server_first = f"r={nonce},s={credentials.salt},i={credentials.iterations}"
        final = text((yield Challenge(data=raw(server_first))))
        fields = final.split(",")
        if len(fields) < 3:
            return MechanismFailed(reason="invalid client-final message", user=first.username)
        expected_cbind = "c=" + base64.b64encode(raw(first.gs2_header)).decode("ascii")
        if fields[0] != expected_cbind:
            return MechanismFailed(reason="invalid channel binding data", user=first.username)
        if fields[1] != "r=" + nonce:
            return MechanismFailed(reason="wrong nonce", user=first.username)
        if not fields[-1].startswith("p="):
            return MechanismFailed(reason="invalid client proof", user=first.username)
        proof = b64decode(fields[-1][2:])
        if proof is None or len(proof) != size:
            return MechanismFailed(
                reason="invalid client proof encoding or length", user=first.username
            )
        without_proof = ",".join(fields[:-1])
        auth_message = raw(f"{first.bare},{server_first},{without_proof}")
        signature = hmac.digest(credentials.server_key, auth_message, self.hash_name)
        return Finished(
            authcid=first.username,
            authzid=first.authzid if first.authzid != first.username else None,
            credentials=ScramProof(
                scheme=self.name,
                hash_name=self.hash_name,
                salt=credentials.salt,
                iterations=credentials.iterations,
                auth_message=auth_message,
                client_proof=proof,
            ),
            success_data=b"v=" + base64.b64encode(signature),
        )


class ScramSha1(_Scram):
    """SCRAM-SHA-1 (RFC 5802)."""

    name = "SCRAM-SHA-1"
    hash_name = "sha1"


class ScramSha256(_Scram):
    """SCRAM-SHA-256 (RFC 7677)."""

    name = "SCRAM-SHA-256"
    hash_name = "sha256"
