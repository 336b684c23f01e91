"""DIGEST-MD5 (RFC 2831), server side, authentication only (``qop=auth``).

Behaviour follows Dovecot's mech-digest-md5.c, which real clients were tested
against: the challenge lists the configured realms (``realm=""`` when none, as
Cyrus SASL clients then use the host name), a 128-bit base64 nonce,
``qop="auth"``, ``charset="utf-8"`` and ``algorithm="md5-sess"``; the response is
parsed with Dovecot's tolerant ``key=value`` reader; ``nc`` must be 1 (no
re-authentication); integrity and confidentiality layers are refused.

The username looked up is ``user@realm`` when the client named a realm and the
user has no ``@`` (Dovecot's rule); its ``{DIGEST-MD5}`` credentials are
``MD5(user:realm:password)``, from which the session computes ``rspauth`` for the
success message. The client's response itself is checked by the engine through
:class:`DigestMd5Proof`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from mailwarden.sasl.base import (
    Challenge,
    Exchange,
    Finished,
    Mechanism,
    MechanismFailed,
    MechFlag,
    NeedCredentials,
    raw,
    text,
)

_QOPS = ("auth", "auth-int", "auth-conf")
_HEX = frozenset("0123456789abcdef")
_LWS = " \t"


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()  # noqa: S324 - DIGEST-MD5 is defined over MD5


def _md5_hex(data: bytes) -> bytes:
    return hashlib.md5(data).hexdigest().encode("ascii")  # noqa: S324 - as above


def decode_ha1(credentials: bytes) -> bytes | None:
    """The 16-byte ``MD5(user:realm:password)`` from raw bytes or hex; ``None`` if neither."""
    if len(credentials) == 16:
        return credentials
    if len(credentials) == 32:
        try:
            return bytes.fromhex(credentials.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return None
    return None


def parse_directives(data: str) -> list[tuple[str, str]]:
    """``key=value`` pairs of a digest-response, read the way Dovecot reads them.

    Keys are lower-cased; quoted values lose their quotes and backslash escapes;
    unquoted values run to the next comma with trailing whitespace removed (leading
    whitespace stays, as in Dovecot). Tokens without ``=`` are skipped.
    """
    pairs: list[tuple[str, str]] = []
    pos, end = 0, len(data)
    while pos < end:
        while pos < end and data[pos] in _LWS:
            pos += 1
        key_start = pos
        while pos < end and data[pos] not in "=,":
            pos += 1
        if pos >= end or data[pos] != "=":
            if pos < end:  # at a comma
                pos += 1
            continue
        key = data[key_start:pos].rstrip(_LWS).lower()
        pos += 1
        value_start = pos
        while pos < end and data[pos] in _LWS:
            pos += 1
        if pos < end and data[pos] == '"':
            pos += 1
            chars: list[str] = []
            while pos < end and data[pos] != '"':
                if data[pos] == "\\" and pos + 1 < end:
                    pos += 1
                chars.append(data[pos])
                pos += 1
            value = "".join(chars)
            if pos < end:  # the closing quote
                pos += 1
        else:
            while pos < end and data[pos] != ",":
                pos += 1
            value = data[value_start:pos].rstrip(_LWS)
        pairs.append((key, value))
        if pos < end and data[pos] == ",":
            pos += 1
    return pairs


def _is_uint(value: str) -> bool:
    return value.isascii() and value.isdigit()


@dataclass(frozen=True, slots=True)
class _Response:
    username: str
    realm: str | None
    cnonce: str
    nc: str
    qop: str
    digest_uri: str | None
    response: str
    authzid: str | None


def _read_response(data: str, nonce: str) -> _Response | str:
    """The parsed digest-response, or the reason it is unacceptable."""
    username = realm = cnonce = nc = qop = digest_uri = response = authzid = None
    nonce_found = False
    maxbuf_seen = False
    for key, value in parse_directives(data):
        match key:
            case "realm":
                if realm is None and value:
                    realm = value
            case "username":
                if username is not None:
                    return "username must not exist more than once"
                if not value:
                    return "empty username"
                username = value
            case "nonce":
                if not hmac.compare_digest(raw(value), raw(nonce)):
                    return "invalid nonce"
                nonce_found = True
            case "cnonce":
                if cnonce is not None:
                    return "cnonce must not exist more than once"
                if not value:
                    return "cnonce can't contain empty value"
                cnonce = value
            case "nc":
                if nc is not None:
                    return "nonce-count must not exist more than once"
                if not _is_uint(value) or int(value) >= 2**32:
                    return "nonce-count value invalid"
                if int(value) != 1:
                    return "re-auth not supported currently"
                nc = value
            case "qop":
                if value.lower() not in _QOPS:
                    return "unknown QoP value"
                if value.lower() != "auth":
                    return "QoP not allowed: only auth is offered"
                qop = value
            case "digest-uri":
                if "/" not in value:
                    return "invalid digest-uri"
                digest_uri = value
            case "maxbuf":
                if maxbuf_seen:
                    return "maxbuf must not exist more than once"
                if not _is_uint(value) or int(value) == 0:
                    return "invalid maxbuf value"
                maxbuf_seen = True
            case "charset":
                if value.lower() != "utf-8":
                    return "only the utf-8 charset is allowed"
            case "response":
                if len(value) != 32 or not set(value.lower()) <= _HEX:
                    return "invalid response value"
                response = value.lower()
            case "authzid":
                if authzid is not None:
                    return "authzid must not exist more than once"
                if not value:
                    return "empty authzid"
                authzid = value
            case _:
                pass  # cipher and unknown directives are ignored
    if not nonce_found:
        return "missing nonce parameter"
    if cnonce is None:
        return "missing cnonce parameter"
    if username is None:
        return "missing username parameter"
    if response is None:
        return "missing response parameter"
    return _Response(
        username=username,
        realm=realm,
        cnonce=cnonce,
        nc=nc if nc is not None else "00000001",
        qop=qop if qop is not None else "auth",
        digest_uri=digest_uri,
        response=response,
        authzid=authzid,
    )


@dataclass(frozen=True, slots=True)
class DigestMd5Proof:
    """A digest-response: checks itself against ``{DIGEST-MD5}`` credentials or a password."""

    username: str
    realm: str
    nonce: str
    cnonce: str
    nc: str
    qop: str
    digest_uri: str | None
    authzid: str | None
    response: str

    @property
    def schemes(self) -> tuple[str, ...]:
        return ("DIGEST-MD5", "PLAIN")

    def value(self, ha1: bytes, *, a2_prefix: bytes) -> bytes:
        """RFC 2831 §2.1.2.1 response-value (``a2_prefix`` ``AUTHENTICATE:`` or ``:``)."""
        a1 = ha1 + b":" + raw(self.nonce) + b":" + raw(self.cnonce)
        if self.authzid is not None:
            a1 += b":" + raw(self.authzid)
        a2 = a2_prefix + (raw(self.digest_uri) if self.digest_uri is not None else b"")
        return _md5_hex(
            b":".join(
                (
                    _md5_hex(a1),
                    raw(self.nonce),
                    raw(self.nc),
                    raw(self.cnonce),
                    raw(self.qop),
                    _md5_hex(a2),
                )
            )
        )

    def check(self, scheme: str, credentials: bytes) -> bool:
        if scheme.upper() == "PLAIN":
            ha1: bytes | None = _md5(
                raw(self.username) + b":" + raw(self.realm) + b":" + credentials
            )
        else:
            ha1 = decode_ha1(credentials)
        if ha1 is None:
            return False
        expected = self.value(ha1, a2_prefix=b"AUTHENTICATE:")
        return hmac.compare_digest(expected, raw(self.response))


class DigestMd5(Mechanism):
    """DIGEST-MD5, server side."""

    name = "DIGEST-MD5"
    flags = MechFlag.DICTIONARY | MechFlag.ACTIVE | MechFlag.MUTUAL_AUTH

    def challenge(self, nonce: str) -> bytes:
        """The digest-challenge for ``nonce``, byte for byte as Dovecot words it."""
        realms = self.context.realms or ("",)
        parts = [f'realm="{realm}",' for realm in realms]
        parts.append(f'nonce="{nonce}",qop="auth",charset="utf-8",algorithm="md5-sess"')
        return raw("".join(parts))

    def _nonce(self) -> str:
        """128 random bits in base64, as Dovecot makes them."""
        return base64.b64encode(self.context.random_bytes(16)).decode("ascii")

    def _exchange(self, initial_response: bytes | None) -> Exchange:
        # RFC 2831 has no initial response; Dovecot ignores one if sent.
        nonce = self._nonce()
        data = yield Challenge(data=self.challenge(nonce))
        if not data:
            return MechanismFailed(reason="client sent no input")
        parsed = _read_response(text(data), nonce)
        if isinstance(parsed, str):
            return MechanismFailed(reason=parsed)
        username = parsed.username
        if parsed.realm is not None and "@" not in username:
            username = f"{username}@{parsed.realm}"
        credentials = yield NeedCredentials(username=username, scheme="DIGEST-MD5")
        ha1 = decode_ha1(credentials)
        if ha1 is None:
            return MechanismFailed(
                reason="stored DIGEST-MD5 credentials are malformed", user=username
            )
        proof = DigestMd5Proof(
            username=parsed.username,
            realm=parsed.realm or "",
            nonce=nonce,
            cnonce=parsed.cnonce,
            nc=parsed.nc,
            qop=parsed.qop,
            digest_uri=parsed.digest_uri,
            authzid=parsed.authzid,
            response=parsed.response,
        )
        rspauth = b"rspauth=" + proof.value(ha1, a2_prefix=b":")
        authzid = parsed.authzid if parsed.authzid not in (None, username) else None
        return Finished(authcid=username, authzid=authzid, credentials=proof, success_data=rspauth)
