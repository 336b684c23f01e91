"""XOAUTH2 (Google's pre-standard OAuth 2.0 mechanism).

Client data: ``user=<name>^Aauth=Bearer <token>^A^A``. Parsed as Dovecot's
mech-oauth2.c does: fields split at ``^A``, unknown fields ignored, a malformed
``auth=`` fails at once, and both a user and a token are required.
"""

from __future__ import annotations

from mailwarden.sasl._oauth import XOAUTH2_ERROR, bearer_login, bearer_token
from mailwarden.sasl.base import (
    Challenge,
    Exchange,
    Mechanism,
    MechanismFailed,
    MechFlag,
    text,
)


class XOAuth2(Mechanism):
    """XOAUTH2, server side."""

    name = "XOAUTH2"
    # The token is a bearer secret: Dovecot flags it plaintext like a password.
    flags = MechFlag.PLAINTEXT

    def _exchange(self, initial_response: bytes | None) -> Exchange:
        data = initial_response
        if data is None:
            data = yield Challenge(data=b"")
        user: str | None = None
        token: str | None = None
        for item in text(data).split("\x01"):
            if item.startswith("user="):
                user = item[5:]
            elif item.startswith("auth="):
                token = bearer_token(item[5:])
                if token is None:
                    return MechanismFailed(reason="invalid auth field", user=user or None)
        return bearer_login(
            user, token, missing="username or token missing", failure_data=XOAUTH2_ERROR
        )
