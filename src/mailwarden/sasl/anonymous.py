"""ANONYMOUS (RFC 4505): any trace data is accepted; the user is the anonymous user.

Dovecot (mech-anonymous.c) accepts without consulting a passdb and logs in as
``auth_anonymous_username``. The session therefore finishes with no credentials;
the engine recognises the attempt by its mechanism name and decides whether
anonymous logins are allowed for the service. With an empty anonymous username
the mechanism is off, as in Dovecot, which then does not register it at all.
"""

from __future__ import annotations

from mailwarden.sasl.base import (
    Challenge,
    Exchange,
    Finished,
    Mechanism,
    MechanismFailed,
    MechFlag,
)


class Anonymous(Mechanism):
    """ANONYMOUS, server side."""

    name = "ANONYMOUS"
    flags = MechFlag.ANONYMOUS
    allows_nuls = True

    def _exchange(self, initial_response: bytes | None) -> Exchange:
        if initial_response is None:
            yield Challenge(data=b"")
        user = self.context.anonymous_username
        if not user:
            return MechanismFailed(reason="anonymous logins are not configured")
        return Finished(authcid=user, authzid=None, credentials=None)
