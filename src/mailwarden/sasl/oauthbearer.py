"""OAUTHBEARER (RFC 7628).

Client data: ``gs2-header ^A key=value ^A … auth=Bearer <token> ^A^A``. As in
Dovecot's mech-oauth2.c the gs2 header names the user in ``a=`` (with RFC 5801
``=2C``/``=3D`` escapes), ``p=`` (channel binding) and ``f`` (non-standard) are
refused, and the other key/value pairs (``host=``, ``port=``) are ignored.
"""

from __future__ import annotations

from mailwarden.sasl._oauth import OAUTHBEARER_ERROR, bearer_login, bearer_token
from mailwarden.sasl.base import (
    Challenge,
    Exchange,
    Mechanism,
    MechanismFailed,
    MechFlag,
    text,
)
from mailwarden.sasl.scram import unescape_saslname


def _gs2_user(header: str) -> str | MechanismFailed | None:
    """The ``a=`` user of a gs2 header (``None`` if absent), or why the header is refused."""
    user: str | None = None
    for part in (p for p in header.split(",") if p):
        match part[0]:
            case "f":
                return MechanismFailed(reason="client requested a non-standard mechanism")
            case "p":
                return MechanismFailed(reason="client requested channel binding")
            case "n" | "y":
                continue
            case "a":
                name = unescape_saslname(part[2:]) if part[1:2] == "=" else None
                if name is None:
                    return MechanismFailed(reason="invalid username escaping")
                user = name
            case _:
                return MechanismFailed(reason="invalid gs2 header")
    return user


class OAuthBearer(Mechanism):
    """OAUTHBEARER, server side."""

    name = "OAUTHBEARER"
    # The token is a bearer secret: Dovecot flags it plaintext like a password.
    flags = MechFlag.PLAINTEXT

    def _exchange(self, initial_response: bytes | None) -> Exchange:
        data = initial_response
        if data is None:
            data = yield Challenge(data=b"")
        fields = text(data).split("\x01")
        if not fields[0]:
            return MechanismFailed(reason="missing gs2 header")
        user = _gs2_user(fields[0])
        if isinstance(user, MechanismFailed):
            return user
        token: str | None = None
        for item in fields:
            if item.startswith("auth="):
                token = bearer_token(item[5:])
                if token is None:
                    return MechanismFailed(reason="invalid auth field", user=user)
        return bearer_login(
            user, token, missing="missing username or token", failure_data=OAUTHBEARER_ERROR
        )
