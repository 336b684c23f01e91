"""The claims rules: what a token's claims must say before it may log anyone in; the
values a verdict is made of, and the :class:`TokenVerifier` interface that gives one.

Pure functions over values (the claims as the JWT or the introspection answer gave
them, the rules from ``[oauth2]``, and ``now``); no I/O, no clock of their own, so
every rule is tested with fixed times. The same rules apply to a JWT validated
locally and to an introspection answer (RFC 7662), with two differences: an
introspection answer must say ``"active": true``, and the provider, which just
vouched for the token, may leave ``exp``, ``iss`` and ``aud`` out.

Why each rule (RFC 9068 §4, RFC 8725 §3):

* ``iss`` equal to the configured issuer: keys from one issuer prove nothing about
  tokens another issuer made.
* ``aud`` naming this service: an access token made for another service (a web
  app of the same provider) must not open the mailbox.
* ``exp`` required, ``nbf`` and ``iat`` when present, each with the configured
  leeway for clock skew between the provider and this host.
* every configured scope present (Dovecot 2.3.21's local mode: all of them).
* the username claim present and a non-empty string: it names the account, and the
  engine then compares it with the SASL user (auth/bearer.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

from mailwarden.records import record


@record
class ClaimRules:
    """What ``[oauth2]`` requires of every token's claims."""

    issuer: str
    audiences: tuple[str, ...]
    scopes: tuple[str, ...] = ()
    username_claim: str = "email"
    leeway: float = 30.0


@record
class TokenIdentity:
    """A token that passed every rule: whose it is and until when it is good."""

    username: str
    subject: str | None = None
    expires_at: float | None = None


@record
class TokenRefused:
    """A token that failed a rule. ``reason`` is for the log: never the token itself,
    never shown to the client (who gets the mechanism's fixed failure JSON)."""

    reason: str


class TokenVerifier(Protocol):
    """Judges a bearer token (verifier.py's ProviderVerifier; the engine is given one
    when ``[oauth2]`` is configured). Raises ProviderUnavailable (a TemporaryFailure)
    when the provider cannot be asked; never for anything the client sent."""

    async def verify(self, token: str) -> TokenIdentity | TokenRefused: ...

    async def aclose(self) -> None: ...


def _number(value: Any) -> float | None:
    """A NumericDate (RFC 7519 §2): a finite JSON number; ``true``, ``NaN`` (which
    Python's JSON reader accepts) and a number too large for a float are not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _times(claims: Mapping[str, Any], rules: ClaimRules, now: float, *, need_exp: bool) -> str:
    """Why the time claims refuse the token ("" when they do not)."""
    leeway = rules.leeway
    exp = claims.get("exp")
    if exp is None:
        if need_exp:
            return "no exp claim"
    else:
        when = _number(exp)
        if when is None:
            return "exp is not a number"
        if now >= when + leeway:
            return "expired"
    for name, rule in (("nbf", "not valid yet"), ("iat", "issued in the future")):
        value = claims.get(name)
        if value is None:
            continue
        when = _number(value)
        if when is None:
            return f"{name} is not a number"
        if when > now + leeway:
            return rule
    return ""


def _audience_ok(aud: Any, audiences: tuple[str, ...]) -> bool:
    if isinstance(aud, str):
        return aud in audiences
    if isinstance(aud, list):
        return any(isinstance(a, str) and a in audiences for a in aud)
    return False


def token_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """The scopes a token carries: ``scope`` (RFC 9068/7662: one space-separated
    string) or, from providers that write a list (Azure's ``scp``), that list."""
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list):
            return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def check_claims(
    claims: Mapping[str, Any], rules: ClaimRules, now: float, *, introspected: bool = False
) -> TokenIdentity | TokenRefused:
    """The identity the claims prove, or why they prove none.

    ``introspected``: the claims are an RFC 7662 answer (``active`` must be true;
    ``exp``, ``iss`` and ``aud`` are checked when present); else a JWT's payload
    (all three required).
    """
    if introspected and claims.get("active") is not True:
        return TokenRefused(reason="inactive (introspection)")
    if why := _times(claims, rules, now, need_exp=not introspected):
        return TokenRefused(reason=why)
    iss = claims.get("iss")
    if rules.issuer and (iss is not None or not introspected) and iss != rules.issuer:
        return TokenRefused(reason="wrong issuer")
    aud = claims.get("aud")
    checked = rules.audiences and (aud is not None or not introspected)
    if checked and not _audience_ok(aud, rules.audiences):
        return TokenRefused(reason="wrong audience")
    missing = [s for s in rules.scopes if s not in token_scopes(claims)]
    if missing:
        return TokenRefused(reason="scope missing: " + " ".join(missing))
    username = claims.get(rules.username_claim)
    if not isinstance(username, str) or not username:
        return TokenRefused(reason=f"no {rules.username_claim} claim")
    sub = claims.get("sub")
    exp = claims.get("exp")
    return TokenIdentity(
        username=username,
        subject=sub if isinstance(sub, str) else None,
        expires_at=_number(exp) if exp is not None else None,
    )
