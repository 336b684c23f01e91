"""Client sides of the SASL mechanisms, written from the RFCs, and credential makers.

The server code under test never computes these: the tests check the server
against an independent client computation (and against the RFC test vectors).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from mailwarden.model import BearerToken, CredentialProof, Password
from mailwarden.sasl.base import Finished
from mailwarden.schemes import cram


def md5(data: bytes) -> bytes:
    """MD5, which CRAM-MD5, DIGEST-MD5 and APOP are defined over."""
    return hashlib.md5(data).digest()  # noqa: S324 - the mechanisms are MD5 by definition


def proof(step: object) -> CredentialProof:
    """The challenge-response proof a finished exchange carries (asserting there is one)."""
    assert isinstance(step, Finished)
    assert step.credentials is not None
    assert not isinstance(step.credentials, Password | BearerToken)
    return step.credentials


def scram_stored(hash_name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
    """``{SCRAM-*}`` credentials as Dovecot stores them: ``iter,b64salt,b64stored,b64server``."""
    salted = hashlib.pbkdf2_hmac(hash_name, password, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", hash_name)
    parts = (
        str(iterations),
        base64.b64encode(salt).decode(),
        base64.b64encode(stored_key).decode(),
        base64.b64encode(server_key).decode(),
    )
    return ",".join(parts).encode()


@dataclass
class ScramClient:
    """RFC 5802 §3 client: client-first, then client-final for a server-first."""

    hash_name: str
    username: str
    password: bytes
    cnonce: str
    authzid: str | None = None
    cbind: str = "n"

    @property
    def gs2_header(self) -> str:
        authzid = "" if self.authzid is None else "a=" + _saslname(self.authzid)
        return f"{self.cbind},{authzid},"

    @property
    def first_bare(self) -> str:
        return f"n={_saslname(self.username)},r={self.cnonce}"

    def first(self) -> bytes:
        return (self.gs2_header + self.first_bare).encode()

    def final(self, server_first: bytes) -> tuple[bytes, bytes]:
        """The client-final message and the server-final message it expects."""
        attrs = dict(item.split("=", 1) for item in server_first.decode().split(","))
        salted = hashlib.pbkdf2_hmac(
            self.hash_name, self.password, base64.b64decode(attrs["s"]), int(attrs["i"])
        )
        client_key = hmac.digest(salted, b"Client Key", self.hash_name)
        stored_key = hashlib.new(self.hash_name, client_key).digest()
        cbind = base64.b64encode(self.gs2_header.encode()).decode()
        without_proof = f"c={cbind},r={attrs['r']}"
        auth_message = f"{self.first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, self.hash_name)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", self.hash_name)
        verifier = hmac.digest(server_key, auth_message, self.hash_name)
        final = f"{without_proof},p={base64.b64encode(proof).decode()}"
        return final.encode(), b"v=" + base64.b64encode(verifier)


def _saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def digest_md5_ha1(username: str, realm: str, password: bytes) -> bytes:
    return md5(f"{username}:{realm}:".encode() + password)


def digest_md5_values(
    *,
    ha1: bytes,
    nonce: str,
    cnonce: str,
    digest_uri: str,
    nc: str = "00000001",
    qop: str = "auth",
    authzid: str | None = None,
) -> tuple[str, str]:
    """RFC 2831 §2.1.2.1: (response-value, rspauth value)."""

    def hx(data: bytes) -> bytes:
        return md5(data).hex().encode()

    a1 = ha1 + f":{nonce}:{cnonce}".encode()
    if authzid is not None:
        a1 += f":{authzid}".encode()
    out = []
    for prefix in ("AUTHENTICATE:", ":"):
        a2 = f"{prefix}{digest_uri}".encode()
        out.append(hx(hx(a1) + f":{nonce}:{nc}:{cnonce}:{qop}:".encode() + hx(a2)).decode())
    return out[0], out[1]


def cram_md5_state(password: bytes) -> bytes:
    """The ``{CRAM-MD5}`` 32-byte state (checked against doveadm's vector in test_md5state)."""
    return cram.cram_state(password)


def dovecot_digest_credentials(user: str, password: bytes) -> bytes:
    """``{DIGEST-MD5}`` credentials the way Dovecot derives them: user split at the last ``@``."""
    name, _, realm = user.rpartition("@") if "@" in user else (user, "", "")
    return digest_md5_ha1(name, realm, password)
