"""parse(): ``{SCHEME}`` prefixes, encodings, bare values and the default scheme."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarden import schemes
from mailwarden.errors import MalformedHash, SchemeError, UnknownScheme
from mailwarden.schemes import StoredHash

SHA512_CRYPT = (
    "$6$2S.HWOSqKixaLIpw$WiRgxf3sD94JaCoR0KHu9DvyUXuU3l3qdhWapUO74MSR6FxhntNsbN7ZP6HSyVil4iq"
    "AbZMF4kaewsc6dwwVd."
)
BCRYPT = "$2y$05$cebuiXctVoNSEI5ybGK/Qe2JkJ5T8DZQYWG.eX5BEpzCZK9qWqHTS"
MD5_CRYPT = "$1$riWVd7Kg$/js4GyHGRsfrI5JD2pHIL."


def test_the_registry_has_every_scheme_doveadm_lists() -> None:
    # doveadm pw -l (Dovecot 2.3.19.1 on Debian 12)
    doveadm = (
        "SHA1 SSHA512 SCRAM-SHA-256 BLF-CRYPT PLAIN HMAC-MD5 OTP SHA512 SHA DES-CRYPT CRYPT "
        "SSHA MD5-CRYPT PLAIN-MD4 PLAIN-MD5 SCRAM-SHA-1 SHA512-CRYPT CLEAR CLEARTEXT ARGON2I "
        "ARGON2ID SSHA256 MD5 PBKDF2 SHA256 CRAM-MD5 PLAIN-TRUNC SHA256-CRYPT SMD5 DIGEST-MD5 "
        "LDAP-MD5"
    )
    assert set(schemes.SCHEMES) == set(doveadm.split())
    for name, scheme in schemes.SCHEMES.items():
        assert scheme.name == name


@pytest.mark.parametrize(
    ("value", "scheme", "encoding", "data"),
    [
        ("{SHA512-CRYPT}" + SHA512_CRYPT, "SHA512-CRYPT", None, SHA512_CRYPT),
        ("{sha512-crypt}x", "SHA512-CRYPT", None, "x"),
        ("{SHA256.HEX}abc", "SHA256", "hex", "abc"),
        ("{sha256.b64}abc", "SHA256", "b64", "abc"),
        ("{SHA256.Base64}abc", "SHA256", "b64", "abc"),
        ("{PLAIN}", "PLAIN", None, ""),
        ("{PLAIN}{weird}}", "PLAIN", None, "{weird}}"),
        # OpenLDAP and qmail-ldap spellings
        ("{crypt}" + SHA512_CRYPT, "CRYPT", None, SHA512_CRYPT),
        ("{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==", "MD5", None, "Xr4ilOzQ4PCOq3aQ0qbuaQ=="),
        ("{sha}5en6G6MezRroT3XKqkdPOmY/BfQ=", "SHA", None, "5en6G6MezRroT3XKqkdPOmY/BfQ="),
        ("{Ssha}abc", "SSHA", None, "abc"),
        ("{smd5}abc", "SMD5", None, "abc"),
    ],
)
def test_a_scheme_prefix_is_case_insensitive_and_may_name_an_encoding(
    value: str, scheme: str, encoding: str | None, data: str
) -> None:
    assert schemes.parse(value) == StoredHash(scheme, encoding, data)


@pytest.mark.parametrize(
    ("value", "scheme"),
    [
        (SHA512_CRYPT, "SHA512-CRYPT"),
        ("$5$rounds=1000$abc$def", "SHA256-CRYPT"),
        (BCRYPT, "BLF-CRYPT"),
        ("$2a$05$x", "BLF-CRYPT"),
        ("$2b$05$x", "BLF-CRYPT"),
        ("$2x$05$x", "BLF-CRYPT"),
        ("$argon2i$v=19$m=32768,t=4,p=1$x$y", "ARGON2I"),
        ("$argon2id$v=19$m=65536,t=3,p=1$x$y", "ARGON2ID"),
        ("$y$j9T$salt$hash", "CRYPT"),
        (MD5_CRYPT, "MD5-CRYPT"),
    ],
)
def test_a_bare_value_is_recognised_by_its_own_prefix(value: str, scheme: str) -> None:
    assert schemes.parse(value, default_scheme="PLAIN") == StoredHash(scheme, None, value)


def test_a_bare_md5_crypt_value_drops_what_follows_the_hash_like_dovecot() -> None:
    assert schemes.parse(MD5_CRYPT + "$ignored") == StoredHash("MD5-CRYPT", None, MD5_CRYPT)
    assert schemes.verify(b"secret", schemes.parse(MD5_CRYPT + "$ignored"))


@pytest.mark.parametrize("value", ["Bnc6LBDnIppTo", "secret", "", "$1$nosecond", "$argon2d$x"])
def test_anything_else_gets_the_default_scheme(value: str) -> None:
    assert schemes.parse(value) == StoredHash("CRYPT", None, value)
    assert schemes.parse(value, default_scheme="plain") == StoredHash("PLAIN", None, value)
    assert schemes.parse(value, default_scheme="PLAIN.HEX").encoding == "hex"


def test_an_unclosed_brace_is_data_of_the_default_scheme() -> None:
    assert schemes.parse("{PLAIN", default_scheme="PLAIN") == StoredHash("PLAIN", None, "{PLAIN")


@pytest.mark.parametrize(
    "value",
    [
        "{NOPE}x",
        "{}x",
        "{SHA256.ROT13}x",
        "{ SHA}x",
        "{SHA256.}x",
        "{SHA256.HEX.B64}x",
        "{\u017fha}x",  # "ſha".upper() == "SHA", but Dovecot compares ASCII only
    ],
)
def test_an_unknown_scheme_or_encoding_is_refused(value: str) -> None:
    with pytest.raises(UnknownScheme):
        schemes.parse(value)


def test_an_unknown_default_scheme_is_refused() -> None:
    with pytest.raises(UnknownScheme):
        schemes.parse("abc", default_scheme="NOPE")


def test_values_with_nul_or_over_the_size_limit_are_malformed() -> None:
    with pytest.raises(MalformedHash, match="NUL"):
        schemes.parse("{PLAIN}a\0b")
    with pytest.raises(MalformedHash, match="longer"):
        schemes.parse("{PLAIN}" + "x" * schemes.MAX_STORED_LENGTH)


def test_the_repr_of_a_stored_hash_hides_its_data() -> None:
    stored = schemes.parse("{PLAIN}secret")
    assert "secret" not in repr(stored)
    assert stored.encoded() == "{PLAIN}secret"
    assert schemes.parse("{sha256.hex}ab").encoded() == "{SHA256.HEX}ab"


@pytest.mark.parametrize(
    ("value", "password"),
    [
        ("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "secret"),
        ("{SHA}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4", "secret"),  # hex by length
        ("{SHA.HEX}E5E9FA1BA31ECD1AE84F75CAAA474F3A663F05F4", "secret"),
        ("{SHA256.B64}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=", "secret"),
        ("{PLAIN-MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==", "secret"),  # base64 by length
        ("{LDAP-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69", "secret"),  # hex by length
        ("{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==", "secret"),  # OpenLDAP's {MD5}: base64 MD5
        ("{MD5}5ebe2294ecd0e0f08eab7690d2a6ee69", "secret"),  # or hex
        ("{SHA}5en6G6MezRroT3XKqk dPOmY/BfQ=", "secret"),  # Dovecot skips whitespace
        ("{PLAIN.B64}c2VjcmV0", "secret"),
        ("{PLAIN.HEX}736563726574", "secret"),
        ("{SSHA.HEX}c4f30e48dedabd70759daac462f838283ebd38726d86683f", "secret"),
        ("{CRYPT}" + SHA512_CRYPT, "secret"),  # CRYPT verifies any crypt(3) string
        ("{SHA512-CRYPT}" + BCRYPT, "secret"),  # a $2?$ value always goes to bcrypt
        ("{SHA256-CRYPT}" + MD5_CRYPT, "secret"),
        ("{DES-CRYPT}" + SHA512_CRYPT, "secret"),
        (
            "{ARGON2I}$argon2id$v=19$m=65536,t=3,p=1$XWWIwh+DgW1Qx2yW9D0DDA"
            "$zHUXccpIyTczLPwQsE/OJmM3ygVz0O/xPSk/rnaFGck",
            "secret",
        ),
    ],
)
def test_encodings_and_cross_scheme_values_verify_as_dovecot_does(
    value: str, password: str
) -> None:
    stored = schemes.parse(value)
    assert schemes.verify(password.encode(), stored)
    assert not schemes.verify(b"wrong", stored)


@pytest.mark.parametrize(
    "value",
    [
        "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ",  # Dovecot requires the padding
        "{SHA}abc",
        "{SHA.HEX}5en6G6MezRroT3XKqkdPOmY/BfQ=",
        "{SHA256}5en6G6MezRroT3XKqkdPOmY/BfQ=",  # 20 bytes, not 32
        "{SSHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",  # a digest and no salt
        "{CRYPT}",
        "{MD5-CRYPT}Bnc6LBDnIppTo",  # DES would match; Dovecot's md5crypt never does
        "{BLF-CRYPT}" + SHA512_CRYPT,
        "{BLF-CRYPT}$2c$05$cebuiXctVoNSEI5ybGK/Qe2JkJ5T8DZQYWG.eX5BEpzCZK9qWqHTS",
        "{BLF-CRYPT}$2y$05$short",
        "{SHA512-CRYPT}$6$rounds=10$abc",
        "{MD5}notadigest",
        "{PBKDF2}$2$salt$5000$64014aecb1e08929bd13826c3f3d7bff52b73b52",
        "{PBKDF2}$1$salt$0$64014aecb1e08929bd13826c3f3d7bff52b73b52",
        "{PBKDF2}$1$salt$5000$64014aecb1e08929bd13826c3f3d7bff52b73b5",
        "{SCRAM-SHA-1}4095,sYdie3zQeQrbeMevFH2cNw==,nZefM5o47GFJzKph+18LglwdF/8=,"
        "6K051xFJ+xuKYYI5xs8AOJlSMh0=",
        "{SCRAM-SHA-256}4096,sYdie3zQeQrbeMevFH2cNw==,nZefM5o47GFJzKph+18LglwdF/8=,"
        "6K051xFJ+xuKYYI5xs8AOJlSMh0=",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$XWWIwh",
        "{ARGON2ID}$argon2d$v=19$m=65536,t=3,p=1$XWWIwh+DgW1Qx2yW9D0DDA"
        "$zHUXccpIyTczLPwQsE/OJmM3ygVz0O/xPSk/rnaFGck",
        "{ARGON2ID}$argon2id$v=19$m=99999999,t=3,p=1$XWWIwh+DgW1Qx2yW9D0DDA"
        "$zHUXccpIyTczLPwQsE/OJmM3ygVz0O/xPSk/rnaFGck",
    ],
)
def test_data_that_can_never_verify_is_malformed(value: str) -> None:
    with pytest.raises(MalformedHash):
        schemes.verify(b"secret", schemes.parse(value))


def test_a_crypt_value_libxcrypt_reads_as_des_just_does_not_match() -> None:
    # crypt(3) takes an unknown string's first two characters as a DES salt, and so
    # does Dovecot: a mismatch, not an error.
    assert not schemes.verify(b"secret", schemes.parse("{CRYPT}garbage"))


def test_a_password_with_nul_never_verifies() -> None:
    assert not schemes.verify(b"secret\0x", schemes.parse("{PLAIN.HEX}7365637265740078"))
    assert not schemes.verify(b"sec\0", schemes.parse("{CRYPT}" + SHA512_CRYPT))


def test_verify_refuses_a_stored_hash_of_an_unknown_scheme() -> None:
    with pytest.raises(UnknownScheme):
        schemes.verify(b"x", StoredHash("NOPE", None, "x"))
    with pytest.raises(UnknownScheme):
        schemes.is_heavy(StoredHash("NOPE", None, "x"))


# --------------------------------------------------------------------------- properties

# Text shaped like stored passwords: prefixes, separators and digits are likely.
stored_text = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda name, sep, data: f"{{{name}{sep}}}{data}",
        st.sampled_from([*schemes.SCHEMES, "sha", "Crypt", "NOPE", ""]),
        st.sampled_from(["", ".hex", ".B64", ".base64", ".x", "."]),
        st.text(max_size=80),
    ),
    st.builds(
        lambda prefix, data: prefix + data,
        st.sampled_from(["$1$", "$2a$", "$2y$05$", "$5$", "$6$rounds=", "$y$", "$argon2id$", "{"]),
        st.text(alphabet="$./0123456789abcdefABCDEF=,+", max_size=80),
    ),
)


@settings(max_examples=500)
@given(value=stored_text, default=st.sampled_from(["CRYPT", "PLAIN", "md5", "SHA.hex", "NOPE"]))
def test_parse_returns_a_stored_hash_or_raises_scheme_error_for_any_text(
    value: str, default: str
) -> None:
    try:
        stored = schemes.parse(value, default_scheme=default)
    except SchemeError:
        return
    assert stored.scheme in schemes.SCHEMES
    assert stored.encoding in (None, "hex", "b64")
    assert stored.data in value
