"""The gateway's replay cache and clock window: a signed message is acted on at most once.

A message is identified by the SHA-256 of the signed bytes, the signature time and
the signing key's fingerprint. Re-sending a captured message (or the same text
signed at the same second, which is the same signature for our purpose) finds its
entry and is refused. Entries are kept ``keep`` seconds (default 7 days), longer
than the clock window (default 4 days back, 3 ahead): a message old enough to have
been pruned is refused by the window anyway, so pruning never reopens a replay.

Storage: one SQLite file (``replay.db`` in ``[mailgate] state_dir``), separate from
the directory so that it works the same with every backend (an LDAP directory has
nowhere to put it). ``check_and_record`` is one ``BEGIN IMMEDIATE`` transaction:
two deliveries of the same message racing each other cannot both pass, and a
crash leaves the entry either written or not. The entry is written *before* the
change is applied: a crash in between loses the change (the user sends again with
a new signature) but can never apply it twice.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from mailwarden.errors import DirectoryUnavailable, MailwardenError


class Replayed(MailwardenError):
    """The message was already processed, or its signature time is outside the window.

    Raised by :class:`ReplayCache`; caught by the gateway, which refuses the message
    with a report to the (verified) account saying why.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """How far a signature time may be from now: ``max_age`` back, ``max_future`` ahead."""

    max_age: float
    max_future: float
    keep: float

    def check(self, signed_at: float, now: float) -> None:
        if signed_at > now + self.max_future:
            ahead = (signed_at - now) / 3600
            raise Replayed(
                f"the signature is dated {ahead:.1f} hours in the future "
                f"(at most {self.max_future / 3600:.0f} hours allowed); check your clock"
            )
        if signed_at < now - self.max_age:
            age = (now - signed_at) / 3600
            raise Replayed(
                f"the signature is {age:.1f} hours old "
                f"(at most {self.max_age / 3600:.0f} hours allowed); sign the message again"
            )


def replay_key(signed_bytes: bytes, signed_at: int, fingerprint: str) -> str:
    """The cache key of one signature."""
    digest = hashlib.sha256()
    digest.update(signed_bytes)
    digest.update(b"\0%d\0" % signed_at)
    digest.update(fingerprint.upper().encode("ascii", "replace"))
    return digest.hexdigest()


class ReplayCache:
    """Signatures seen, in the SQLite file ``path`` (created with its directory)."""

    def __init__(self, path: str | os.PathLike[str], window: Window, *, timeout: float = 5.0):
        self._path = Path(path)
        self._window = window
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._conn = sqlite3.connect(self._path, timeout=timeout, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute(
                """CREATE TABLE IF NOT EXISTS seen (
                    key TEXT PRIMARY KEY, signed_at INTEGER NOT NULL,
                    fingerprint TEXT NOT NULL, seen_at REAL NOT NULL
                ) WITHOUT ROWID"""
            )
        except (OSError, sqlite3.Error) as exc:
            raise DirectoryUnavailable(f"replay cache {self._path}: {exc}") from exc

    def check_and_record(
        self, signed_bytes: bytes, signed_at: int, fingerprint: str, *, now: float
    ) -> None:
        """Record the signature; Replayed if it is outside the window or already recorded."""
        self._window.check(signed_at, now)
        key = replay_key(signed_bytes, signed_at, fingerprint)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("DELETE FROM seen WHERE seen_at < ?", (now - self._window.keep,))
                row = self._conn.execute(
                    "SELECT seen_at FROM seen WHERE key = ?", (key,)
                ).fetchone()
                if row is None:
                    self._conn.execute(
                        "INSERT INTO seen (key, signed_at, fingerprint, seen_at) VALUES (?,?,?,?)",
                        (key, signed_at, fingerprint.upper(), now),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise DirectoryUnavailable(f"replay cache {self._path}: {exc}") from exc
        if row is not None:
            raise Replayed("this message was already processed (replay refused)")

    def __len__(self) -> int:
        count: int = self._conn.execute("SELECT count(*) FROM seen").fetchone()[0]
        return count

    def close(self) -> None:
        self._conn.close()
