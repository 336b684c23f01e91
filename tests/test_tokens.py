"""auth/tokens.py: issued secrets are recognised, digested per kind, and nothing else is."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailwarden.auth import tokens
from mailwarden.auth.tokens import TokenKind


def test_an_issued_token_matches_its_digest_and_no_other() -> None:
    first = tokens.issue(TokenKind.APP_PASSWORD)
    second = tokens.issue(TokenKind.APP_PASSWORD)
    assert first.value.startswith("mwa_") and len(first.value) == 28
    assert tokens.matches(TokenKind.APP_PASSWORD, first.value, first.digest)
    assert not tokens.matches(TokenKind.APP_PASSWORD, first.value, second.digest)
    assert first.value not in repr(first)


def test_kinds_never_match_each_other() -> None:
    issued = tokens.issue(TokenKind.API_TOKEN)
    assert tokens.recognise(TokenKind.APP_PASSWORD, issued.value) is None
    body = issued.value.removeprefix("mwt_")
    as_app = f"mwa_{body}"
    assert not tokens.matches(TokenKind.APP_PASSWORD, as_app, issued.digest)


def test_what_a_person_types_is_recognised() -> None:
    issued = tokens.issue(TokenKind.APP_PASSWORD)
    body = issued.value.removeprefix("mwa_")
    typed = " MWA_" + "-".join(body[i : i + 4] for i in range(0, 24, 4)).upper() + " "
    assert tokens.matches(TokenKind.APP_PASSWORD, typed.encode(), issued.digest)


def test_ordinary_passwords_are_not_tokens() -> None:
    for value in (b"secret", b"mwa_short", "mwa_" + "1" * 24, b"mwa_\xff" + b"a" * 23):
        assert tokens.recognise(TokenKind.APP_PASSWORD, value) is None


@given(st.binary(max_size=64))
def test_any_input_is_recognised_or_refused_without_error(value: bytes) -> None:
    found = tokens.recognise(TokenKind.APP_PASSWORD, value)
    assert found is None or (found.startswith("mwa_") and len(found) == 28)
