"""EXTERNAL (RFC 4422 appendix A): the TLS client certificate names the user.

The client's data is an optional authzid. Dovecot (mech-external.c) only knows a
user here when the AUTH request carried ``cert_username=`` and the server trusts
certificate names; otherwise the request fails. The session finishes without
credentials: the engine checks that the certificate was valid and names this user.
"""

from __future__ import annotations

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


class External(Mechanism):
    """EXTERNAL, server side."""

    name = "EXTERNAL"
    flags = MechFlag.NONE

    def _exchange(self, initial_response: bytes | None) -> Exchange:
        data = initial_response
        if data is None:
            data = yield Challenge(data=b"")
        user = self.context.cert_username
        if not user:
            return MechanismFailed(reason="no username from a client certificate")
        return Finished(authcid=user, authzid=authzid_or_none(text(data), user), credentials=None)
