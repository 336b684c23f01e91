"""needs_rehash, is_heavy, credentials and dummy_hash: what the engine asks of schemes."""

from __future__ import annotations

import pytest

from mailwarden import schemes
from mailwarden.schemes import HashPolicy, StoredHash

USER = "alice@example.com"
SHA512_CRYPT = (
    "{SHA512-CRYPT}$6$2S.HWOSqKixaLIpw$WiRgxf3sD94JaCoR0KHu9DvyUXuU3l3qdhWapUO74MSR6FxhntNsbN7"
    "ZP6HSyVil4iqAbZMF4kaewsc6dwwVd."
)
ARGON2ID = (
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$XWWIwh+DgW1Qx2yW9D0DDA"
    "$zHUXccpIyTczLPwQsE/OJmM3ygVz0O/xPSk/rnaFGck"
)
SCRAM_SHA_1 = (
    "{SCRAM-SHA-1}4096,sYdie3zQeQrbeMevFH2cNw==,nZefM5o47GFJzKph+18LglwdF/8=,"
    "6K051xFJ+xuKYYI5xs8AOJlSMh0="
)
BCRYPT = "$2y$05$cebuiXctVoNSEI5ybGK/Qe2JkJ5T8DZQYWG.eX5BEpzCZK9qWqHTS"
CRAM_HEX = "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"

DEFAULT = HashPolicy()
SHA512_POLICY = HashPolicy(scheme="SHA512-CRYPT")


@pytest.mark.parametrize(
    ("value", "policy", "expected"),
    [
        # a lower strength rank always needs a rehash
        ("{PLAIN}secret", DEFAULT, True),
        ("{SSHA}PCfAGpQMlEY8uQPHMpWC/rlXhGGFESPj", SHA512_POLICY, True),
        ("{CRYPT}Bnc6LBDnIppTo", SHA512_POLICY, True),  # DES inside {CRYPT}
        ("{MD5}5ebe2294ecd0e0f08eab7690d2a6ee69", HashPolicy(scheme="MD5-CRYPT"), True),
        ("{MD5}$1$H2vSC1E2$GSawZMbpLsQCzgkFDRfCW/", HashPolicy(scheme="MD5-CRYPT"), False),
        (SHA512_CRYPT, DEFAULT, True),
        # the same algorithm at the policy's cost, or above it, does not
        (SHA512_CRYPT, SHA512_POLICY, False),
        (SHA512_CRYPT, HashPolicy(scheme="SHA512-CRYPT", sha_crypt_rounds=4000), False),
        (ARGON2ID, DEFAULT, False),
        ("{BLF-CRYPT}" + BCRYPT, HashPolicy(scheme="BLF-CRYPT"), False),
        ("{BLF-CRYPT}" + BCRYPT, HashPolicy(scheme="CRYPT"), False),  # CRYPT makes bcrypt
        # the same algorithm at a lower cost does, whatever the label says
        (SHA512_CRYPT, HashPolicy(scheme="SHA512-CRYPT", sha_crypt_rounds=6000), True),
        ("{CRYPT}$6$rounds=1000$abc$def", SHA512_POLICY, True),
        (ARGON2ID, HashPolicy(argon2_memory_kib=131072), True),
        (ARGON2ID, HashPolicy(argon2_time_cost=4), True),
        ("{BLF-CRYPT}" + BCRYPT, HashPolicy(scheme="BLF-CRYPT", bcrypt_cost=6), True),
        ("{CRYPT}" + BCRYPT, HashPolicy(scheme="CRYPT", bcrypt_cost=6), True),
        (
            "{PBKDF2}$1$b7ZlaTTdp62wMSZE$5000$64014aecb1e08929bd13826c3f3d7bff52b73b52",
            HashPolicy(scheme="PBKDF2", pbkdf2_rounds=10000),
            True,
        ),
        (SCRAM_SHA_1, HashPolicy(scheme="SCRAM-SHA-1", scram_iterations=8192), True),
        (SCRAM_SHA_1, HashPolicy(scheme="SCRAM-SHA-1"), False),
        # a stronger or merely different algorithm of the same rank is kept
        (ARGON2ID, SHA512_POLICY, False),
        ("{SHA256-CRYPT}$5$rounds=1000$abc$def", SHA512_POLICY, False),
        (SCRAM_SHA_1, SHA512_POLICY, False),
        ("{ARGON2I}" + ARGON2ID[10:], HashPolicy(scheme="ARGON2I", argon2_time_cost=3), False),
        # an unreadable value needs replacing
        ("{ARGON2ID}garbage", DEFAULT, True),
        ("{SCRAM-SHA-1}garbage", SHA512_POLICY, True),
    ],
)
def test_needs_rehash_compares_strength_then_cost(
    value: str, policy: HashPolicy, expected: bool
) -> None:
    assert schemes.needs_rehash(schemes.parse(value), policy) is expected


@pytest.mark.parametrize(
    ("value", "heavy"),
    [
        ("{PLAIN}x", False),
        ("{SHA512}x", False),
        ("{SSHA}x", False),
        ("{CRAM-MD5}x", False),
        ("{DIGEST-MD5}x", False),
        ("{PLAIN-MD4}x", False),
        ("{MD5}5ebe2294ecd0e0f08eab7690d2a6ee69", False),
        ("{MD5}$1$H2vSC1E2$GSawZMbpLsQCzgkFDRfCW/", True),
        ("{MD5-CRYPT}x", True),
        ("{DES-CRYPT}x", True),
        (SHA512_CRYPT, True),
        ("{BLF-CRYPT}x", True),
        (ARGON2ID, True),
        ("{PBKDF2}x", True),
        (SCRAM_SHA_1, True),
        ("{OTP}x", True),
    ],
)
def test_is_heavy_marks_what_should_leave_the_event_loop(value: str, heavy: bool) -> None:
    assert schemes.is_heavy(schemes.parse(value)) is heavy


def test_every_scheme_has_a_documented_strength_rank() -> None:
    ranks = {name: scheme.strength for name, scheme in schemes.SCHEMES.items()}
    assert {ranks[n] for n in ("PLAIN", "CLEAR", "CLEARTEXT", "PLAIN-TRUNC")} == {0}
    assert {ranks[n] for n in ("SHA", "PLAIN-MD5", "CRAM-MD5", "DIGEST-MD5")} == {1}
    assert {ranks[n] for n in ("SSHA", "SMD5", "DES-CRYPT", "MD5-CRYPT", "OTP")} == {2}
    assert {ranks[n] for n in ("SHA512-CRYPT", "PBKDF2", "SCRAM-SHA-256")} == {3}
    assert {ranks[n] for n in ("BLF-CRYPT", "CRYPT")} == {4}
    assert {ranks[n] for n in ("ARGON2I", "ARGON2ID")} == {5}


# --------------------------------------------------------------------------- credentials


def test_a_plaintext_yields_every_challenge_response_credential() -> None:
    stored = schemes.parse("{PLAIN}secret")
    assert schemes.credentials(stored, "PLAIN") == b"secret"
    assert schemes.credentials(stored, "cram-md5") == bytes.fromhex(CRAM_HEX)
    assert schemes.credentials(stored, "HMAC-MD5") == bytes.fromhex(CRAM_HEX)
    digest = schemes.credentials(stored, "DIGEST-MD5", user=USER)
    assert digest == bytes.fromhex("b1726872c344b6dc8365b774f8fd6412")
    assert schemes.credentials(schemes.parse("{CLEAR.B64}c2VjcmV0"), "PLAIN") == b"secret"


@pytest.mark.parametrize("scheme", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_credentials_from_a_plaintext_are_valid_and_stable_for_one_exchange(
    scheme: str,
) -> None:
    stored = schemes.parse("{PLAIN}secret")
    creds = schemes.credentials(stored, scheme, user=USER)
    assert creds is not None
    assert creds.startswith(b"4096,")
    as_stored = StoredHash(scheme, None, creds.decode("ascii"))
    assert schemes.verify(b"secret", as_stored)
    assert not schemes.verify(b"wrong", as_stored)
    # A mechanism that asks twice (salt first, proof later) must get the same salt.
    assert schemes.credentials(stored, scheme, user=USER) == creds
    other_user = schemes.credentials(stored, scheme, user="bob@example.com")
    other_password = schemes.credentials(schemes.parse("{PLAIN}other"), scheme, user=USER)
    assert other_user is not None and other_password is not None
    assert other_user.split(b",")[1] != creds.split(b",")[1]
    assert other_password.split(b",")[1] != creds.split(b",")[1]


def test_a_stored_credential_is_handed_over_decoded_to_its_own_scheme_and_aliases() -> None:
    cram_state = bytes.fromhex(CRAM_HEX)
    assert schemes.credentials(schemes.parse("{CRAM-MD5}" + CRAM_HEX), "CRAM-MD5") == cram_state
    assert schemes.credentials(schemes.parse("{HMAC-MD5}" + CRAM_HEX), "CRAM-MD5") == cram_state
    scram = schemes.parse(SCRAM_SHA_1)
    assert schemes.credentials(scram, "SCRAM-SHA-1") == SCRAM_SHA_1[13:].encode()
    digest = schemes.parse("{DIGEST-MD5}b1726872c344b6dc8365b774f8fd6412")
    assert schemes.credentials(digest, "DIGEST-MD5", user="anyone") == bytes.fromhex(
        "b1726872c344b6dc8365b774f8fd6412"
    )


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        (SHA512_CRYPT, "PLAIN"),
        (SHA512_CRYPT, "CRAM-MD5"),
        (SCRAM_SHA_1, "SCRAM-SHA-256"),
        ("{CRAM-MD5}" + CRAM_HEX, "PLAIN"),
        ("{PLAIN-TRUNC}6-secret", "PLAIN"),  # may be a truncated password
        ("{PLAIN}secret", "SHA512-CRYPT"),  # no mechanism uses it
        ("{PLAIN}secret", "NOPE"),
        ("{CRAM-MD5}zz", "CRAM-MD5"),  # undecodable
        ("{PLAIN.HEX}7365637265740078", "CRAM-MD5"),  # a NUL in the plaintext
    ],
)
def test_credentials_are_none_when_the_stored_value_cannot_give_them(
    value: str, wanted: str
) -> None:
    assert schemes.credentials(schemes.parse(value), wanted, user=USER) is None


# --------------------------------------------------------------------------- dummy hash


def test_the_dummy_hash_is_made_once_per_policy_in_the_policy_scheme() -> None:
    policy = HashPolicy(scheme="SHA512-CRYPT")
    dummy = schemes.dummy_hash(policy)
    assert dummy.scheme == "SHA512-CRYPT"
    assert schemes.dummy_hash(policy) is dummy
    assert schemes.dummy_hash(HashPolicy(scheme="SHA512-CRYPT")) is dummy  # equal policies
    assert schemes.is_heavy(dummy)
    assert not schemes.verify(b"secret", dummy)
    other = schemes.dummy_hash(HashPolicy(scheme="SHA512-CRYPT", sha_crypt_rounds=1000))
    assert other.data.startswith("$6$rounds=1000$")
