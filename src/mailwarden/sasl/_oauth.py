"""What XOAUTH2 and OAUTHBEARER share: token syntax and the failure round.

Both carry a bearer token, handed to the engine as a
:class:`~mailwarden.model.BearerToken`: with ``[oauth2]`` configured the engine
validates it (a JWT against the issuer's keys, or RFC 7662 introspection), else it
verifies it like a password, as Dovecot does with a passdb that is not ``oauth2``
(``auth_request_verify_plain``). When it is refused the server
does not fail at once: it sends a JSON error as a challenge, the client answers
with a dummy response, and only then comes the failure (RFC 7628 §3.2.3; Google's
XOAUTH2 document). The JSON bodies are Dovecot's, byte for byte.
"""

from __future__ import annotations

from mailwarden.model import BearerToken
from mailwarden.sasl.base import Finished, MechanismFailed

XOAUTH2_ERROR = b'{"status":"401","schemes":"bearer","scope":"mail"}'
OAUTHBEARER_ERROR = b'{"status":"invalid_token"}'


def bearer_token(value: str) -> str | None:
    """The token of an ``auth=`` value ``Bearer <token>``, or ``None`` when invalid.

    Dovecot's rule (``oauth2_valid_token``): scheme word case-insensitive, the token
    non-empty and free of CR and LF.
    """
    if value[:7].lower() != "bearer ":
        return None
    token = value[7:]
    if not token or "\r" in token or "\n" in token:
        return None
    return token


def bearer_login(
    user: str | None, token: str | None, *, missing: str, failure_data: bytes
) -> Finished | MechanismFailed:
    """The end of either exchange: the token is what the engine verifies for ``user``;
    ``failure_data`` is the mechanism's JSON error for the failure round.
    Without a user or a token the exchange fails (``missing``: the reason logged)."""
    if not user or token is None:
        return MechanismFailed(reason=missing, user=user or None)
    return Finished(
        authcid=user,
        authzid=None,
        credentials=BearerToken(token),
        failure_data=failure_data,
    )
