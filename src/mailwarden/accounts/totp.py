"""Time-based one-time codes (RFC 6238) and recovery codes for the web page's sign-in.

What belongs here, pure: making a secret and its ``otpauth://`` URI and QR code
(SVG, drawn here by segno: nothing is fetched from anywhere), the ten recovery codes
and their digests, and :func:`check`, which decides on one presented code given the
stored :class:`~mailwarden.state.base.SecondFactor` and returns the state to store.
accounts/staff.py reads and writes that state (compare-and-swap, so two nodes
never accept the same code).

The rules, and why:

* **A code is accepted once.** The newest time step accepted is stored; a code of
  that step or an older one is refused ("already used"), so a code read over a
  shoulder or phished is worthless once its owner used it.
* **One step of clock drift** either way is accepted (RFC 6238 section 5.2).
* **Rate limit:** after :data:`MAX_FAILURES` wrong codes within
  :data:`FAILURE_WINDOW` seconds every code is refused until the window ends, even
  the right one: six digits are a million values, and a guesser gets five a few
  minutes, not thousands.
* **Recovery codes** are 50 random bits each, shown once, stored as a keyed digest
  (as issued tokens are, auth/tokens.py: they are not guessable, so no slow hash),
  and each is removed when used. They count against the same rate limit.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import hmac
import io
import secrets
from urllib.parse import quote

import pyotp

from mailwarden.state.base import SecondFactor

STEP = 30
DIGITS = 6
DRIFT = 1
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0
RECOVERY_CODES = 10
_RECOVERY_KEY = b"mailwarden recovery code"


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    RECOVERY = "recovery"  # a recovery code was used (and is gone now)
    WRONG = "wrong"
    REPLAYED = "replayed"  # right code, already used
    LIMITED = "limited"  # too many wrong codes lately: not even looked at


def new_secret() -> str:
    """160 random bits in base32, as authenticator apps expect (RFC 4226's length)."""
    return pyotp.random_base32(32)


def code_at(secret: str, step: int) -> str:
    """The code of time step ``step`` (``int(time // STEP)``)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP).generate_otp(step)


def uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI authenticator apps read from the QR code."""
    label = quote(f"{issuer}:{account}", safe="@:")
    return (
        f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer, safe='')}"
        f"&algorithm=SHA1&digits={DIGITS}&period={STEP}"
    )


def qr_svg(text: str) -> str:
    """``text`` as an inline SVG QR code (no XML declaration, ready for a page)."""
    import segno  # noqa: PLC0415 - only the enrolment page draws one

    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="svg", scale=4, xmldecl=False, svgns=True)
    return buffer.getvalue().decode("utf-8")


def new_recovery_codes() -> list[str]:
    """Ten fresh codes as shown to the owner: ``xxxxx-xxxxx`` (lowercase base32)."""
    codes = []
    for _ in range(RECOVERY_CODES):
        body = base64.b32encode(secrets.token_bytes(7)).decode().lower()[:10]  # 50 bits
        codes.append(f"{body[:5]}-{body[5:]}")
    return codes


def recovery_digest(code: str) -> str:
    """The stored form of a recovery code (blanks, dashes and case ignored)."""
    text = code.strip().lower().replace("-", "").replace(" ", "")
    return hmac.new(_RECOVERY_KEY, text.encode("ascii", "replace"), hashlib.sha256).hexdigest()


def _limited(factor: SecondFactor, now: float) -> bool:
    return factor.failures >= MAX_FAILURES and now - factor.failed_since < FAILURE_WINDOW


def _failed(factor: SecondFactor, now: float) -> SecondFactor:
    if now - factor.failed_since >= FAILURE_WINDOW:
        return dataclasses.replace(factor, failures=1, failed_since=now)
    return dataclasses.replace(factor, failures=factor.failures + 1)


def check(factor: SecondFactor, code: str, now: float) -> tuple[Verdict, SecondFactor]:
    """The verdict on ``code`` and the factor's state to store afterwards (the same
    object when nothing changes). A six-digit code is a TOTP code; anything else
    is tried as a recovery code."""
    if _limited(factor, now):
        return Verdict.LIMITED, factor
    text = code.strip().replace(" ", "")
    if len(text) == DIGITS and text.isdigit():
        current = int(now // STEP)
        for step in range(current - DRIFT, current + DRIFT + 1):
            if hmac.compare_digest(code_at(factor.secret, step), text):
                if step <= factor.last_step:
                    return Verdict.REPLAYED, factor
                done = dataclasses.replace(
                    factor, confirmed=True, last_step=step, failures=0, failed_since=0.0
                )
                return Verdict.ACCEPTED, done
        return Verdict.WRONG, _failed(factor, now)
    if factor.confirmed and text:
        digest = recovery_digest(text)
        for stored in factor.recovery:
            if hmac.compare_digest(stored, digest):
                left = tuple(d for d in factor.recovery if d != stored)
                done = dataclasses.replace(factor, recovery=left, failures=0, failed_since=0.0)
                return Verdict.RECOVERY, done
    return Verdict.WRONG, _failed(factor, now)
