"""CRAM-MD5 (RFC 2195): HMAC-MD5 of a server challenge under the password.

The challenge is Dovecot's (mech-cram-md5.c): ``<`` 16 random digits ``.`` unix
time ``@`` hostname ``>``. The response is ``user SP hexdigest``, split at the
*last* space because usernames may contain spaces. No credentials are needed
during the exchange: the proof is checked by the engine against the stored
``{CRAM-MD5}`` state (or a plaintext password).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from mailwarden.sasl.base import (
    Challenge,
    Exchange,
    Finished,
    Mechanism,
    MechanismFailed,
    MechFlag,
    raw,
    text,
)
from mailwarden.schemes import cram

_HEX = frozenset("0123456789abcdef")


def decode_cram_state(credentials: bytes) -> bytes | None:
    """The 32-byte state from raw bytes or its 64-character hex form; ``None`` if neither."""
    if len(credentials) == cram.STATE_SIZE:
        return credentials
    if len(credentials) == 2 * cram.STATE_SIZE:
        try:
            return bytes.fromhex(credentials.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return None
    return None


@dataclass(frozen=True, slots=True)
class CramMd5Proof:
    """A CRAM-MD5 response: checks itself against a CRAM-MD5 state or a password."""

    challenge: bytes
    digest: bytes

    @property
    def schemes(self) -> tuple[str, ...]:
        return ("CRAM-MD5", "HMAC-MD5", "PLAIN")

    def check(self, scheme: str, credentials: bytes) -> bool:
        if scheme.upper() == "PLAIN":
            expected = hmac.new(credentials, self.challenge, "md5").digest()
        else:
            state = decode_cram_state(credentials)
            if state is None:
                return False
            expected = cram.hmac_md5_from_state(state, self.challenge)
        return hmac.compare_digest(expected, self.digest)


class CramMd5(Mechanism):
    """CRAM-MD5, server side."""

    name = "CRAM-MD5"
    flags = MechFlag.DICTIONARY | MechFlag.ACTIVE

    def _challenge(self) -> bytes:
        digits = "".join(str(b % 10) for b in self.context.random_bytes(16))
        return raw(f"<{digits}.{int(self.context.clock())}@{self.context.hostname}>")

    def _exchange(self, initial_response: bytes | None) -> Exchange:
        # Dovecot ignores any initial response: the server speaks first.
        challenge = self._challenge()
        response = yield Challenge(data=challenge)
        space = response.rfind(b" ")
        if space <= 0:
            return MechanismFailed(reason="missing digest")
        user = text(response[:space])
        hexdigest = text(response[space + 1 :]).lower()
        if len(hexdigest) != 32 or not set(hexdigest) <= _HEX:
            return MechanismFailed(reason="digest is not 32 hex digits", user=user)
        return Finished(
            authcid=user,
            authzid=None,
            credentials=CramMd5Proof(challenge=challenge, digest=bytes.fromhex(hexdigest)),
        )
