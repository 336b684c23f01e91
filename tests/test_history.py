"""The login history: which decisions the engine records and how, and the recorder's
queue (batches, bounds, drops, store failures, pruning), against the memory stores
and the SQLite state file. The SQL and Redis stores: tests/state/ and tests/stores/."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from mailwarden import config
from mailwarden.accounts.edit import AccountAdmin
from mailwarden.auth.engine import Engine
from mailwarden.config import HistoryConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.errors import ConfigError
from mailwarden.history.base import (
    LoginEvent,
    LoginResult,
    Trail,
    event_from_json,
    event_of,
    event_to_json,
)
from mailwarden.history.memory import MemoryHistory
from mailwarden.history.recorder import HistoryRecorder
from mailwarden.model import (
    Accepted,
    Account,
    AccountStatus,
    AuthAttempt,
    BearerToken,
    CredentialKind,
    Denied,
    DenyReason,
    Unavailable,
)
from mailwarden.state.memory import MemoryStateStore
from mailwarden.state.sqlite import SQLiteStateStore
from tests.conftest import EngineFactory
from tests.helpers import FAST, attempt, hashed, make_config
from tests.test_guard import ATTACKER, OWNER, guard_config, is_blocked, make

WRONG = Denied(reason=DenyReason.CREDENTIALS)


#: The recorders' clock where entries are made at 1000 + n (none is old enough to prune).
def NOW() -> float:  # noqa: N802 - a constant clock
    return 2000.0


#: Every login an entry (repeat_seconds=0): the repeat rule has tests of its own.
CONFIG = HistoryConfig(
    enabled=True, batch_size=3, queue_limit=10, flush_interval_ms=10, repeat_seconds=0
)


def event(n: int, uid: str = "alice", **kw: object) -> LoginEvent:
    fields: dict[str, object] = {
        "uid": uid,
        "at": 1000.0 + n,
        "frontend": "dovecot",
        "service": "imap",
        "remote_ip": OWNER,
        "result": LoginResult.ACCEPTED,
        "credential": CredentialKind.PASSWORD,
    }
    fields.update(kw)
    return LoginEvent(**fields)  # type: ignore[arg-type]


class CountingHistory(MemoryHistory):
    """The memory store, remembering the size of every batch it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def add_logins(self, events: Sequence[LoginEvent], *, keep: int, ttl: float) -> None:
        self.batches.append(len(events))
        await super().add_logins(events, keep=keep, ttl=ttl)


@pytest_asyncio.fixture
async def accounts() -> AsyncIterator[MemoryDirectory]:
    d = MemoryDirectory()
    await d.create(Account(uid="alice", mail="alice@example.com", password=hashed("secret")))
    await d.create(Account(uid="off", password=hashed("secret"), status=AccountStatus.DISABLED))
    yield d
    await d.close()


def with_history(engine: Engine, store: MemoryHistory | None = None) -> HistoryRecorder:
    recorder = HistoryRecorder(store or MemoryHistory(), CONFIG, resolve=engine.history_uid)
    engine.history = recorder
    return recorder


@pytest.fixture
def engine(make_engine: EngineFactory, accounts: MemoryDirectory) -> Engine:
    return make_engine(FAST, accounts)


async def logins(recorder: HistoryRecorder, uid: str) -> list[LoginEvent]:
    await recorder.flush()
    return await recorder.recent(uid, limit=100)


# --------------------------------------------------------------------------- what is recorded


async def test_a_wrong_password_is_recorded_on_the_account_while_the_reply_names_nobody(
    engine: Engine,
) -> None:
    recorder = with_history(engine)
    outcome = await engine.authenticate(attempt("alice@example.com", "guess", remote_ip=ATTACKER))
    assert outcome == WRONG  # no user, no message: nothing says the account exists
    (entry,) = await logins(recorder, "alice")
    assert entry.result is LoginResult.WRONG_PASSWORD
    assert (entry.uid, entry.remote_ip, entry.service) == ("alice", ATTACKER, "imap")
    assert entry.credential is CredentialKind.PASSWORD and entry.app_password is None


async def test_an_accepted_login_is_recorded_with_front_end_service_and_address(
    engine: Engine,
) -> None:
    recorder = with_history(engine)
    outcome = await engine.authenticate(
        attempt("alice", service="SMTP", remote_ip=OWNER, frontend="saslauthd")
    )
    assert isinstance(outcome, Accepted)
    (entry,) = await logins(recorder, "alice")
    assert entry.result is LoginResult.ACCEPTED
    assert (entry.frontend, entry.service, entry.remote_ip) == ("saslauthd", "smtp", OWNER)


async def test_a_name_that_matches_no_account_is_not_recorded(engine: Engine) -> None:
    store = MemoryHistory()
    recorder = with_history(engine, store)
    assert await engine.authenticate(attempt("nobody", "secret")) == WRONG
    await recorder.flush()
    assert recorder.written == 0 and await store.logins("nobody", limit=10, since=0) == []


async def test_a_disabled_account_is_recorded_as_disabled(engine: Engine) -> None:
    recorder = with_history(engine)
    outcome = await engine.authenticate(attempt("off", "secret"))
    assert isinstance(outcome, Denied) and outcome.reason is DenyReason.DISABLED
    (entry,) = await logins(recorder, "off")
    assert entry.result is LoginResult.DISABLED


async def test_an_app_password_login_is_recorded_with_the_app_passwords_name(
    engine: Engine,
) -> None:
    recorder = with_history(engine)
    admin = AccountAdmin(
        directory=engine.directory, hasher=engine.hasher, engine=engine, default_scheme="PLAIN"
    )
    new = await admin.add_app_password("alice", name="phone")
    assert isinstance(await engine.authenticate(attempt("alice", new.value)), Accepted)
    assert isinstance(await engine.authenticate(attempt("alice", "secret")), Accepted)
    newest, oldest = await logins(recorder, "alice")
    assert (oldest.credential, oldest.app_password) == (CredentialKind.APP_PASSWORD, "phone")
    assert (newest.credential, newest.app_password) == (CredentialKind.PASSWORD, None)


async def test_a_blocked_login_is_recorded_on_its_account_after_a_lookup_off_the_login_path(
    make_engine: EngineFactory, accounts: MemoryDirectory
) -> None:
    engine = make(make_engine, accounts, guard=guard_config())
    recorder = with_history(engine)
    for i in range(5):
        assert await engine.authenticate(attempt("alice", f"guess{i}", remote_ip=ATTACKER)) == WRONG
    assert is_blocked(await engine.authenticate(attempt("alice", "secret", remote_ip=ATTACKER)))
    assert is_blocked(await engine.authenticate(attempt("nobody", "x", remote_ip=ATTACKER)))
    found = await logins(recorder, "alice")
    assert [e.result for e in found] == [LoginResult.BLOCKED] + [LoginResult.WRONG_PASSWORD] * 5
    assert recorder.lost == 0  # "nobody" was looked up and matched nothing: not recorded


def test_a_backend_failure_makes_no_entry() -> None:
    trail = Trail()
    trail.uid = "alice"
    assert event_of(attempt("alice"), Unavailable(detail="down"), trail, 1.0) is None


def test_a_bearer_token_that_failed_is_recorded_as_a_token() -> None:
    trail = Trail()
    trail.uid = "alice"
    tried = AuthAttempt(
        username="alice", credentials=BearerToken("x"), service="imap", mechanism="XOAUTH2"
    )
    found = event_of(tried, WRONG, trail, 1.0)
    assert isinstance(found, LoginEvent) and found.credential is CredentialKind.TOKEN


def test_an_entry_survives_its_json_and_bad_json_is_no_entry() -> None:
    entry = event(1, app_password="phone", credential=CredentialKind.APP_PASSWORD)
    assert event_from_json(event_to_json(entry)) == entry
    assert event_from_json({"uid": "a"}) is None
    assert event_from_json({**event_to_json(entry), "result": "exploded"}) is None


async def test_history_off_makes_no_trail_and_records_nothing(engine: Engine) -> None:
    assert engine.history is None
    assert isinstance(await engine.authenticate(attempt("alice")), Accepted)


# --------------------------------------------------------------------------- the recorder


async def test_entries_are_written_in_batches_of_at_most_batch_size() -> None:
    store = CountingHistory()
    recorder = HistoryRecorder(store, CONFIG, clock=NOW)
    for n in range(7):
        recorder.add(event(n))
    await recorder.flush()
    assert store.batches == [3, 3, 1]
    assert recorder.written == 7 and recorder.pending == 0
    assert [e.at for e in await recorder.store.logins("alice", limit=3, since=0)] == [
        1006.0,
        1005.0,
        1004.0,
    ]


async def test_the_background_task_writes_without_a_flush_and_then_stops() -> None:
    store = CountingHistory()
    recorder = HistoryRecorder(store, CONFIG, clock=NOW)
    for n in range(4):  # the fourth wakes the task: a full batch waits
        recorder.add(event(n))
    deadline = time.monotonic() + 10.0
    while recorder.written < 4:
        assert time.monotonic() < deadline, "the background task wrote nothing"
        await asyncio.sleep(0.01)
    assert sum(store.batches) == 4
    while recorder._task is not None:
        assert time.monotonic() < deadline, "the background task did not end"
        await asyncio.sleep(0.01)


async def test_a_full_queue_drops_new_entries_and_counts_them() -> None:
    recorder = HistoryRecorder(MemoryHistory(), CONFIG, clock=NOW)  # queue_limit 10
    for n in range(15):
        recorder.add(event(n))
    assert recorder.pending == 10 and recorder.dropped == 5
    await recorder.flush()
    assert recorder.written == 10


async def test_a_store_that_fails_costs_entries_and_never_a_login(engine: Engine) -> None:
    state = MemoryStateStore()
    await state.close()  # every call now raises StateUnavailable
    recorder = HistoryRecorder(state, CONFIG)
    engine.history = recorder
    for _ in range(4):
        assert isinstance(await engine.authenticate(attempt("alice")), Accepted)
    await recorder.flush()
    assert recorder.failures >= 1 and recorder.lost == 4 and recorder.written == 0


async def test_each_account_keeps_at_most_max_per_account() -> None:
    recorder = HistoryRecorder(
        MemoryHistory(), dataclasses.replace(CONFIG, max_per_account=2), clock=NOW
    )
    for n in range(5):
        recorder.add(event(n))
    recorder.add(event(9, uid="bob"))
    await recorder.flush()
    assert [e.at for e in await recorder.store.logins("alice", limit=10, since=0)] == [
        1004.0,
        1003.0,
    ]
    assert len(await recorder.store.logins("bob", limit=10, since=0)) == 1


async def test_entries_older_than_days_are_pruned_and_not_shown() -> None:
    now = 10 * 86400.0
    recorder = HistoryRecorder(
        MemoryHistory(), dataclasses.replace(CONFIG, days=1), clock=lambda: now
    )
    recorder.add(event(0, at=now - 2 * 86400))
    recorder.add(event(1, at=now - 60))
    await recorder.flush()  # writes, then prunes (the first time: at once)
    assert [e.at for e in await recorder.recent("alice", limit=10)] == [now - 60]
    assert await recorder.store.prune_logins(now, keep=9) == 1  # the old one is gone already


async def test_the_sqlite_state_file_is_cut_to_max_per_account_by_the_hourly_prune(
    tmp_path: Path,
) -> None:
    store = await SQLiteStateStore.open(tmp_path / "state.db")
    config = dataclasses.replace(CONFIG, max_per_account=3, batch_size=10)
    recorder = HistoryRecorder(store, config, clock=NOW)
    try:
        for n in range(5):
            recorder.add(event(n))
        recorder.add(event(7, uid="bob"))
        await recorder.flush()  # the first write prunes at once, then hourly
        assert [e.at for e in await store.logins("alice", limit=10, since=0)] == [
            1004.0,
            1003.0,
            1002.0,
        ]
        for n in range(10, 15):
            recorder.add(event(n))
        await recorder.flush()  # within the hour: not cut, but never shown beyond 3
        assert len(await store.logins("alice", limit=10, since=0)) == 8
        assert [e.at for e in await recorder.recent("alice", limit=10)] == [
            1014.0,
            1013.0,
            1012.0,
        ]
        assert len(await store.logins("bob", limit=10, since=0)) == 1
    finally:
        await store.close()


def test_the_history_section_checks_its_limits() -> None:
    with pytest.raises(ConfigError, match=r"history\.batch_size"):
        config.loads("[history]\nenabled = true\nbatch_size = 20\nqueue_limit = 10\n")
    assert make_config(history={"enabled": True}).history.days == 30


# --------------------------------------------------------------------------- repeats


async def test_an_accepted_login_repeating_the_same_way_in_is_written_once_per_window() -> None:
    clock = [1000.0]
    store = MemoryHistory()
    recorder = HistoryRecorder(
        store, HistoryConfig(enabled=True, repeat_seconds=300), clock=lambda: clock[0]
    )
    accepted = Accepted(user="alice", account=Account(uid="alice"))
    trail = Trail()
    trail.uid = "alice"
    phone = attempt("alice", service="imap", remote_ip=OWNER)
    for _ in range(6):  # 1000, 1060, ... 1300
        recorder.note(phone, accepted, trail)
        clock[0] += 60.0
    # Another address, another service, and a refusal are each written.
    recorder.note(attempt("alice", service="imap", remote_ip=ATTACKER), accepted, trail)
    recorder.note(attempt("alice", service="smtp", remote_ip=OWNER), accepted, trail)
    recorder.note(phone, WRONG, trail)
    recorder.note(phone, WRONG, trail)
    await recorder.flush()
    found = await store.logins("alice", limit=100, since=0)
    # 1000 and 1300 (five minutes after the first written one), not the 3 between.
    assert sorted(
        e.at
        for e in found
        if e.remote_ip == OWNER and e.service == "imap" and e.result is LoginResult.ACCEPTED
    ) == [1000.0, 1300.0]
    assert len(found) == 2 + 2 + 2
    assert recorder.repeated == 4


async def test_repeat_seconds_zero_writes_every_login() -> None:
    store = MemoryHistory()
    recorder = HistoryRecorder(store, HistoryConfig(enabled=True, repeat_seconds=0), clock=NOW)
    trail = Trail()
    trail.uid = "alice"
    for _ in range(4):
        recorder.note(
            attempt("alice", remote_ip=OWNER),
            Accepted(user="alice", account=Account(uid="alice")),
            trail,
        )
    await recorder.flush()
    assert len(await store.logins("alice", limit=100, since=0)) == 4
    assert recorder.repeated == 0
