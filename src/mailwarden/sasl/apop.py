"""APOP (Dovecot's private mechanism for POP3's APOP command, RFC 1939 §7).

pop3-login sends the greeting's challenge itself and hands the auth server one
initial response: ``challenge NUL user NUL <16 raw MD5 bytes>``, the digest being
``MD5(challenge + password)``. The challenge must begin ``<spid.cuid.time.`` (hex),
naming this server process, this connection and a time no earlier than the
server's start (mech-apop.c): a challenge minted elsewhere, or replayed from
before a restart, is refused. The proof needs the plaintext password.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from mailwarden.sasl.base import (
    Exchange,
    Finished,
    Mechanism,
    MechanismFailed,
    MechFlag,
    immediately,
    text,
)

# sscanf("<%lx.%lx.%lx.") in Dovecot; each %lx also takes an optional 0x prefix.
_HEX_FIELD = rb"(?:0[xX])?([0-9a-fA-F]+)\."
_BINDING = re.compile(b"<" + _HEX_FIELD * 3)


@dataclass(frozen=True, slots=True)
class ApopProof:
    """An APOP digest: checks itself against the plaintext password."""

    challenge: bytes
    digest: bytes

    @property
    def schemes(self) -> tuple[str, ...]:
        return ("PLAIN",)

    def check(self, scheme: str, credentials: bytes) -> bool:
        if scheme.upper() != "PLAIN":
            return False
        expected = hashlib.md5(self.challenge + credentials).digest()  # noqa: S324 - APOP is MD5
        return hmac.compare_digest(expected, self.digest)


class Apop(Mechanism):
    """APOP, server side (never advertised to end users: it is ``private``)."""

    name = "APOP"
    flags = MechFlag.PRIVATE | MechFlag.DICTIONARY | MechFlag.ACTIVE
    allows_nuls = True

    def challenge_is_ours(self, challenge: bytes) -> bool:
        """Whether ``challenge`` names this server, this connection and a time since start."""
        match = _BINDING.match(challenge)
        if match is None:
            return False
        pid, cuid, timestamp = (int(group, 16) for group in match.groups())
        ctx = self.context
        return pid == ctx.spid and cuid == ctx.cuid and timestamp >= ctx.started

    def _exchange(self, initial_response: bytes | None) -> Exchange:
        return immediately(self._verify(initial_response))

    def _verify(self, initial_response: bytes | None) -> Finished | MechanismFailed:
        if not initial_response:
            return MechanismFailed(reason="no initial response")
        challenge, sep, rest = initial_response.partition(b"\0")
        username, sep2, digest = rest.partition(b"\0")
        if not sep or not sep2 or len(digest) != 16:
            return MechanismFailed(reason="malformed data")
        if not self.challenge_is_ours(challenge):
            return MechanismFailed(reason="invalid challenge")
        if not username:
            return MechanismFailed(reason="empty username")
        return Finished(
            authcid=text(username),
            authzid=None,
            credentials=ApopProof(challenge=challenge, digest=digest),
        )
