"""JWT signatures, through joserfc: the issuer's key set, and a token checked against it.

No signature code is written here: joserfc parses the compact form, imports the
JWKs and verifies; this module decides which key and which algorithm may be used,
and turns every failure into a :class:`~mailwarden.oauth2.claims.TokenRefused`
(malformed input from a client is a refusal, never an exception). No I/O: the key
set arrives as the JSON the provider published (verifier.py fetches it).

Security decisions, and why:

* **The algorithm comes from the allow-list, not from the token.** The header's
  ``alg`` is only looked up in ``[oauth2] algorithms``; ``none`` and every HMAC
  (``HS*``) are refused by the config itself, because a public key used as an HMAC
  secret lets anyone sign (RFC 8725 §2.1, §3.1).
* **Only signing keys of an asymmetric type are imported** (``kty`` RSA, EC or OKP;
  ``use`` absent or ``sig``); a symmetric ``oct`` key in a published set is ignored.
  A key that names its own ``alg`` is used with that algorithm only.
* **The key is chosen by ``kid``.** A token without ``kid`` is accepted only when
  exactly one key fits its algorithm (a provider with one key may leave it out).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, import_key

from mailwarden.oauth2.claims import TokenRefused
from mailwarden.records import record

#: Key types that can verify an asymmetric signature.
_ASYMMETRIC = frozenset({"RSA", "EC", "OKP"})

#: The errors joserfc and the JSON decoder raise for input that is not a usable JWT
#: (AttributeError: a header that is JSON but not an object, e.g. ``"alg"``).
_MALFORMED = (
    JoseError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    RecursionError,
)


@record
class JwtHeader:
    """What the protected header of a compact JWS says about its key."""

    alg: str
    kid: str | None


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The issuer's signing keys (its JWKS), as joserfc keys."""

    keys: tuple[Key, ...]

    @classmethod
    def from_jwks(cls, data: Any) -> KeyRing:
        """The usable keys of a JWKS document (``{"keys": [...]}``); a key that cannot
        be imported, or is not an asymmetric signing key, is left out."""
        found: list[Key] = []
        entries = data.get("keys") if isinstance(data, Mapping) else None
        for entry in entries if isinstance(entries, list) else ():
            if not isinstance(entry, Mapping) or entry.get("kty") not in _ASYMMETRIC:
                continue
            if entry.get("use", "sig") != "sig":
                continue
            try:
                key = import_key(dict(entry))
            except _MALFORMED:
                continue
            if key.is_private:  # a private key published by mistake: use its public half
                key = import_key(key.as_dict(private=False))
            found.append(key)
        return cls(keys=tuple(found))

    def find(self, header: JwtHeader) -> Key | None:
        """The key that verifies a token with ``header``, or None."""
        fits = [k for k in self.keys if k.alg in (None, header.alg) and _fits(k, header.alg)]
        if header.kid is not None:
            fits = [k for k in fits if k.kid == header.kid]
            return fits[0] if fits else None
        return fits[0] if len(fits) == 1 else None

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(k.kid for k in self.keys if k.kid is not None)


def _fits(key: Key, alg: str) -> bool:
    """Whether ``key``'s type can verify ``alg`` (RS/PS: RSA, ES: EC, EdDSA: OKP)."""
    kty = key.key_type
    if alg.startswith(("RS", "PS")):
        return kty == "RSA"
    if alg.startswith("ES"):
        return kty == "EC"
    return kty == "OKP"


def looks_like_jwt(token: str) -> bool:
    """Whether ``token`` has the compact JWS shape (three base64url parts); opaque
    tokens go to introspection instead."""
    parts = token.split(".")
    return len(parts) == 3 and all(parts[:2])


def read_header(token: str, algorithms: Collection[str]) -> JwtHeader | TokenRefused:
    """The header of ``token``, if its algorithm is allowed; nothing is verified yet."""
    try:
        header: Any = jws.extract_compact(token.encode("ascii")).headers()
    except _MALFORMED:  # UnicodeEncodeError is a ValueError
        return TokenRefused(reason="not a JWT")
    if not isinstance(header, dict):
        return TokenRefused(reason="not a JWT")
    alg = header.get("alg")
    kid = header.get("kid")
    if not isinstance(alg, str) or alg not in algorithms:
        return TokenRefused(reason=f"algorithm {str(alg)[:20]!r} not allowed")
    if kid is not None and (not isinstance(kid, str) or not kid):
        return TokenRefused(reason="malformed kid")
    return JwtHeader(alg=alg, kid=kid)


def verified_claims(token: str, key: Key, header: JwtHeader) -> dict[str, Any] | TokenRefused:
    """The payload of ``token`` if ``key`` verifies its signature with ``header.alg``
    (and only that algorithm), else why not."""
    try:
        decoded = jwt.decode(token, key, algorithms=[header.alg])
    except JoseError as exc:
        return TokenRefused(reason=f"signature not valid ({exc.error})")
    except _MALFORMED:
        return TokenRefused(reason="not a JWT")
    claims: Any = decoded.claims  # json.loads of the payload: any JSON value
    if not isinstance(claims, dict):
        return TokenRefused(reason="payload is not a JSON object")
    return claims
