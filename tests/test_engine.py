"""Engine rules: every decision authenticate()/lookup() make, against real directories."""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import pytest

from mailwarden import schemes
from mailwarden.auth.engine import Engine
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.hashing.pool import Hasher
from mailwarden.model import (
    Accepted,
    Account,
    AccountStatus,
    AuthAttempt,
    ClientCert,
    Denied,
    DenyReason,
    NotFound,
    Password,
    Unavailable,
    UserRecord,
)
from tests.conftest import EngineFactory
from tests.helpers import FAST, attempt, hashed, make_config


async def add(directory: MemoryDirectory, uid: str, password: str = "secret", **kw: object) -> None:
    await directory.create(Account(uid=uid, password=hashed(password), **kw))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- basics


async def test_right_password_is_accepted_as_the_canonical_uid(engine: Engine) -> None:
    outcome = await engine.authenticate(attempt("alice"))
    assert isinstance(outcome, Accepted)
    assert outcome.user == "alice"
    assert outcome.master_user is None


@pytest.mark.parametrize("login", ["alice@example.com", "A.Liddell@Example.COM", "ALICE"])
async def test_any_address_in_any_case_logs_in(engine: Engine, login: str) -> None:
    outcome = await engine.authenticate(attempt(login))
    assert isinstance(outcome, Accepted)
    assert outcome.user == "alice"


async def test_login_attributes_restrict_which_names_log_in(make_engine: EngineFactory) -> None:
    engine = make_engine(
        make_config(passwords={"scheme": "SHA512-CRYPT"}, directory={"login_attributes": ("uid",)})
    )
    assert isinstance(await engine.authenticate(attempt("alice")), Accepted)
    outcome = await engine.authenticate(attempt("alice@example.com"))
    assert outcome == Denied(reason=DenyReason.CREDENTIALS)


async def test_hidden_passdb_fields_are_not_passed_through(engine: Engine) -> None:
    outcome = await engine.authenticate(attempt("alice", remote_ip="10.1.2.3"))
    assert isinstance(outcome, Accepted)
    assert dict(outcome.passdb_fields) == {"nologin": "", "reason": "moved"}


async def test_unknown_user_and_wrong_password_get_identical_outcomes(engine: Engine) -> None:
    wrong = await engine.authenticate(attempt("alice", "wrong", remote_ip="10.0.0.1"))
    unknown = await engine.authenticate(attempt("mallory", "wrong", remote_ip="10.0.0.1"))
    malformed = await engine.authenticate(attempt("bad name!", "wrong", remote_ip="10.0.0.1"))
    assert wrong == unknown == malformed == Denied(reason=DenyReason.CREDENTIALS)


class RecordingHasher(Hasher):
    """A real Hasher that also records which schemes it verified."""

    def __init__(self) -> None:
        super().__init__(workers=1)
        self.verified: list[str] = []

    async def verify(
        self,
        password: bytes,
        stored: schemes.StoredHash,
        *,
        user: str = "",
        heavy: bool | None = None,
    ) -> bool:
        self.verified.append(stored.scheme)
        return await super().verify(password, stored, user=user, heavy=heavy)


async def test_unknown_user_still_pays_for_a_verification_in_the_policy_scheme(
    directory: MemoryDirectory,
) -> None:
    hasher = RecordingHasher()
    engine = Engine(directory=directory, hasher=hasher, config=FAST)
    try:
        await engine.authenticate(attempt("nobody-here", "pw"))
        await engine.authenticate(attempt("bad name!", "pw"))
    finally:
        hasher.close()
    assert hasher.verified == ["SHA512-CRYPT", "SHA512-CRYPT"]


async def test_unknown_user_and_wrong_password_take_the_same_time_class(
    directory: MemoryDirectory,
) -> None:
    # argon2id at 16 MiB costs ~15 ms, far above a lookup: without the dummy
    # verification the unknown user would answer 10-100x faster.
    config = make_config(
        passwords={"scheme": "ARGON2ID", "argon2_memory_kib": 16384, "argon2_time_cost": 2},
        # 15 failures without an address would ban the stand-in address; this measures
        # the verification, not the guard.
        guard={"enabled": False},
    )
    await directory.replace(
        dataclasses.replace(
            (await directory.get("alice")) or Account(uid="alice"),
            password=schemes.generate(
                b"secret",
                "ARGON2ID",
                policy=schemes.HashPolicy(argon2_memory_kib=16384, argon2_time_cost=2),
            ),
        )
    )
    hasher = Hasher(workers=1)
    engine = Engine(directory=directory, hasher=hasher, config=config)

    async def timed(username: str, password: str) -> float:
        start = time.perf_counter()
        await engine.authenticate(attempt(username, password))
        return time.perf_counter() - start

    try:
        await timed("warm-up", "wrong")
        # Distinct wrong passwords: a repeated one is refused from the rejected-password
        # cache, equally fast for both (tests/test_guard.py), and would measure nothing.
        wrong = statistics.median([await timed("alice", f"wrong{i}") for i in range(7)])
        unknown = statistics.median([await timed("nobody", f"wrong{i}") for i in range(7)])
    finally:
        hasher.close()
    assert 0.5 < unknown / wrong < 2.0, (wrong, unknown)


async def test_an_overlong_password_is_refused_without_hashing_it(engine: Engine) -> None:
    huge = "x" * 5000
    assert await engine.authenticate(attempt("alice", huge)) == Denied(
        reason=DenyReason.CREDENTIALS
    )


async def test_an_account_without_a_password_never_logs_in(
    engine: Engine, directory: MemoryDirectory
) -> None:
    await directory.create(Account(uid="nopass", password=""))
    assert await engine.authenticate(attempt("nopass", "")) == Denied(reason=DenyReason.CREDENTIALS)


async def test_an_unusable_stored_hash_is_a_denial_not_a_crash(
    engine: Engine, directory: MemoryDirectory
) -> None:
    await directory.create(Account(uid="broken", password="{SHA256}not-base64!"))
    assert await engine.authenticate(attempt("broken")) == Denied(reason=DenyReason.CREDENTIALS)
    await directory.create(Account(uid="weird", password="{NO-SUCH-SCHEME}abc"))
    assert await engine.authenticate(attempt("weird")) == Denied(reason=DenyReason.CREDENTIALS)


# --------------------------------------------------------------------------- status, services


async def test_disabled_account_with_right_password_gets_the_disabled_message(
    engine: Engine, directory: MemoryDirectory
) -> None:
    await add(directory, "bob", status=AccountStatus.DISABLED)
    outcome = await engine.authenticate(attempt("bob"))
    assert outcome == Denied(reason=DenyReason.DISABLED, message="Account not enabled", user="bob")


async def test_disabled_account_with_wrong_password_looks_like_any_failure(
    engine: Engine, directory: MemoryDirectory
) -> None:
    await add(directory, "bob", status=AccountStatus.DELETED)
    assert await engine.authenticate(attempt("bob", "nope")) == Denied(
        reason=DenyReason.CREDENTIALS
    )


async def test_switched_off_service_is_denied_and_others_still_work(
    engine: Engine, directory: MemoryDirectory
) -> None:
    await add(directory, "carol", services={"pop3": False})
    denied = await engine.authenticate(attempt("carol", service="pop3"))
    assert isinstance(denied, Denied) and denied.reason is DenyReason.SERVICE_DISABLED
    assert denied.message == "Account not enabled"
    assert isinstance(await engine.authenticate(attempt("carol", service="imap")), Accepted)
    assert isinstance(await engine.authenticate(attempt("carol", service="POP3")), Denied)


async def test_allow_nets_refuses_other_networks(
    engine: Engine, directory: MemoryDirectory
) -> None:
    await add(directory, "dave", allow_nets=("192.0.2.0/24", "2001:db8::/32"))
    assert isinstance(await engine.authenticate(attempt("dave", remote_ip="192.0.2.7")), Accepted)
    assert isinstance(await engine.authenticate(attempt("dave", remote_ip="2001:db8::1")), Accepted)
    outcome = await engine.authenticate(attempt("dave", remote_ip="198.51.100.1"))
    assert isinstance(outcome, Denied) and outcome.reason is DenyReason.NETWORK
    outcome = await engine.authenticate(attempt("dave"))  # no IP: only "local" matches
    assert isinstance(outcome, Denied) and outcome.reason is DenyReason.NETWORK


# --------------------------------------------------------------------------- master users


@pytest.fixture
async def with_master(directory: MemoryDirectory) -> MemoryDirectory:
    await add(directory, "admin", "masterpw", master=True)
    await add(directory, "plain", "plainpw")
    return directory


async def test_master_user_via_separator_acts_as_the_target(
    make_engine: EngineFactory, with_master: MemoryDirectory
) -> None:
    engine = make_engine(
        make_config(passwords={"scheme": "SHA512-CRYPT"}, auth={"master_user_separator": "*"})
    )
    outcome = await engine.authenticate(attempt("alice*admin", "masterpw"))
    assert isinstance(outcome, Accepted)
    assert (outcome.user, outcome.master_user) == ("alice", "admin")


async def test_master_user_via_authzid_acts_as_the_target(
    engine: Engine, with_master: MemoryDirectory
) -> None:
    outcome = await engine.authenticate(attempt("admin", "masterpw", authzid="alice"))
    assert isinstance(outcome, Accepted)
    assert (outcome.user, outcome.master_user) == ("alice", "admin")


async def test_authzid_equal_to_authcid_is_an_ordinary_login(engine: Engine) -> None:
    outcome = await engine.authenticate(attempt("alice", authzid="alice"))
    assert isinstance(outcome, Accepted) and outcome.master_user is None


async def test_separator_is_ignored_when_not_configured(
    engine: Engine, with_master: MemoryDirectory
) -> None:
    assert await engine.authenticate(attempt("alice*admin", "masterpw")) == Denied(
        reason=DenyReason.CREDENTIALS
    )


async def test_non_master_cannot_act_as_another_user(
    engine: Engine, with_master: MemoryDirectory
) -> None:
    outcome = await engine.authenticate(attempt("plain", "plainpw", authzid="alice"))
    assert outcome == Denied(reason=DenyReason.AUTHZ, user="plain")


async def test_master_login_to_a_missing_or_disabled_target_fails(
    engine: Engine, with_master: MemoryDirectory
) -> None:
    outcome = await engine.authenticate(attempt("admin", "masterpw", authzid="ghost"))
    assert isinstance(outcome, Denied) and outcome.reason is DenyReason.AUTHZ
    await add(with_master, "frozen", status=AccountStatus.DISABLED)
    outcome = await engine.authenticate(attempt("admin", "masterpw", authzid="frozen"))
    assert isinstance(outcome, Denied) and outcome.reason is DenyReason.DISABLED


async def test_master_with_a_wrong_password_is_a_plain_failure(
    engine: Engine, with_master: MemoryDirectory
) -> None:
    assert await engine.authenticate(attempt("admin", "nope", authzid="alice")) == Denied(
        reason=DenyReason.CREDENTIALS
    )


async def test_require_master_passes_only_accounts_with_the_master_flag(
    engine: Engine, with_master: MemoryDirectory
) -> None:
    # A Dovecot master passdb over HTTP sends only the master's name and password.
    outcome = await engine.authenticate(attempt("admin", "masterpw", require_master=True))
    assert isinstance(outcome, Accepted)
    assert (outcome.user, outcome.master_user) == ("admin", None)
    assert await engine.authenticate(attempt("plain", "plainpw", require_master=True)) == Denied(
        reason=DenyReason.AUTHZ, user="plain"
    )
    assert await engine.authenticate(attempt("admin", "nope", require_master=True)) == Denied(
        reason=DenyReason.CREDENTIALS
    )


# --------------------------------------------------------------------------- usernames


async def test_default_realm_is_appended_before_lookup(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(
        make_config(passwords={"scheme": "SHA512-CRYPT"}, auth={"default_realm": "example.com"})
    )
    outcome = await engine.authenticate(attempt("Alice"))  # -> alice@example.com
    assert isinstance(outcome, Accepted) and outcome.user == "alice"


async def test_names_with_forbidden_characters_never_reach_the_directory(
    engine: Engine,
) -> None:
    for name in ("alice\x00", "alice\tx", "al ice", "", "a" * 300):
        assert await engine.authenticate(attempt(name)) == Denied(reason=DenyReason.CREDENTIALS)


# --------------------------------------------------------------------------- outages


async def test_a_failing_directory_is_unavailable_never_denied(tmp_path: Path) -> None:
    directory = await SQLiteDirectory.open(tmp_path / "db.sqlite", create=True)
    await directory.create(Account(uid="alice", password=hashed("secret")))
    hasher = Hasher(workers=1)
    engine = Engine(directory=directory, hasher=hasher, config=FAST)
    try:
        assert isinstance(await engine.authenticate(attempt("alice")), Accepted)
        await directory.close()  # the database goes away
        for password in ("secret", "wrong"):
            outcome = await engine.authenticate(attempt("alice", password))
            assert isinstance(outcome, Unavailable)
        assert isinstance(await engine.lookup("alice"), Unavailable)
        assert isinstance(await engine.credentials("alice", "PLAIN"), Unavailable)
    finally:
        hasher.close()


async def test_a_shut_down_hashing_pool_is_unavailable_never_denied(
    directory: MemoryDirectory,
) -> None:
    hasher = Hasher(workers=1)
    engine = Engine(directory=directory, hasher=hasher, config=FAST)
    hasher.close()
    assert isinstance(await engine.authenticate(attempt("alice")), Unavailable)
    assert isinstance(await engine.authenticate(attempt("alice", "wrong")), Unavailable)


# --------------------------------------------------------------------------- rehash


async def test_weaker_hash_is_upgraded_after_a_successful_login(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    await directory.create(Account(uid="old", password=hashed("pw", "SSHA")))
    engine = make_engine()
    assert isinstance(await engine.authenticate(attempt("old", "pw")), Accepted)
    await engine.drain()
    account = await directory.get("old")
    assert account is not None and account.password.startswith("{SHA512-CRYPT}")
    assert isinstance(await engine.authenticate(attempt("old", "pw")), Accepted)
    assert isinstance(await engine.authenticate(attempt("old", "wrong")), Denied)


async def test_no_upgrade_after_a_failed_login_or_when_disabled_by_policy(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    await directory.create(Account(uid="old", password=hashed("pw", "SSHA")))
    before = (await directory.get("old") or Account(uid="x")).password
    engine = make_engine()
    await engine.authenticate(attempt("old", "wrong"))
    await engine.drain()
    never = make_engine(make_config(passwords={"scheme": "SHA512-CRYPT", "rehash": "never"}))
    await never.authenticate(attempt("old", "pw"))
    await never.drain()
    assert (await directory.get("old") or Account(uid="x")).password == before


async def test_upgrade_never_overwrites_a_password_changed_meanwhile(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    await directory.create(Account(uid="old", password=hashed("pw", "SSHA")))
    engine = make_engine()
    assert isinstance(await engine.authenticate(attempt("old", "pw")), Accepted)
    # The administrator sets a new password before the background rehash writes.
    await directory.set_password("old", hashed("new-by-admin"))
    await engine.drain()
    assert isinstance(await engine.authenticate(attempt("old", "new-by-admin")), Accepted)
    assert isinstance(await engine.authenticate(attempt("old", "pw")), Denied)


# --------------------------------------------------------------------------- SASL paths


class PlainProof:
    """The simplest CredentialProof: compares a plaintext against PLAIN credentials."""

    schemes = ("PLAIN",)

    def __init__(self, password: bytes) -> None:
        self.password = password
        self.checked: list[bytes] = []

    def check(self, scheme: str, credentials: bytes) -> bool:
        self.checked.append(credentials)
        return credentials == self.password


async def test_challenge_response_proof_is_checked_against_stored_credentials(
    engine: Engine, directory: MemoryDirectory
) -> None:
    await directory.create(Account(uid="plainuser", password="{PLAIN}opensesame"))
    ok = AuthAttempt(username="plainuser", credentials=PlainProof(b"opensesame"), service="smtp")
    assert isinstance(await engine.authenticate(ok), Accepted)
    bad = AuthAttempt(username="plainuser", credentials=PlainProof(b"nope"), service="smtp")
    assert await engine.authenticate(bad) == Denied(reason=DenyReason.CREDENTIALS)


async def test_challenge_response_for_unknown_user_still_runs_the_check(engine: Engine) -> None:
    proof = PlainProof(b"whatever")
    outcome = await engine.authenticate(
        AuthAttempt(username="ghost", credentials=proof, service="smtp")
    )
    assert outcome == Denied(reason=DenyReason.CREDENTIALS)
    assert len(proof.checked) == 1 and len(proof.checked[0]) == 16


async def test_credentials_of_unknown_users_are_fake_but_stable_and_well_shaped(
    engine: Engine, directory: MemoryDirectory
) -> None:
    await directory.create(Account(uid="plainuser", password="{PLAIN}opensesame"))
    real = await engine.credentials("plainuser", "CRAM-MD5")
    fake1 = await engine.credentials("ghost", "CRAM-MD5")
    fake2 = await engine.credentials("ghost", "CRAM-MD5")
    assert isinstance(real, bytes) and isinstance(fake1, bytes)
    assert len(real) == len(fake1) == 32
    assert fake1 == fake2 != real
    scram = await engine.credentials("ghost", "SCRAM-SHA-256")
    assert isinstance(scram, bytes)
    iterations, _salt, stored, server = scram.decode().split(",")
    assert iterations == "4096" and len(stored) == len(server) == 44
    # A SHA512-CRYPT account cannot yield CRAM-MD5 credentials: fake ones, same shape.
    crypt_only = await engine.credentials("alice", "CRAM-MD5")
    assert isinstance(crypt_only, bytes) and len(crypt_only) == 32


async def test_external_needs_a_valid_certificate_naming_the_user(engine: Engine) -> None:
    def ext(cert: ClientCert | None) -> AuthAttempt:
        return AuthAttempt(
            username="alice",
            credentials=None,
            service="imap",
            mechanism="EXTERNAL",
            client_cert=cert,
        )

    assert isinstance(
        await engine.authenticate(ext(ClientCert(valid=True, username="Alice"))), Accepted
    )
    for cert in (
        None,
        ClientCert(valid=False, username="alice"),
        ClientCert(valid=True, username="bob"),
        ClientCert(valid=True),
    ):
        assert await engine.authenticate(ext(cert)) == Denied(reason=DenyReason.CREDENTIALS)


# --------------------------------------------------------------------------- userdb


async def test_lookup_returns_dovecot_userdb_fields(engine: Engine) -> None:
    record = await engine.lookup("Alice@Example.com")
    assert isinstance(record, UserRecord)
    assert record.user == "alice"
    assert dict(record.fields) == {
        "home": "/var/mail/alice",
        "mail": "maildir:~/Maildir",
        "uid": "5000",
        "gid": "5000",
        "quota_rule": "*:bytes=1000000",
        "sieve": "~/.dovecot.sieve",
    }


async def test_lookup_finds_disabled_but_not_deleted_accounts(
    engine: Engine, directory: MemoryDirectory
) -> None:
    await add(directory, "off", status=AccountStatus.DISABLED)
    await add(directory, "gone", status=AccountStatus.DELETED)
    assert isinstance(await engine.lookup("off"), UserRecord)
    assert isinstance(await engine.lookup("gone"), NotFound)
    assert isinstance(await engine.lookup("never-existed"), NotFound)


async def test_passdb_lookup_never_returns_the_password(engine: Engine) -> None:
    record = await engine.passdb_lookup("alice")
    assert isinstance(record, UserRecord)
    assert "password" not in record.fields and "allow_nets" not in record.fields


async def test_iterate_lists_every_uid(engine: Engine, directory: MemoryDirectory) -> None:
    await add(directory, "zed")
    await add(directory, "bob")
    assert [u async for u in engine.iterate()] == ["alice", "bob", "zed"]


async def test_password_repr_never_shows_the_secret() -> None:
    p = Password(b"hunter2")
    assert "hunter2" not in repr(p) and "hunter2" not in str(attempt("x", "hunter2"))


async def test_plaintext_stays_when_challenge_response_mechanisms_need_it(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    await directory.create(Account(uid="cram", password="{PLAIN}pw"))
    engine = make_engine(
        make_config(
            passwords={"scheme": "SHA512-CRYPT"}, dovecot={"mechanisms": ("PLAIN", "CRAM-MD5")}
        )
    )
    assert isinstance(await engine.authenticate(attempt("cram", "pw")), Accepted)
    await engine.drain()
    assert (await directory.get("cram") or Account(uid="x")).password == "{PLAIN}pw"
    plain_only = make_engine(make_config(passwords={"scheme": "SHA512-CRYPT"}))
    assert isinstance(await plain_only.authenticate(attempt("cram", "pw")), Accepted)
    await plain_only.drain()
    assert (await directory.get("cram") or Account(uid="x")).password.startswith("{SHA512-CRYPT}")


async def test_nopassword_accepts_any_password_only_without_a_stored_one(
    make_engine: EngineFactory,
) -> None:
    """Dovecot's ``nopassword`` passdb field (an SQL query that checked the password
    itself, a passwd-file line): any password, but only when none is stored; status
    and networks still apply."""
    directory = MemoryDirectory()
    fields = {"nopassword": "Y"}
    await directory.create(Account(uid="open", passdb_fields=fields))
    await directory.create(Account(uid="both", password=hashed("pw"), passdb_fields=fields))
    await directory.create(Account(uid="netted", passdb_fields=fields, allow_nets=("10.0.0.0/8",)))
    await directory.create(Account(uid="off", passdb_fields=fields, status=AccountStatus.DISABLED))
    engine = make_engine(d=directory)
    assert isinstance(await engine.authenticate(attempt("open", "anything")), Accepted)
    assert isinstance(await engine.authenticate(attempt("both", "anything")), Denied)
    assert isinstance(await engine.authenticate(attempt("both", "pw")), Accepted)
    netted = await engine.authenticate(attempt("netted", "x", remote_ip="192.0.2.1"))
    assert isinstance(netted, Denied) and netted.reason is DenyReason.NETWORK
    off = await engine.authenticate(attempt("off", "x"))
    assert isinstance(off, Denied) and off.reason is DenyReason.DISABLED
