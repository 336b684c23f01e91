"""directories/sqlite/export.py: an export read and formatted by worker processes.

The output must be byte for byte what one process writes through the Directory
protocol (matching_accounts, the path every other directory takes), in the same
order, with the same accounts left out; a worker that fails, dies or answers
nothing fails the export, and no worker outlives it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarden.accounts.passwdfile import format_line
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.directories.sqlite import export as sqlite_export
from mailwarden.directories.streams import matching_accounts
from mailwarden.errors import AccountError, DirectoryUnavailable
from mailwarden.model import Account, AccountStatus, Profile
from tests.helpers import export_workers


def odd_accounts(count: int) -> list[Account]:
    """Accounts with what a passwd-file escapes or cannot carry, in mixed case."""
    made: list[Account] = []
    for n in range(count):
        match n % 6:
            case 0:
                made.append(Account(uid=f"User{n:03d}@Example.org", password=f"{{PLAIN}}pw {n}"))
            case 1:
                made.append(
                    Account(
                        uid=f"jörg{n:03d}@exämple.org",
                        password="{SHA512-CRYPT}$6$salt$hash",
                        alternate_addresses=(f"J.Müller{n}@exämple.org",),
                        profile=Profile(name="Jörg Müller", postal_address="Straße 1, 50% off"),
                        uid_number=5000 + n,
                        gid_number=5000,
                        home=f"/var/vmail/jörg{n}",
                    )
                )
            case 2:
                made.append(
                    Account(
                        uid=f"carol{n:03d}",
                        mail=f"c{n}@example.org",
                        password="x",
                        status=AccountStatus.DISABLED,
                        services=MappingProxyType({"imap": False, "smtp relay": True}),
                        quota_bytes=2 * 1024**3,
                        quota_messages=1000,
                        userdb_fields=MappingProxyType({"mail_plugins": "quota,acl"}),
                        ssh_keys=(f"ssh-ed25519 AAAA{n} carol@host",),
                        mail_host="imap,1.example.org",
                    )
                )
            case 3:
                # A value with a space: the format cannot carry it, the account is left out.
                made.append(
                    Account(
                        uid=f"dave{n:03d}",
                        password="x",
                        passdb_fields=MappingProxyType({"reason": "on leave"}),
                    )
                )
            case 4:
                made.append(
                    Account(
                        uid=f"_erin{n:03d}@example.org",
                        password="x",
                        profile=Profile(irc_nick="erin 🦊", labeled_uri="https://e.example/%7e"),
                        allow_nets=("10.0.0.0/8", "::1/128"),
                    )
                )
            case _:
                made.append(Account(uid=f"ZED{n:03d}", password="", master=True))
    return made


async def _stored(path: Path, accounts: list[Account]) -> tuple[str, list[tuple[str, str]]]:
    """Store ``accounts`` in a new directory at ``path``; what one process exports."""
    directory = await SQLiteDirectory.open(path, create=True)
    try:
        await directory.bulk_upsert(accounts, replace=False)
        texts: list[str] = []
        skipped: list[tuple[str, str]] = []
        async for account in matching_accounts(directory):
            try:
                texts.append(format_line(account))
            except AccountError as exc:
                skipped.append((account.uid, str(exc)))
        return "".join(texts), skipped
    finally:
        await directory.close()


def _export(path: Path, workers: int, size: int) -> tuple[str, list[tuple[str, str]], int]:
    parts = list(
        sqlite_export.formatted(
            path, format_line, timeout=5.0, workers=workers, size=size, parallel_from=1
        )
    )
    text = "".join(p.text for p in parts)
    skipped = [(r.uid, r.message) for p in parts for r in p.skipped]
    return text, skipped, sum(p.written for p in parts)


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, str, list[tuple[str, str]]]:
    path = tmp_path / "mw.db"
    text, skipped = asyncio.run(_stored(path, odd_accounts(40)))
    return path, text, skipped


def test_workers_write_what_one_process_writes_byte_for_byte(
    stored: tuple[Path, str, list[tuple[str, str]]],
) -> None:
    path, expected, expected_skipped = stored
    assert "jörg" in expected and "%2C" in expected and "🦊" in expected  # escaping is in play
    assert len(expected_skipped) == 7  # every "dave"
    # 3 accounts a slice: 14 slices over 2 workers, several asked of each at once.
    text, skipped, written = _export(path, workers=2, size=3)
    assert text.encode() == expected.encode()
    assert skipped == expected_skipped
    assert written == 40 - 7
    assert export_workers() == []


def test_one_worker_means_this_process_and_writes_the_same(
    stored: tuple[Path, str, list[tuple[str, str]]],
) -> None:
    path, expected, expected_skipped = stored
    assert _export(path, workers=1, size=7)[:2] == (expected, expected_skipped)
    assert export_workers() == []


@settings(max_examples=25, deadline=None)
@given(
    uids=st.sets(st.from_regex(r"[a-zA-Z][a-zA-Z0-9._]{0,6}", fullmatch=True), max_size=30),
    size=st.integers(min_value=1, max_value=8),
)
def test_slices_cover_every_account_once_in_uid_order(uids: set[str], size: int) -> None:
    # Uids that differ only in case are one account (the later is skipped).
    accounts = [Account(uid=uid, password="x") for uid in sorted(uids)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mw.db"
        expected, _ = asyncio.run(_stored(path, accounts))
        assert _export(path, workers=1, size=size)[0] == expected


def test_a_row_a_worker_cannot_read_fails_the_export_naming_the_file(
    stored: tuple[Path, str, list[tuple[str, str]]],
) -> None:
    path = stored[0]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE accounts SET profile = '{' WHERE uid = 'ZED035'")
    with pytest.raises(DirectoryUnavailable, match="malformed account data") as caught:
        _export(path, workers=2, size=3)
    assert str(path) in str(caught.value) and "export worker" in str(caught.value)
    assert export_workers() == []


def dies(account: Account) -> str:
    """A formatter whose process dies (as an out-of-memory kill would end it)."""
    os._exit(3)


def breaks(account: Account) -> str:
    """A formatter with a bug."""
    raise ZeroDivisionError("a bug")


def test_a_worker_that_dies_fails_the_export_with_its_exit_code(
    stored: tuple[Path, str, list[tuple[str, str]]],
) -> None:
    parts = sqlite_export.formatted(
        stored[0], dies, timeout=5.0, workers=2, size=3, parallel_from=1
    )
    with pytest.raises(DirectoryUnavailable, match=r"export worker 1 exited with code 3"):
        list(parts)
    assert export_workers() == []


def test_a_worker_that_fails_fails_the_export_with_the_error(
    stored: tuple[Path, str, list[tuple[str, str]]],
) -> None:
    parts = sqlite_export.formatted(
        stored[0], breaks, timeout=5.0, workers=2, size=3, parallel_from=1
    )
    with pytest.raises(DirectoryUnavailable, match=r"export worker 1: ZeroDivisionError: a bug"):
        list(parts)
    assert export_workers() == []


def test_an_export_stopped_early_stops_its_workers(
    stored: tuple[Path, str, list[tuple[str, str]]],
) -> None:
    parts = sqlite_export.formatted(
        stored[0], format_line, timeout=5.0, workers=2, size=3, parallel_from=1
    )
    assert next(parts).written > 0
    assert len(export_workers()) == 2
    parts.close()
    assert export_workers() == []
