"""The replay cache and clock window, without GnuPG: keys, windows, pruning, persistence."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mailwarden.errors import DirectoryUnavailable
from mailwarden.mailgate.replay import ReplayCache, Replayed, Window, replay_key

DAY = 86400.0
WINDOW = Window(max_age=4 * DAY, max_future=3 * DAY, keep=7 * DAY)
NOW = 1_800_000_000.0
FPR = "0123456789ABCDEF0123456789ABCDEF01234567"


def test_a_signature_is_accepted_once_and_the_refusal_survives_a_reopen(tmp_path: Path) -> None:
    cache = ReplayCache(tmp_path / "state" / "replay.db", WINDOW)
    cache.check_and_record(b"ping\n", int(NOW), FPR, now=NOW)
    with pytest.raises(Replayed, match="already processed"):
        cache.check_and_record(b"ping\n", int(NOW), FPR, now=NOW + 60)
    cache.close()
    reopened = ReplayCache(tmp_path / "state" / "replay.db", WINDOW)
    with pytest.raises(Replayed, match="already processed"):
        reopened.check_and_record(b"ping\n", int(NOW), FPR.lower(), now=NOW + 120)
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
        cache.check_and_record(b"x", int(NOW + offset), FPR, now=NOW)
    else:
        with pytest.raises(Replayed, match=r"old|future"):
            cache.check_and_record(b"x", int(NOW + offset), FPR, now=NOW)
        assert len(cache) == 0  # a refused message is not recorded
    cache.close()


def test_entries_are_pruned_after_keep_and_the_window_still_refuses_them(
    tmp_path: Path,
) -> None:
    cache = ReplayCache(tmp_path / "replay.db", WINDOW)
    cache.check_and_record(b"old", int(NOW), FPR, now=NOW)
    cache.check_and_record(b"new", int(NOW + 6 * DAY), FPR, now=NOW + 6 * DAY)
    assert len(cache) == 2
    later = NOW + 7 * DAY + 1
    with pytest.raises(Replayed, match="old"):
        cache.check_and_record(b"old", int(NOW), FPR, now=later)
    cache.check_and_record(b"other", int(later), FPR, now=later)
    assert len(cache) == 2  # "old" pruned, "new" and "other" kept
    cache.close()


def test_concurrent_deliveries_of_one_message_pass_exactly_once(tmp_path: Path) -> None:
    outcomes: list[str] = []

    def deliver() -> None:
        cache = ReplayCache(tmp_path / "replay.db", WINDOW, timeout=30)
        try:
            cache.check_and_record(b"same", int(NOW), FPR, now=NOW)
            outcomes.append("accepted")
        except Replayed:
            outcomes.append("replay")
        finally:
            cache.close()

    ReplayCache(tmp_path / "replay.db", WINDOW).close()
    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["accepted"] + ["replay"] * 7


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
