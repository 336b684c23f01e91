"""The dummy verification of unknown names costs what this site's accounts cost.

No timing here (bench/unknown_user_timing.py measures it): these tests check which
value an unknown name is verified against.
"""

from __future__ import annotations

from typing import Any

from mailwarden import schemes
from mailwarden.auth.dummies import DummyHashes
from mailwarden.auth.engine import Engine
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account
from mailwarden.schemes.base import StoredHash
from tests.helpers import attempt, hashed, make_config

# The policy an issue 15 site had: new hashes ARGON2ID, imported accounts SHA512-CRYPT.
ARGON_POLICY = make_config(
    passwords={"scheme": "ARGON2ID", "argon2_memory_kib": 1024, "argon2_time_cost": 1},
    guard={"enabled": False},
)


class RecordingHasher(Hasher):
    """A real hasher that also notes the scheme of every value it verifies."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.schemes: list[str] = []

    async def verify(
        self, password: bytes, stored: StoredHash, *, user: str = "", heavy: bool | None = None
    ) -> bool:
        self.schemes.append(stored.scheme)
        return await super().verify(password, stored, user=user, heavy=heavy)


async def imported_site(n: int, scheme: str = "SHA512-CRYPT") -> MemoryDirectory:
    directory = MemoryDirectory()
    for i in range(n):
        await directory.create(Account(uid=f"user{i}", password=hashed(f"pw{i}", scheme)))
    return directory


async def test_an_unknown_name_pays_the_stored_scheme_not_the_policy_scheme() -> None:
    """Unknown users paid ARGON2ID (~260 ms) where every account was SHA512-CRYPT (~3 ms)."""
    directory = await imported_site(5)
    hasher = RecordingHasher(workers=1)
    engine = Engine(directory=directory, hasher=hasher, config=ARGON_POLICY)
    try:
        await engine.start()  # samples stored values in the background...
        await engine.authenticate(attempt("nobody-first", "wrong"))  # ...awaited by the first
        await engine.authenticate(attempt("user1", "wrong"))
        await engine.authenticate(attempt("nobody", "wrong"))
        await engine.authenticate(attempt("someone@else.example", "wrong"))
    finally:
        hasher.close()
    assert hasher.schemes == ["SHA512-CRYPT"] * 4


async def test_a_one_shot_engine_samples_at_its_first_unknown_name_not_at_start() -> None:
    """checkpassword under Dovecot's 256 MiB vsz_limit had no room for a sampling
    thread beside the login's own: a one-shot command samples only when it must."""
    directory = await imported_site(3)
    hasher = RecordingHasher(workers=1)
    engine = Engine(directory=directory, hasher=hasher, config=ARGON_POLICY)
    try:
        await engine.start(sample=False)
        assert engine.dummies.shares == {}  # nothing read at start
        await engine.authenticate(attempt("nobody", "wrong"))
        assert sum(engine.dummies.shares.values()) == 3
    finally:
        hasher.close()
    assert hasher.schemes == ["SHA512-CRYPT"]


async def test_logins_teach_the_dummy_without_a_sample() -> None:
    directory = await imported_site(1, "BLF-CRYPT")
    hasher = RecordingHasher(workers=1)
    engine = Engine(directory=directory, hasher=hasher, config=ARGON_POLICY)
    try:
        await engine.authenticate(attempt("nobody", "wrong"))  # nothing known yet: policy
        await engine.authenticate(attempt("user0", "wrong"))
        await engine.authenticate(attempt("nobody2", "wrong"))
    finally:
        hasher.close()
    assert hasher.schemes == ["ARGON2ID", "BLF-CRYPT", "BLF-CRYPT"]


def test_a_mixed_site_gives_each_name_one_profile_with_the_sites_shares() -> None:
    dummies = DummyHashes()
    sha = schemes.parse(hashed("x", "SHA512-CRYPT"))
    bcrypt = schemes.parse(hashed("x", "BLF-CRYPT"))
    for i in range(300):
        dummies.observe(f"old{i}", f"v{i}", sha)
    for i in range(100):
        dummies.observe(f"new{i}", f"w{i}", bcrypt)
    picked = [dummies.pick(f"name{i}") for i in range(4000)]
    share = sum(p is sha for p in picked) / len(picked)
    assert 0.7 < share < 0.8
    # The same name always costs the same, as an account would.
    assert all(dummies.pick(f"name{i}") is picked[i] for i in range(100))
    assert dummies.pick("NAME7") is dummies.pick("name7")


def test_rehashed_and_forgotten_accounts_leave_the_shares() -> None:
    dummies = DummyHashes(limit=3)
    sha = schemes.parse(hashed("x", "SHA512-CRYPT"))
    rounds = schemes.parse(hashed("x", "SHA512-CRYPT").replace("$6$", "$6$rounds=6000$", 1))
    argon = schemes.parse(schemes.generate(b"x", "ARGON2ID"))
    assert dummies.pick("anyone") is None  # the engine then uses the policy's dummy
    dummies.observe("a", "1", sha)
    dummies.observe("a", "2", argon)  # rehashed on login
    assert list(dummies.shares.values()) == [1]
    assert dummies.pick("anyone") is argon
    for uid in ("b", "c", "d"):  # the oldest account is forgotten at the limit
        dummies.observe(uid, uid, rounds)
    assert dummies.pick("anyone") is rounds
    assert sum(dummies.shares.values()) == 3
    # Work factors are part of the profile: 6000 rounds is not the default 5000.
    assert schemes.cost_profile(sha) != schemes.cost_profile(rounds)


def test_a_plaintext_account_is_never_compared_against_for_an_unknown_name() -> None:
    dummies = DummyHashes()
    dummies.observe("carol", "{PLAIN}carolpw", schemes.parse("{PLAIN}carolpw"))
    heavy = schemes.parse(hashed("x", "SHA512-CRYPT"))
    dummies.observe("dave", "v", heavy)
    values = {dummies.pick(f"name{i}") for i in range(200)}
    assert heavy in values  # an expensive profile: the real value, for its work factors
    plain = [v for v in values if v is not None and v.scheme == "PLAIN"]
    assert len(plain) == 1 and plain[0].data != "carolpw"
