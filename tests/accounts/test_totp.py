"""TOTP codes against RFC 6238's own vectors, and the rules on top (accounts/totp.py)."""

from __future__ import annotations

import base64
import re
from typing import Any

from mailwarden.accounts import totp
from mailwarden.state.base import SecondFactor

# RFC 6238 appendix B: the SHA-1 key is the ASCII string "12345678901234567890".
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()


def test_codes_are_rfc_6238s_vectors_cut_to_six_digits() -> None:
    # (time, eight-digit value of the RFC's table)
    for when, eight in ((59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924")):
        assert totp.code_at(RFC_SECRET, when // totp.STEP) == eight[-6:]


def factor(**kw: Any) -> SecondFactor:
    values: dict[str, Any] = {"owner": "user:bob", "secret": RFC_SECRET, "confirmed": True}
    values.update(kw)
    return SecondFactor(**values)


def wrong_code(now: float) -> str:
    """A six-digit code that is none of the codes accepted at ``now``."""
    step = int(now // totp.STEP)
    valid = {totp.code_at(RFC_SECRET, s) for s in range(step - 1, step + 2)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def test_a_code_is_accepted_once_and_never_again() -> None:
    now = 1234567890.0
    code = totp.code_at(RFC_SECRET, int(now // totp.STEP))
    verdict, after = totp.check(factor(), code, now)
    assert verdict is totp.Verdict.ACCEPTED
    assert after.last_step == int(now // totp.STEP)
    assert totp.check(after, code, now)[0] is totp.Verdict.REPLAYED
    # Nor the code of the step before, once a newer one was used.
    older = totp.code_at(RFC_SECRET, int(now // totp.STEP) - 1)
    assert totp.check(after, older, now)[0] is totp.Verdict.REPLAYED


def test_one_step_of_drift_either_way_and_no_more() -> None:
    now = 1234567890.0
    step = int(now // totp.STEP)
    for delta in (-1, 1):
        assert totp.check(factor(), totp.code_at(RFC_SECRET, step + delta), now)[0] is (
            totp.Verdict.ACCEPTED
        )
    for delta in (-3, 3):
        assert totp.check(factor(), totp.code_at(RFC_SECRET, step + delta), now)[0] is (
            totp.Verdict.WRONG
        )


def test_after_five_wrong_codes_even_the_right_one_waits_for_the_window() -> None:
    now = 1234567890.0
    f = factor()
    for _ in range(totp.MAX_FAILURES):
        verdict, f = totp.check(f, wrong_code(now), now)
        assert verdict is totp.Verdict.WRONG
    right = totp.code_at(RFC_SECRET, int(now // totp.STEP))
    assert totp.check(f, right, now + 10)[0] is totp.Verdict.LIMITED
    later = now + totp.FAILURE_WINDOW + 1
    assert totp.check(f, totp.code_at(RFC_SECRET, int(later // totp.STEP)), later)[0] is (
        totp.Verdict.ACCEPTED
    )


def test_recovery_codes_work_once_each_and_are_stored_as_digests() -> None:
    codes = totp.new_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z2-7]{5}-[a-z2-7]{5}", c) for c in codes)
    f = factor(recovery=tuple(totp.recovery_digest(c) for c in codes))
    assert not any(c in f.recovery for c in codes)
    verdict, f = totp.check(f, codes[3].upper().replace("-", " "), 1000.0)
    assert verdict is totp.Verdict.RECOVERY and len(f.recovery) == 9
    assert totp.check(f, codes[3], 1000.0)[0] is totp.Verdict.WRONG


def test_the_enrolment_uri_and_qr_code_are_made_here() -> None:
    secret = totp.new_secret()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    link = totp.uri(secret, account="admin:ann", issuer="Example Mail")
    assert link.startswith("otpauth://totp/Example%20Mail:admin:ann?secret=" + secret)
    svg = totp.qr_svg(link)
    assert svg.startswith("<svg") and "http" not in svg.replace("http://www.w3.org/2000/svg", "")
