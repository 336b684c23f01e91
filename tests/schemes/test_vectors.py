"""Known-answer vectors: doveadm's outputs (reference §4), RFC 1320 MD4, RFC 2289 OTP."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden import schemes
from mailwarden.errors import MalformedHash
from mailwarden.schemes import cram, md4, otp

USER = "alice@example.com"

# `doveadm pw -s S -p secret -u alice@example.com` (Dovecot 2.3.19.1), every line of the
# reference's vector table. PLAIN-TRUNC's line is what doveadm prints, which Dovecot
# itself refuses (see test_doveadms_own_plain_trunc_output_is_refused_like_dovecot_does).
DOVEADM_VECTORS = [
    ("PLAIN", "{PLAIN}secret"),
    ("CRYPT", "{CRYPT}$2y$05$N2W1wtKUvDl0E9pMpapcQea7WKez9SnTZ1t4EAJR86pOQ2I0tBAWq"),
    ("DES-CRYPT", "{DES-CRYPT}Bnc6LBDnIppTo"),
    ("MD5", "{MD5}$1$H2vSC1E2$GSawZMbpLsQCzgkFDRfCW/"),
    ("MD5-CRYPT", "{MD5-CRYPT}$1$riWVd7Kg$/js4GyHGRsfrI5JD2pHIL."),
    (
        "SHA256-CRYPT",
        "{SHA256-CRYPT}$5$dFkjTne9qpcwhf8G$eyLsnW32agxAlIVZC7XjLA8k/.uPUKiiyypJfgZL.P1",
    ),
    (
        "SHA512-CRYPT",
        "{SHA512-CRYPT}$6$2S.HWOSqKixaLIpw$WiRgxf3sD94JaCoR0KHu9DvyUXuU3l3qdhWapUO74MSR6Fxhnt"
        "NsbN7ZP6HSyVil4iqAbZMF4kaewsc6dwwVd.",
    ),
    ("BLF-CRYPT", "{BLF-CRYPT}$2y$05$cebuiXctVoNSEI5ybGK/Qe2JkJ5T8DZQYWG.eX5BEpzCZK9qWqHTS"),
    (
        "ARGON2I",
        "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$T+7utuyR9RYMxpMBKtAxXA"
        "$6yAz4TrcOV95Taz5IUKZoN8ZWZv/fjsIGOi+qzw6vZg",
    ),
    (
        "ARGON2ID",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$XWWIwh+DgW1Qx2yW9D0DDA"
        "$zHUXccpIyTczLPwQsE/OJmM3ygVz0O/xPSk/rnaFGck",
    ),
    ("SHA", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="),
    ("SHA1", "{SHA1}5en6G6MezRroT3XKqkdPOmY/BfQ="),
    ("SHA256", "{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols="),
    (
        "SHA512",
        "{SHA512}vSsar3708Jvp9Szi2NWZZ02Bqp1qRCFpbcTZPdBhnWgs5WtNZKnvCXdhztmeD2cmW192CF5bDufK"
        "RpayrW/isg==",
    ),
    ("SSHA", "{SSHA}PCfAGpQMlEY8uQPHMpWC/rlXhGGFESPj"),
    ("SSHA256", "{SSHA256}ZQu2d7nYcYOMXGJ8JtLKMZTqVyn1vIkF1/ERKU4Lr0+OUk95"),
    (
        "SSHA512",
        "{SSHA512}XaMlqYlDkKdzaBh3bJLVSbc1VCX+lLlLLTy3rhOk6nw/x0lk5tb/dy5CXnveOOD6BkaTWFl+aKGh"
        "flMKtJHlnloQR5I=",
    ),
    ("SMD5", "{SMD5}DqmlxbY/DDUSfUbagEohMGyFFQ0="),
    ("PLAIN-MD4", "{PLAIN-MD4}67d3dafef63ff00603aeef3769cfbf0d"),
    ("PLAIN-MD5", "{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69"),
    ("LDAP-MD5", "{LDAP-MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ=="),
    ("CRAM-MD5", "{CRAM-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"),
    ("HMAC-MD5", "{HMAC-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"),
    ("DIGEST-MD5", "{DIGEST-MD5}b1726872c344b6dc8365b774f8fd6412"),
    (
        "SCRAM-SHA-1",
        "{SCRAM-SHA-1}4096,sYdie3zQeQrbeMevFH2cNw==,nZefM5o47GFJzKph+18LglwdF/8=,"
        "6K051xFJ+xuKYYI5xs8AOJlSMh0=",
    ),
    (
        "SCRAM-SHA-256",
        "{SCRAM-SHA-256}4096,4Y+JN2FQykrI/pxBBNS08w==,"
        "X9W5CwFbgKzZRn+vdr3Sf/QJL5FGqrNCG6su6kbWVLk=,"
        "GMGKCEbEum36jGF1yIdJOLJVPw3xuYKsFa4bjvQAsFY=",
    ),
    (
        "PBKDF2",
        "{PBKDF2}$1$b7ZlaTTdp62wMSZE$5000$64014aecb1e08929bd13826c3f3d7bff52b73b52",
    ),
    ("OTP", "{OTP}sha1 1024 b4a2138b2f657d26 68ddd7a7c93dcb71"),
]


@pytest.mark.parametrize(("scheme", "value"), DOVEADM_VECTORS, ids=[v[0] for v in DOVEADM_VECTORS])
def test_doveadms_vector_verifies_and_rejects_a_wrong_password(scheme: str, value: str) -> None:
    stored = schemes.parse(value)
    assert stored.scheme == scheme
    assert schemes.verify(b"secret", stored, user=USER)
    assert not schemes.verify(b"wrong", stored, user=USER)
    assert not schemes.verify(b"secret ", stored, user=USER)


def test_doveadms_own_plain_trunc_output_is_refused_like_dovecot_does() -> None:
    # doveadm pw -s PLAIN-TRUNC prints no <length>- prefix; Dovecot then says
    # "PLAIN-TRUNC missing length: prefix" for its own output.
    with pytest.raises(MalformedHash, match="prefix"):
        schemes.verify(b"secret", schemes.parse("{PLAIN-TRUNC}secret"))


@pytest.mark.parametrize(
    ("value", "password", "ok"),
    [
        ("{PLAIN-TRUNC}6-secret", "secret", True),
        ("{PLAIN-TRUNC}3-sec", "secret", True),  # truncated: the prefix is enough
        ("{PLAIN-TRUNC}3-sec", "sec", True),
        ("{PLAIN-TRUNC}3-sec", "se", False),
        ("{PLAIN-TRUNC}3-sec", "sex", False),
        ("{PLAIN-TRUNC}10-secret", "secret", True),  # shorter than its length: exact
        ("{PLAIN-TRUNC}10-secret", "secretsecret", False),
        ("{PLAIN-TRUNC}-", "", True),
        ("{PLAIN-TRUNC}0-", "anything", True),  # length 0: every password is "truncated"
    ],
)
def test_plain_trunc_compares_a_prefix_only_when_the_stored_password_was_cut(
    value: str, password: str, ok: bool
) -> None:
    # Each row was checked with doveadm pw -t (see test_doveadm.py for the live check).
    assert schemes.verify(password.encode(), schemes.parse(value)) is ok


def test_digest_md5_uses_the_last_at_to_split_user_and_realm() -> None:
    stored = schemes.parse("{DIGEST-MD5}b1726872c344b6dc8365b774f8fd6412")
    assert not schemes.verify(b"secret", stored, user="alice")
    expected = hashlib.md5(b"a@b:example.com:secret", usedforsecurity=False).hexdigest()
    assert schemes.verify(
        b"secret", schemes.parse("{DIGEST-MD5}" + expected), user="a@b@example.com"
    )
    no_realm = hashlib.md5(b"alice::secret", usedforsecurity=False).hexdigest()
    assert schemes.verify(b"secret", schemes.parse("{DIGEST-MD5}" + no_realm), user="alice")


# --------------------------------------------------------------------------- MD4

RFC1320_MD4 = [
    (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
    (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
    (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
    (b"message digest", "d9130a8164549fe818874806e1c7014b"),
    (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
    (
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "043f8582f241db351ce627e153e7f0e4",
    ),
    (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
]


@pytest.mark.parametrize(("message", "digest"), RFC1320_MD4)
def test_md4_matches_rfc_1320s_test_suite(message: bytes, digest: str) -> None:
    assert md4.md4(message).hex() == digest


# doveadm pw -s PLAIN-MD4 -p <"a" * length>: lengths where MD4's padding needs an
# extra block or fills one exactly.
DOVEADM_MD4_BOUNDARIES = [
    (55, "c889c81dd86c4d2e025778944ea02881"),
    (56, "d5f9a9e9257077a5f08b0b92f348b0ad"),
    (63, "7ea3da77432d44c323671097d1348fc8"),
    (64, "52f5076fabd22680234a3fa9f9dc5732"),
    (65, "330e377bf231f3cacfecc2c182fe7e5b"),
    (119, "e65dd227ccef97fa1d34d70189120f76"),
    (120, "b03ddbd470b47c013e0c7ab2ddd763db"),
    (128, "cb4a20a561558e29460190c91dced59f"),
]


@pytest.mark.parametrize(("length", "digest"), DOVEADM_MD4_BOUNDARIES)
def test_md4_pads_like_doveadm_around_block_boundaries(length: int, digest: str) -> None:
    assert md4.md4(b"a" * length).hex() == digest
    stored = schemes.parse(f"{{PLAIN-MD4}}{digest}")
    assert schemes.verify(b"a" * length, stored)
    assert not schemes.verify(b"a" * (length - 1), stored)


# --------------------------------------------------------------------------- MD5 state

DOVEADM_CRAM_SECRET = bytes.fromhex(
    "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"
)


def test_cram_state_of_secret_is_doveadms_byte_for_byte() -> None:
    assert cram.cram_state(b"secret") == DOVEADM_CRAM_SECRET


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def test_md5_compression_finishes_to_hashlibs_md5() -> None:
    data = b"x" * 64 + b"the rest of the message"
    state = cram.md5_compress(cram.INITIAL_STATE, data[:64])
    assert cram.md5_finish(state, data[64:], absorbed=64) == _md5(data)
    assert cram.md5_finish(cram.INITIAL_STATE, b"", absorbed=0) == _md5(b"")


def test_doveadms_cram_state_finishes_to_the_hmac_of_the_password() -> None:
    challenge = b"<1896.697170952@postoffice.example.net>"
    expected = hmac.new(b"secret", challenge, "md5").digest()
    assert cram.hmac_md5_from_state(DOVEADM_CRAM_SECRET, challenge) == expected


@given(key=st.binary(max_size=150), message=st.binary(max_size=200))
def test_a_cram_state_finishes_to_hmac_md5_for_any_key_and_message(
    key: bytes, message: bytes
) -> None:
    state = cram.cram_state(key)
    assert cram.hmac_md5_from_state(state, message) == hmac.new(key, message, "md5").digest()


def test_md5_helpers_refuse_wrong_sizes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        cram.hmac_md5_from_state(b"\0" * 16, b"x")
    with pytest.raises(ValueError, match="64 bytes"):
        cram.md5_compress(cram.INITIAL_STATE, b"short")
    with pytest.raises(ValueError, match="64-byte"):
        cram.md5_finish(cram.INITIAL_STATE, b"", absorbed=3)


# --------------------------------------------------------------------------- OTP

# RFC 2289 appendix C: (algorithm, pass phrase, seed, count, 64-bit result).
RFC2289 = [
    ("md4", "This is a test.", "TeSt", 0, "D1854218EBBB0B51"),
    ("md4", "This is a test.", "TeSt", 1, "63473EF01CD0B444"),
    ("md4", "This is a test.", "TeSt", 99, "C5E612776E6C237A"),
    ("md4", "AbCdEfGhIjK", "alpha1", 0, "50076F47EB1ADE4E"),
    ("md4", "AbCdEfGhIjK", "alpha1", 1, "65D20D1949B5F7AB"),
    ("md4", "AbCdEfGhIjK", "alpha1", 99, "D150C82CCE6F62D1"),
    ("md4", "OTP's are good", "correct", 0, "849C79D4F6F55388"),
    ("md4", "OTP's are good", "correct", 1, "8C0992FB250847B1"),
    ("md4", "OTP's are good", "correct", 99, "3F3BF4B4145FD74B"),
    ("md5", "This is a test.", "TeSt", 0, "9E876134D90499DD"),
    ("md5", "This is a test.", "TeSt", 1, "7965E05436F5029F"),
    ("md5", "This is a test.", "TeSt", 99, "50FE1962C4965880"),
    ("md5", "AbCdEfGhIjK", "alpha1", 0, "87066DD9644BF206"),
    ("md5", "AbCdEfGhIjK", "alpha1", 1, "7CD34C1040ADD14B"),
    ("md5", "AbCdEfGhIjK", "alpha1", 99, "5AA37A81F212146C"),
    ("md5", "OTP's are good", "correct", 0, "F205753943DE4CF9"),
    ("md5", "OTP's are good", "correct", 1, "DDCDAC956F234937"),
    ("md5", "OTP's are good", "correct", 99, "B203E28FA525BE47"),
    ("sha1", "This is a test.", "TeSt", 0, "BB9E6AE1979D8FF4"),
    ("sha1", "This is a test.", "TeSt", 1, "63D936639734385B"),
    ("sha1", "This is a test.", "TeSt", 99, "87FEC7768B73CCF9"),
    ("sha1", "AbCdEfGhIjK", "alpha1", 0, "AD85F658EBE383C9"),
    ("sha1", "AbCdEfGhIjK", "alpha1", 1, "D07CE229B5CF119B"),
    ("sha1", "AbCdEfGhIjK", "alpha1", 99, "27BC71035AAF3DC6"),
    ("sha1", "OTP's are good", "correct", 0, "D51F3E99BF8E6F0B"),
    ("sha1", "OTP's are good", "correct", 1, "82AEB52D943774E4"),
    ("sha1", "OTP's are good", "correct", 99, "4F296A74FE1567EC"),
]


@pytest.mark.parametrize(("algorithm", "phrase", "seed", "count", "result"), RFC2289)
def test_otp_matches_rfc_2289s_test_vectors(
    algorithm: str, phrase: str, seed: str, count: int, result: str
) -> None:
    assert otp.otp_key(algorithm, seed, phrase.encode(), count).hex().upper() == result
    state = f"{{OTP}}{algorithm} {count} {seed} {result}"
    assert schemes.verify(phrase.encode(), schemes.parse(state))
    assert not schemes.verify(b"not it", schemes.parse(state))


@pytest.mark.parametrize(
    "state",
    [
        "sha1 1024 b4a2138b2f657d26 68ddd7a7c93dcb71 ",  # Dovecot prints no trailing space
        "sha1 01024 b4a2138b2f657d26 68ddd7a7c93dcb71",  # nor leading zeros
    ],
)
def test_an_otp_state_that_dovecot_would_not_print_back_never_verifies(state: str) -> None:
    assert not schemes.verify(b"secret", schemes.parse("{OTP}" + state))


def test_an_otp_state_compares_case_insensitively_like_dovecot() -> None:
    assert schemes.verify(
        b"secret", schemes.parse("{OTP}sha1 1024 B4A2138B2F657D26 68DDD7A7C93DCB71")
    )


@pytest.mark.parametrize(
    "state",
    [
        "sha256 1024 seed 68ddd7a7c93dcb71",
        "SHA1 1024 seed 68ddd7a7c93dcb71",  # Dovecot's algorithm names are lower case
        "sha1 -1 seed 68ddd7a7c93dcb71",
        f"sha1 {otp.MAX_SEQUENCE + 1} seed 68ddd7a7c93dcb71",
        "sha1 1024 seed 68ddd7a7",
        "sha1 1024 seedseedseedseedseed 68ddd7a7c93dcb71",
        "",
    ],
)
def test_an_unusable_otp_state_is_malformed(state: str) -> None:
    with pytest.raises(MalformedHash):
        schemes.verify(b"secret", schemes.parse("{OTP}" + state))
