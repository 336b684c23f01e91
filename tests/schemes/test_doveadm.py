"""Every scheme against the real ``doveadm pw`` (Dovecot 2.3), in both directions.

doveadm's hashes must verify here, ours must pass ``doveadm pw -t``, and a wrong
password must fail on both sides, for random ASCII and UTF-8 passwords.

doveadm always loads a configuration first (it execs ``doveconf``), by default
/etc/dovecot/dovecot.conf and its conf.d. ``doveadm -c FILE`` hands FILE to that
doveconf instead, and an *empty* file is enough for ``doveadm pw`` (not even
``ssl = no`` is needed). Checked with ``strace -f -e trace=openat,execve``: with
``-c`` the only configuration file opened is FILE, while with the environment
variable ``DOVECOT_CONFIG`` set instead, doveconf still opens /etc/dovecot/*.

The random passwords come from a seed printed in every failure message; set
``MAILWARDEN_DOVEADM_SEED`` to replay one. Calls run a few at a time to keep the
file to a few seconds.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailwarden import schemes
from mailwarden.errors import MalformedHash
from mailwarden.schemes import HashPolicy, libcrypt

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        shutil.which("doveadm") is None,
        reason="doveadm is not on PATH (Debian package dovecot-core; `make test` installs it)",
    ),
]

USER = "alice@example.com"
SEED = int(os.environ.get("MAILWARDEN_DOVEADM_SEED") or random.SystemRandom().randrange(2**32))
_rng = random.Random(SEED)

# Cheap costs for what we generate; doveadm -t reads the costs from the value.
CHEAP = HashPolicy(argon2_memory_kib=1024, argon2_time_cost=1, bcrypt_cost=4)

ASCII = "".join(chr(c) for c in range(0x21, 0x7F)) + " "
NON_ASCII = "äöüßéèçñøåæœ€£¥©®°±µ¶ЖжДдλΩπ中文日本語한국어😀🔑✓"


def _password(alphabet: str, low: int, high: int) -> str:
    length = _rng.randint(low, high)
    return "".join(_rng.choice(alphabet) for _ in range(length))


def passwords() -> list[str]:
    """Two ASCII and two UTF-8 passwords (mixed with ASCII), fresh for each call."""
    return [
        _password(ASCII, 1, 24),
        _password(ASCII, 8, 40),
        _password(NON_ASCII, 1, 12),
        _password(NON_ASCII + ASCII, 6, 30),
    ]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def verified(self) -> bool:
        return self.code == 0 and self.out.rstrip().endswith("(verified)")


@pytest.fixture(scope="module")
def conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("doveadm") / "dovecot.conf"
    path.write_text("")  # empty on purpose: see the module docstring
    return path


def doveadm(conf: Path, *args: str) -> Result:
    done = subprocess.run(
        ["doveadm", "-c", str(conf), "pw", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def in_parallel(conf: Path, calls: list[list[str]]) -> list[Result]:
    """``doveadm pw`` with each argument list, a few at a time."""
    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda args: doveadm(conf, *args), calls))


def wrong(password: str) -> str:
    # Change the first character: DES-crypt reads only 8 characters, bcrypt 72 bytes.
    return ("y" if password.startswith("x") else "x") + password[1:]


def generated_by_doveadm(conf: Path, scheme: str, plain: list[str], *extra: str) -> list[str]:
    results = in_parallel(conf, [["-s", scheme, "-p", p, "-u", USER, *extra] for p in plain])
    for result in results:
        assert result.code == 0, f"seed {SEED}: doveadm failed: {result.err}"
    return [result.out.removesuffix("\n") for result in results]


def checked_by_doveadm(conf: Path, pairs: list[tuple[str, str]]) -> list[Result]:
    return in_parallel(conf, [["-t", value, "-p", p, "-u", USER] for value, p in pairs])


# Every scheme but PLAIN-TRUNC, whose doveadm output nothing can verify (own test).
SCHEMES = sorted(set(schemes.SCHEMES) - {"PLAIN-TRUNC"})


@pytest.mark.parametrize("scheme", SCHEMES)
def test_doveadm_and_we_verify_each_others_hashes_and_refuse_wrong_passwords(
    conf: Path, scheme: str
) -> None:
    # Two ASCII and two UTF-8 passwords for doveadm to hash, one of each for us: each
    # of ours costs two doveadm runs. doveadm's argon2 costs ~0.1 s, so one of each.
    plain = passwords()
    theirs = plain[1:3] if scheme.startswith("ARGON2") else plain
    mine = plain[1:3]
    ours = [schemes.generate(p.encode(), scheme, user=USER, policy=CHEAP) for p in mine]
    count = len(theirs)
    results = in_parallel(
        conf,
        [["-s", scheme, "-p", p, "-u", USER] for p in theirs]
        + [["-t", v, "-p", p, "-u", USER] for v, p in zip(ours, mine, strict=True)]
        + [["-t", v, "-p", wrong(p), "-u", USER] for v, p in zip(ours, mine, strict=True)],
    )
    generated, checked = results[:count], results[count:]
    accepted, refused = checked[: len(mine)], checked[len(mine) :]
    for password, result in zip(theirs, generated, strict=True):
        value = result.out.removesuffix("\n")
        context = f"seed {SEED}: {value} / {password!r}"
        assert result.code == 0 and value.startswith(f"{{{scheme}}}"), context
        stored = schemes.parse(value)
        assert schemes.verify(password.encode(), stored, user=USER), context
        assert not schemes.verify(wrong(password).encode(), stored, user=USER), context
    for value, password, ok, bad in zip(ours, mine, accepted, refused, strict=True):
        context = f"seed {SEED}: {value} / {password!r}"
        assert ok.verified, f"{context}: {ok.err}"
        assert bad.code != 0 and "Password mismatch" in bad.err, context


# What ``-r`` controls, as one regex group per scheme: the text before the salt.
COST_PARAMETERS = {
    "SHA512-CRYPT": r"(\$6\$(?:rounds=[0-9]+\$)?)",
    "SHA256-CRYPT": r"(\$5\$(?:rounds=[0-9]+\$)?)",
    "BLF-CRYPT": r"(\$2y\$[0-9]{2}\$)",
    "CRYPT": r"(\$2y\$[0-9]{2}\$)",
    "PBKDF2": r"\$1\$[^$]+\$([0-9]+)\$",
    "ARGON2ID": r"(\$argon2id\$v=19\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$)",
    "ARGON2I": r"(\$argon2i\$v=19\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$)",
}


@pytest.mark.parametrize(
    ("scheme", "rounds"),
    [
        ("SHA512-CRYPT", 10),
        ("SHA512-CRYPT", 5000),
        ("SHA256-CRYPT", 7000),
        ("BLF-CRYPT", 1),
        ("CRYPT", 6),
        ("PBKDF2", 1),
        ("ARGON2ID", 1),
        ("ARGON2I", 3),
    ],
)
def test_rounds_give_the_cost_parameters_of_doveadm_pw_r(
    conf: Path, scheme: str, rounds: int
) -> None:
    password = passwords()[3]
    [theirs] = generated_by_doveadm(conf, scheme, [password], "-r", str(rounds))
    ours = schemes.generate(password.encode(), scheme, rounds=rounds)
    pattern = re.compile(rf"\{{{scheme}\}}{COST_PARAMETERS[scheme]}")
    their_costs, our_costs = pattern.match(theirs), pattern.match(ours)
    assert their_costs is not None and our_costs is not None, (theirs, ours)
    assert our_costs[1] == their_costs[1]
    assert schemes.verify(password.encode(), schemes.parse(theirs))
    assert checked_by_doveadm(conf, [(ours, password)])[0].verified


def test_plain_trunc_as_doveadm_makes_it_and_as_dovecot_verifies_it(conf: Path) -> None:
    [theirs] = generated_by_doveadm(conf, "PLAIN-TRUNC", ["secret"])
    assert theirs == "{PLAIN-TRUNC}secret"
    # Dovecot refuses doveadm's own output; so do we.
    result = checked_by_doveadm(conf, [(theirs, "secret")])[0]
    assert result.code != 0 and "missing length: prefix" in result.err
    with pytest.raises(MalformedHash):
        schemes.verify(b"secret", schemes.parse(theirs))
    # Ours carries the prefix, and every truncation rule agrees with doveadm -t.
    cases = [
        (schemes.generate(b"secret", "PLAIN-TRUNC"), "secret"),
        ("{PLAIN-TRUNC}3-sec", "secret"),
        ("{PLAIN-TRUNC}3-sec", "sec"),
        ("{PLAIN-TRUNC}3-sec", "se"),
        ("{PLAIN-TRUNC}3-sec", "sex"),
        ("{PLAIN-TRUNC}10-secret", "secret"),
        ("{PLAIN-TRUNC}10-secret", "secretsecret"),
        ("{PLAIN-TRUNC}0-", "anything"),
        ("{PLAIN-TRUNC}2-pä", "päss"),  # lengths are in bytes: "pä" is 3
    ]
    for (value, password), result in zip(cases, checked_by_doveadm(conf, cases), strict=True):
        assert schemes.verify(password.encode(), schemes.parse(value)) is result.verified, (
            value,
            password,
        )


def test_otp_states_round_trip_with_doveadm(conf: Path) -> None:
    # doveadm's OTP state is verified by recomputing it: same algorithm, sequence
    # and seed; md4 and md5 states (which doveadm cannot generate) too.
    password = passwords()[3]
    [theirs] = generated_by_doveadm(conf, "OTP", [password])
    assert theirs.startswith("{OTP}sha1 1024 ")
    assert schemes.verify(password.encode(), schemes.parse(theirs))
    ours = [schemes.generate(password.encode(), "OTP")]
    for algorithm in ("md4", "md5"):
        seed = "mailwarden42"
        key = schemes.otp.otp_key(algorithm, seed, password.encode(), 99)
        ours.append(f"{{OTP}}{algorithm} 99 {seed} {key.hex()}")
    results = checked_by_doveadm(conf, [(v, password) for v in ours] + [(ours[1], "wrong")])
    assert [r.verified for r in results] == [True, True, True, False]


@pytest.mark.parametrize("variant", ["$2a$", "$2x$", "$2b$", "$2y$"])
def test_every_bcrypt_variant_agrees_with_dovecots_crypt_blowfish(conf: Path, variant: str) -> None:
    # $2x$ reproduces the 8-bit sign-extension bug and $2a$ carries Openwall's
    # countermeasure, so non-ASCII passwords are where variants can disagree.
    plain = [passwords()[3], "\xff\xa3" * 4, "p" * 100]
    setting = variant.encode() + libcrypt.gensalt(b"$2b$", 4, os.urandom(16))[4:]
    values = [
        "{BLF-CRYPT}" + libcrypt.crypt(p.encode()[:72], setting).decode("ascii") for p in plain
    ]
    pairs = [(v, p) for v, p in zip(values, plain, strict=True)]
    pairs += [(v, "wrong") for v in values]
    for (value, password), result in zip(pairs, checked_by_doveadm(conf, pairs), strict=True):
        ours = schemes.verify(password.encode(), schemes.parse(value))
        assert ours is result.verified, f"seed {SEED}: {value} / {password!r}"


@pytest.mark.parametrize(
    "scheme", ["BLF-CRYPT", "PLAIN-MD4", "CRAM-MD5", "SHA512-CRYPT", "SCRAM-SHA-256"]
)
def test_long_passwords_agree_with_doveadm(conf: Path, scheme: str) -> None:
    # bcrypt reads 72 bytes, MD4 pads over several blocks, CRAM-MD5 hashes keys over
    # 64 bytes first; SHA-crypt and PBKDF2 take any length.
    password = _password(ASCII + NON_ASCII, 80, 120)
    [theirs] = generated_by_doveadm(conf, scheme, [password])
    assert schemes.verify(password.encode(), schemes.parse(theirs)), f"seed {SEED}"
    ours = schemes.generate(password.encode(), scheme, policy=CHEAP)
    if scheme in ("PLAIN-MD4", "CRAM-MD5"):
        assert ours == theirs
    assert checked_by_doveadm(conf, [(ours, password)])[0].verified, f"seed {SEED}"


@pytest.mark.parametrize(
    "value",
    [
        "{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",  # OpenLDAP's base64 MD5
        "{MD5}5ebe2294ecd0e0f08eab7690d2a6ee69",
        "{SHA}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4",  # hex by length
        "{SHA.HEX}E5E9FA1BA31ECD1AE84F75CAAA474F3A663F05F4",
        "{PLAIN.B64}c2VjcmV0",
        "{SHA}5en6G6MezRroT3XKqk dPOmY/BfQ=",
        "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ",  # unpadded: refused by both
        "{SSHA.HEX}c4f30e48dedabd70759daac462f838283ebd38726d86683f",
        "{CRYPT}$1$H2vSC1E2$GSawZMbpLsQCzgkFDRfCW/",
        "{SHA512-CRYPT}$2y$05$cebuiXctVoNSEI5ybGK/Qe2JkJ5T8DZQYWG.eX5BEpzCZK9qWqHTS",
        "{MD5-CRYPT}Bnc6LBDnIppTo",  # DES inside MD5-CRYPT: never matches in Dovecot
    ],
)
def test_encodings_and_cross_scheme_values_are_judged_like_doveadm(conf: Path, value: str) -> None:
    result = checked_by_doveadm(conf, [(value, "secret")])[0]
    try:
        ours = schemes.verify(b"secret", schemes.parse(value))
    except MalformedHash:
        ours = False
    assert ours is result.verified, result.err


def test_yescrypt_and_encoded_output_pass_doveadm(conf: Path) -> None:
    password = passwords()[2]
    yescrypt = libcrypt.crypt(password.encode(), libcrypt.gensalt(b"$y$", 0, os.urandom(16)))
    values = [
        "{CRYPT}" + yescrypt.decode("ascii"),
        schemes.generate(password.encode(), "SHA256.HEX"),
        schemes.generate(password.encode(), "SSHA512.HEX"),
        schemes.generate(password.encode(), "PLAIN.B64"),
        schemes.generate(password.encode(), "CRAM-MD5.B64"),
    ]
    for value, result in zip(
        values, checked_by_doveadm(conf, [(v, password) for v in values]), strict=True
    ):
        assert result.verified, f"seed {SEED}: {value}: {result.err}"
        assert schemes.verify(password.encode(), schemes.parse(value))


@pytest.fixture(autouse=True)
def _report_seed() -> Iterator[None]:
    # Printed with the output of a failing test, so its passwords can be replayed.
    print(f"MAILWARDEN_DOVEADM_SEED={SEED}")
    yield
