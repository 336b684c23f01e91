"""``{SCRAM-SHA-1}`` and ``{SCRAM-SHA-256}``: RFC 5802 server credentials.

Stored as ``<iterations>,<b64 salt>,<b64 StoredKey>,<b64 ServerKey>`` where
SaltedPassword = PBKDF2-HMAC-H(password, base64-decoded salt, iterations),
StoredKey = H(HMAC(SaltedPassword, "Client Key")) and
ServerKey = HMAC(SaltedPassword, "Server Key"). A password verifies when it gives
the same StoredKey. These are exactly the credentials the SCRAM mechanism needs, so
``credentials()`` hands them over as stored.

Iterations must be 4096 to 2³¹−1 (Dovecot's range). doveadm always generates 4096
and ignores ``-r``; we take ``rounds`` or the policy's ``scram_iterations``, never
fewer than 4096. Salts are 16 random bytes, like doveadm's. hashlib's PBKDF2
releases the GIL. Strength rank 3; heavy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from mailwarden.errors import MalformedHash
from mailwarden.schemes.base import HashPolicy, StoredHash
from mailwarden.schemes.common import BaseScheme, Profile, chosen, decode_b64, to_text

MIN_ITERATIONS = 4096
MAX_ITERATIONS = 2**31 - 1
SALT_SIZE = 16

_ITERATIONS = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """The four fields of a stored SCRAM value."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes


def derive(hash_name: str, password: bytes, salt: bytes, iterations: int) -> ScramCredentials:
    """The credentials of ``password`` for this salt and count (RFC 5802 §3)."""
    salted = hashlib.pbkdf2_hmac(hash_name, password, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    return ScramCredentials(
        iterations=iterations,
        salt=salt,
        stored_key=hashlib.new(hash_name, client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", hash_name),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Scram(BaseScheme):
    """SCRAM credentials over ``hash_name`` (``sha1`` or ``sha256``)."""

    hash_name: str

    def parse(self, raw: bytes) -> ScramCredentials:
        """The stored fields, checked as Dovecot's scram_scheme_parse checks them."""
        fields = to_text(raw).split(",")
        if len(fields) != 4:
            raise MalformedHash(f"{self.name} data is not iter,salt,storedkey,serverkey")
        count, salt, stored_key, server_key = fields
        if _ITERATIONS.fullmatch(count) is None:
            raise MalformedHash(f"{self.name} iteration count is not a number")
        iterations = int(count)
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise MalformedHash(f"{self.name} iteration count out of range")
        size = hashlib.new(self.hash_name).digest_size
        keys = decode_b64(stored_key), decode_b64(server_key)
        if any(len(key) != size for key in keys):
            raise MalformedHash(f"{self.name} keys are not {size} bytes")
        return ScramCredentials(iterations, decode_b64(salt), *keys)

    def iterations(self, rounds: int | None, policy: HashPolicy) -> int:
        wanted = chosen(rounds, policy.scram_iterations)
        return min(max(wanted, MIN_ITERATIONS), MAX_ITERATIONS)

    def stored_text(self, password: bytes, salt: bytes, iterations: int) -> bytes:
        """The stored form of ``password``'s credentials for this salt and count."""
        made = derive(self.hash_name, password, salt, iterations)
        fields = (made.salt, made.stored_key, made.server_key)
        encoded = ",".join(base64.b64encode(field).decode("ascii") for field in fields)
        return f"{made.iterations},{encoded}".encode("ascii")

    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        salt = secrets.token_bytes(SALT_SIZE)
        return self.stored_text(password, salt, self.iterations(rounds, policy))

    def verify_raw(self, password: bytes, raw: bytes, *, user: str) -> bool:
        stored = self.parse(raw)
        made = derive(self.hash_name, password, stored.salt, stored.iterations)
        return hmac.compare_digest(made.stored_key, stored.stored_key)

    def profile(self, stored: StoredHash) -> Profile:
        parsed = self.parse(self.decode(stored))
        return Profile(self.name, self.strength, (parsed.iterations,))

    def target(self, policy: HashPolicy) -> Profile:
        return Profile(self.name, self.strength, (self.iterations(None, policy),))


SCRAM_SHA_1 = Scram(
    name="SCRAM-SHA-1", family="SCRAM-SHA-1", strength=3, heavy=True, hash_name="sha1"
)
SCRAM_SHA_256 = Scram(
    name="SCRAM-SHA-256", family="SCRAM-SHA-256", strength=3, heavy=True, hash_name="sha256"
)
