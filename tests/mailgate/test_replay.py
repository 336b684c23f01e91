"""The replay cache and clock window, without GnuPG: keys, windows, pruning, persistence."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from mailwarden.errors import DirectoryUnavailable
from mailwarden.mailgate.replay import (
    PENDING_LEASE,
    InProgress,
    ReplayCache,
    Replayed,
    Window,
    replay_key,
)

DAY = 86400.0
WINDOW = Window(max_age=4 * DAY, max_future=3 * DAY, keep=7 * DAY)
NOW = 1_800_000_000.0
FPR = "0123456789ABCDEF0123456789ABCDEF01234567"


def record(cache: ReplayCache, data: bytes, signed_at: int, fpr: str, *, now: float) -> None:
    """Claim and commit at once: a message processed with its reply delivered."""
    claim = cache.claim(data, signed_at, fpr, now=now)
    cache.commit(claim, reply=None, now=now)


def test_a_signature_is_accepted_once_and_the_refusal_survives_a_reopen(tmp_path: Path) -> None:
    cache = ReplayCache(tmp_path / "state" / "replay.db", WINDOW)
    record(cache, b"ping\n", int(NOW), FPR, now=NOW)
    with pytest.raises(Replayed, match="already processed"):
        record(cache, b"ping\n", int(NOW), FPR, now=NOW + 60)
    cache.close()
    reopened = ReplayCache(tmp_path / "state" / "replay.db", WINDOW)
    with pytest.raises(Replayed, match="already processed"):
        record(reopened, b"ping\n", int(NOW), FPR.lower(), now=NOW + 120)
    reopened.close()


def test_the_key_covers_bytes_time_and_signer() -> None:
    base = replay_key(b"ping\n", 1, FPR)
    assert base != replay_key(b"ping \n", 1, FPR)
    assert base != replay_key(b"ping\n", 2, FPR)
    assert base != replay_key(b"ping\n", 1, "F" * 40)
    assert base == replay_key(b"ping\n", 1, FPR.lower())


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (-4 * DAY, True),
        (-4 * DAY - 1, False),
        (3 * DAY, True),
        (3 * DAY + 1, False),
    ],
)
def test_the_clock_window_has_inclusive_edges(
    tmp_path: Path, offset: float, accepted: bool
) -> None:
    cache = ReplayCache(tmp_path / "replay.db", WINDOW)
    if accepted:
        record(cache, b"x", int(NOW + offset), FPR, now=NOW)
    else:
        with pytest.raises(Replayed, match=r"old|future"):
            record(cache, b"x", int(NOW + offset), FPR, now=NOW)
        assert len(cache) == 0  # a refused message is not recorded
    cache.close()


def test_entries_are_pruned_after_keep_and_the_window_still_refuses_them(
    tmp_path: Path,
) -> None:
    cache = ReplayCache(tmp_path / "replay.db", WINDOW)
    record(cache, b"old", int(NOW), FPR, now=NOW)
    record(cache, b"new", int(NOW + 6 * DAY), FPR, now=NOW + 6 * DAY)
    assert len(cache) == 2
    later = NOW + 7 * DAY + 1
    with pytest.raises(Replayed, match="old"):
        record(cache, b"old", int(NOW), FPR, now=later)
    record(cache, b"other", int(later), FPR, now=later)
    assert len(cache) == 2  # "old" pruned, "new" and "other" kept
    cache.close()


def test_concurrent_deliveries_of_one_message_pass_exactly_once(tmp_path: Path) -> None:
    outcomes: list[str] = []

    def deliver() -> None:
        cache = ReplayCache(tmp_path / "replay.db", WINDOW, timeout=30)
        try:
            record(cache, b"same", int(NOW), FPR, now=NOW)
            outcomes.append("accepted")
        except (Replayed, InProgress):
            outcomes.append("refused")
        finally:
            cache.close()

    ReplayCache(tmp_path / "replay.db", WINDOW).close()
    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["accepted"] + ["refused"] * 7


def test_an_unusable_cache_file_is_a_temporary_failure(tmp_path: Path) -> None:
    bad = tmp_path / "replay.db"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(DirectoryUnavailable):
        ReplayCache(bad, WINDOW)


def test_the_config_refuses_a_replay_cache_shorter_than_the_clock_window() -> None:
    from mailwarden.config import loads
    from mailwarden.errors import ConfigError

    assert loads("[mailgate]\nreplay_keep = 700000.0\n").mailgate.replay_keep == 700000.0
    with pytest.raises(ConfigError, match=r"mailgate\.replay_keep"):
        loads("[mailgate]\nreplay_keep = 86400.0\n")
    with pytest.raises(ConfigError, match=r"mailgate\.fields\[0\]"):
        loads('[mailgate]\nfields = ["password"]\n')


def test_a_released_claim_lets_the_retry_through(tmp_path: Path) -> None:
    cache = ReplayCache(tmp_path / "replay.db", WINDOW)
    claim = cache.claim(b"change", int(NOW), FPR, now=NOW)
    cache.release(claim)  # the directory write failed: nothing was stored
    again = cache.claim(b"change", int(NOW), FPR, now=NOW + 300)
    cache.commit(again, reply=None, now=NOW + 300)
    cache.release(again)  # no-op once committed
    with pytest.raises(Replayed, match="already processed"):
        cache.claim(b"change", int(NOW), FPR, now=NOW + 600)
    cache.close()


def test_a_claim_held_by_another_delivery_is_a_temporary_failure_until_its_lease_ends(
    tmp_path: Path,
) -> None:
    cache = ReplayCache(tmp_path / "replay.db", WINDOW)
    cache.claim(b"change", int(NOW), FPR, now=NOW)  # then the process died
    with pytest.raises(InProgress):
        cache.claim(b"change", int(NOW), FPR, now=NOW + PENDING_LEASE - 1)
    taken = cache.claim(b"change", int(NOW), FPR, now=NOW + PENDING_LEASE + 1)
    cache.commit(taken, reply=None, now=NOW + PENDING_LEASE + 1)
    with pytest.raises(Replayed):
        cache.claim(b"change", int(NOW), FPR, now=NOW + PENDING_LEASE + 2)
    cache.close()


def test_a_reply_not_yet_delivered_is_handed_back_instead_of_a_refusal(tmp_path: Path) -> None:
    cache = ReplayCache(tmp_path / "replay.db", WINDOW)
    claim = cache.claim(b"change", int(NOW), FPR, now=NOW)
    cache.commit(claim, reply=b"Subject: report\n\nok\n", now=NOW)
    # The MTA did not take the reply; the retry gets it back, and nothing to act on.
    retry = cache.claim(b"change", int(NOW), FPR, now=NOW + 60)
    assert retry.undelivered == b"Subject: report\n\nok\n"
    cache.delivered(retry)
    with pytest.raises(Replayed):
        cache.claim(b"change", int(NOW), FPR, now=NOW + 120)
    cache.close()


def test_a_cache_file_from_before_claims_keeps_refusing_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            """CREATE TABLE seen (
                key TEXT PRIMARY KEY, signed_at INTEGER NOT NULL,
                fingerprint TEXT NOT NULL, seen_at REAL NOT NULL
            ) WITHOUT ROWID"""
        )
        conn.execute(
            "INSERT INTO seen VALUES (?,?,?,?)",
            (replay_key(b"old", int(NOW), FPR), int(NOW), FPR, NOW),
        )
    conn.close()
    cache = ReplayCache(path, WINDOW)
    with pytest.raises(Replayed, match="already processed"):
        cache.claim(b"old", int(NOW), FPR, now=NOW + 60)
    cache.close()
