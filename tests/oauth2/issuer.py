"""A test issuer: keys made here, tokens signed with joserfc, the documents an OpenID
provider publishes (discovery, JWKS) served by the package's StaticTransport.

For the unit tests of the token rules; tests/peers/test_oauth2.py uses a real
provider (node oidc-provider) instead.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from mailwarden.config import OAuth2Config
from mailwarden.oauth2.provider import StaticTransport
from mailwarden.oauth2.verifier import ProviderVerifier

ISSUER = "https://sso.example.test/realms/mail"
AUDIENCE = "https://imap.example.test/"
DISCOVERY = ISSUER + "/.well-known/openid-configuration"
JWKS = ISSUER + "/protocol/openid-connect/certs"
INTROSPECTION = ISSUER + "/protocol/openid-connect/token/introspect"
NOW = 1_800_000_000.0

_KEYS: dict[str, Key] = {}


def key(kind: str, kid: str) -> Key:
    """A private key of ``kind`` (RSA, EC, OKP) named ``kid``, made once per run."""
    name = f"{kind}:{kid}"
    if name not in _KEYS:
        match kind:
            case "RSA":
                _KEYS[name] = RSAKey.generate_key(2048, parameters={"kid": kid})
            case "EC":
                _KEYS[name] = ECKey.generate_key("P-256", parameters={"kid": kid})
            case "OKP":
                _KEYS[name] = OKPKey.generate_key("Ed25519", parameters={"kid": kid})
            case _:
                raise AssertionError(kind)
    return _KEYS[name]


def claims(**overrides: Any) -> dict[str, Any]:
    """Claims of a good token for alice, issued at :data:`NOW`; ``None`` drops a claim."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "5f1c-alice",
        "email": "alice@example.com",
        "preferred_username": "alice",
        "scope": "openid mail",
        "iat": int(NOW) - 10,
        "exp": int(NOW) + 600,
        "jti": "t1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], signer: Key, alg: str = "RS256", **header: Any) -> str:
    head: dict[str, Any] = {"alg": alg, "typ": "at+jwt", "kid": signer.kid, **header}
    protected = {k: v for k, v in head.items() if v is not None}
    return jwt.encode(protected, payload, signer, algorithms=[alg])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any]) -> str:
    """A token with ``alg: none`` and no signature (made by hand: no library makes one)."""
    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{b64(json.dumps(payload).encode())}."


def tampered(token: str, **changes: Any) -> str:
    """``token`` with its payload changed and the original signature kept."""
    head, body, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload.update(changes)
    return f"{head}.{b64(json.dumps(payload).encode())}.{sig}"


def jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


class Clock:
    """Wall and monotonic time that only move when a test says so."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def provider(*keys: Key) -> StaticTransport:
    """A provider publishing discovery and a key set of ``keys``."""
    transport = StaticTransport()
    transport.set_json(DISCOVERY, {"issuer": ISSUER, "jwks_uri": JWKS})
    transport.set_json(JWKS, jwks(*keys))
    return transport


def config(**overrides: Any) -> OAuth2Config:
    values: dict[str, Any] = {"issuer": ISSUER, "audience": (AUDIENCE,), "scope": ("mail",)}
    values.update(overrides)
    return OAuth2Config(**values)


def verifier(
    transport: StaticTransport, clock: Clock | None = None, **overrides: Any
) -> ProviderVerifier:
    clock = clock or Clock()
    return ProviderVerifier(config(**overrides), transport, clock=clock, monotonic=clock)
