"""Properties over arbitrary input: verify answers a bool or raises SchemeError, nothing
else; whatever generate() makes, verify() accepts."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mailwarden import schemes
from mailwarden.errors import SchemeError
from mailwarden.schemes import HashPolicy, StoredHash

# Cheap costs, so that well-formed mutations stay fast to verify.
CHEAP = HashPolicy(
    argon2_memory_kib=64,
    argon2_time_cost=1,
    bcrypt_cost=4,
    sha_crypt_rounds=1000,
    pbkdf2_rounds=10,
)
USER = "alice@example.com"
SEEDS = {
    name: schemes.parse(schemes.generate(b"secret", name, user=USER, policy=CHEAP)).data
    for name in schemes.SCHEMES
}
# Cost parameters that would make one verification take seconds or more.
_BIG_NUMBER = re.compile(r"[0-9]{5,}|\$2[a-z]\$(?:1[3-9]|[2-9][0-9])\$")


def _mutate(seed: str, position: int, replacement: str, cut: int) -> str:
    position %= len(seed) + 1
    return (seed[:position] + replacement + seed[position + len(replacement) :])[: len(seed) - cut]


def data_for(name: str) -> st.SearchStrategy[str]:
    """Arbitrary text, and (mostly) small edits of a real value of scheme ``name``."""
    seed = SEEDS[name]
    return st.one_of(
        st.text(max_size=120),
        st.builds(
            _mutate,
            st.just(seed),
            st.integers(min_value=0),
            st.text(alphabet="$,.=+/0123456789abcdefxyzAZ \t", min_size=1, max_size=3),
            st.integers(min_value=0, max_value=8),
        ),
        st.just(seed),
    )


@pytest.mark.parametrize("name", sorted(schemes.SCHEMES))
def test_verify_returns_a_bool_or_raises_scheme_error_for_any_data(name: str) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        data=data_for(name),
        encoding=st.sampled_from([None, None, "hex", "b64"]),
        password=st.binary(max_size=80),
        user=st.text(max_size=30),
    )
    def check(data: str, encoding: str | None, password: bytes, user: str) -> None:
        assume(_BIG_NUMBER.search(data) is None)
        stored = StoredHash(name, encoding, data)
        try:
            answer = schemes.verify(password, stored, user=user)
        except SchemeError:
            return
        assert isinstance(answer, bool)

    check()


@pytest.mark.parametrize("name", sorted(schemes.SCHEMES))
def test_needs_rehash_and_is_heavy_answer_for_any_data(name: str) -> None:
    @settings(max_examples=40, deadline=None)
    @given(data=data_for(name))
    def check(data: str) -> None:
        stored = StoredHash(name, None, data)
        assert isinstance(schemes.needs_rehash(stored, CHEAP), bool)
        assert isinstance(schemes.is_heavy(stored), bool)
        creds = schemes.credentials(stored, name, user=USER)
        assert creds is None or isinstance(creds, bytes)

    check()


# PLAIN-TRUNC by design accepts other passwords (``0-`` accepts all of them); OTP is
# checked once below, as its 1024 iterations are slow in Python.
ROUND_TRIP = sorted(set(schemes.SCHEMES) - {"OTP", "PLAIN-TRUNC"})


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_what_generate_makes_verify_accepts_and_a_changed_password_does_not(name: str) -> None:
    @settings(max_examples=8, deadline=None)
    @given(
        password=st.binary(max_size=100).filter(lambda p: b"\0" not in p),
        user=st.text(min_size=1, max_size=30),
    )
    def check(password: bytes, user: str) -> None:
        stored = schemes.parse(schemes.generate(password, name, user=user, policy=CHEAP))
        assert stored.scheme == name
        assert schemes.verify(password, stored, user=user)
        # bcrypt reads 72 bytes at most, DES-crypt 8 (7 bits each): change the first byte.
        changed = bytes([password[0] ^ 0x01]) + password[1:] if password else b"x"
        assert not schemes.verify(changed, stored, user=user)

    check()


def test_otp_round_trips_an_arbitrary_password() -> None:
    password = bytes(range(1, 256))
    stored = schemes.parse(schemes.generate(password, "OTP"))
    assert schemes.verify(password, stored)
    assert not schemes.verify(password[:-1], stored)
