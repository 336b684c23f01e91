"""LOGIN (draft-murchison-sasl-login): username and password in two challenges.

The prompts are Dovecot's literal ``Username:`` and ``Password:`` (mech-login.c);
a non-empty initial response is taken as the username.
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
    text,
)

USERNAME_PROMPT = b"Username:"
PASSWORD_PROMPT = b"Password:"


class Login(Mechanism):
    """LOGIN, server side."""

    name = "LOGIN"
    flags = MechFlag.PLAINTEXT

    def _exchange(self, initial_response: bytes | None) -> Exchange:
        username = initial_response
        if not username:
            username = yield Challenge(data=USERNAME_PROMPT)
        if not username:
            return MechanismFailed(reason="empty username")
        password = yield Challenge(data=PASSWORD_PROMPT)
        return Finished(authcid=text(username), authzid=None, credentials=Password(password))
