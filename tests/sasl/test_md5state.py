"""The MD5-state helpers (schemes/cram.py) that CRAM-MD5 verification rests on."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.schemes import cram

# doveadm pw -s CRAM-MD5 -p secret (Dovecot 2.3.19.1, reference §4)
DOVEADM_SECRET = bytes.fromhex("cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56")


def test_the_state_of_secret_matches_doveadm_byte_for_byte() -> None:
    assert cram.cram_state(b"secret") == DOVEADM_SECRET


def test_finishing_doveadms_state_gives_the_hmac_of_the_password() -> None:
    challenge = b"<2391638359693591.1795410328@vm>"
    expected = hmac.new(b"secret", challenge, "md5").digest()
    assert cram.hmac_md5_from_state(DOVEADM_SECRET, challenge) == expected


@given(key=st.binary(max_size=150), message=st.binary(max_size=300))
def test_finishing_from_a_state_equals_hmac_md5_for_any_key_and_message(
    key: bytes, message: bytes
) -> None:
    state = cram.cram_state(key)
    assert cram.hmac_md5_from_state(state, message) == hmac.new(key, message, "md5").digest()


def test_a_state_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        cram.hmac_md5_from_state(b"\0" * 16, b"x")
