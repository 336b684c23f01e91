"""PLAIN (RFC 4616): ``authzid NUL authcid NUL password`` in one message.

Mirrors Dovecot's mech-plain.c: exactly two NULs, else the request fails; an
authzid equal to the authcid is no master login; without an initial response
the server sends an empty challenge first.
"""

from __future__ import annotations

from mailwarden.model import Password
from mailwarden.sasl.base import (
    Challenge,
    Exchange,
    Finished,
    Mechanism,
    MechanismFailed,
    MechFlag,
    authzid_or_none,
    text,
)


class Plain(Mechanism):
    """PLAIN, server side."""

    name = "PLAIN"
    flags = MechFlag.PLAINTEXT
    allows_nuls = True

    def _exchange(self, initial_response: bytes | None) -> Exchange:
        data = initial_response
        if data is None:
            data = yield Challenge(data=b"")
        return self._at_once(data)

    @classmethod
    def _at_once(cls, data: bytes) -> Finished | MechanismFailed:
        parts = data.split(b"\0")
        if len(parts) != 3:
            return MechanismFailed(reason="invalid input: PLAIN needs exactly two NULs")
        authzid, authcid, password = parts
        if not authcid:
            return MechanismFailed(reason="empty username")
        user = text(authcid)
        return Finished(
            authcid=user,
            authzid=authzid_or_none(text(authzid), user),
            credentials=Password(password),
        )
