"""The gateway's replay cache and clock window: a signed message is acted on at most once.

A message is identified by the SHA-256 of the signed bytes, the signature time and
the signing key's fingerprint. Re-sending a captured message (or the same text
signed at the same second, which is the same signature for our purpose) finds its
entry and is refused. Entries are kept ``keep`` seconds (default 7 days), longer
than the clock window (default 4 days back, 3 ahead): a message old enough to have
been pruned is refused by the window anyway, so pruning never reopens a replay.

Storage: one SQLite file (``replay.db`` in ``[mailgate] state_dir``), separate from
the directory so that it works the same with every backend (an LDAP directory has
nowhere to put it). Each step is one ``BEGIN IMMEDIATE`` transaction.

An entry goes through three states, so that a failure never loses a request and
nothing is ever applied twice:

* :meth:`ReplayCache.claim` makes it *pending*: this process works on the message.
  Two deliveries racing each other cannot both claim it; the loser gets
  :class:`InProgress` (a temporary failure: the MTA retries later). A claim left
  behind by a crashed process is taken over after ``PENDING_LEASE`` seconds.
* :meth:`ReplayCache.release` deletes a pending entry: the message failed
  temporarily (directory down, MTA down) *before* anything was stored, and the
  MTA's retry must be processed like a new message. The gateway releases on
  every error before :meth:`commit`.
* :meth:`ReplayCache.commit` makes it *done*, right after the directory change
  (or the refusal) it stands for, together with the reply to send. The reply
  stays in the entry until :meth:`delivered`: when the MTA did not take it, the
  retry finds it (``Claim.undelivered``) and the gateway sends it again instead
  of acting twice. Stored replies are what the account owner gets anyway
  (reports and OpenPGP-encrypted records), in a 0700 directory, and are deleted
  once handed over.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mailwarden.errors import DirectoryUnavailable, MailwardenError, TemporaryFailure

_T = TypeVar("_T")


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


#: Seconds a pending claim belongs to the process that made it. A gateway run
#: takes seconds (at most the sendmail/SMTP timeout of 60 s plus the directory's);
#: after this long the claimer is taken to have crashed and a retry takes over.
PENDING_LEASE = 900.0


class InProgress(TemporaryFailure):
    """Another delivery of the same message holds its claim right now.

    Raised by :meth:`ReplayCache.claim`; the gateway command exits 75 and the
    MTA retries later, when the first delivery has finished (then the retry is
    refused as a replay) or given up (then the retry processes it).
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A message this process may act on (see :meth:`ReplayCache.claim`).

    ``undelivered`` is set when the message was processed before but its reply
    never reached the MTA: the caller sends those bytes and acts on nothing.
    """

    key: str
    undelivered: bytes | None = None


_PENDING = "pending"
_DONE = "done"


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
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(seen)")}
            # Files written before claims existed hold only finished messages.
            if "state" not in columns:
                self._conn.execute("ALTER TABLE seen ADD COLUMN state TEXT NOT NULL DEFAULT 'done'")
            if "reply" not in columns:
                self._conn.execute("ALTER TABLE seen ADD COLUMN reply BLOB")
        except (OSError, sqlite3.Error) as exc:
            raise DirectoryUnavailable(f"replay cache {self._path}: {exc}") from exc

    def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._conn)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise DirectoryUnavailable(f"replay cache {self._path}: {exc}") from exc
        return result

    def claim(self, signed_bytes: bytes, signed_at: int, fingerprint: str, *, now: float) -> Claim:
        """Claim the signature for processing.

        Replayed if it is outside the window or was processed already (and its
        reply delivered); InProgress if another process holds a fresh claim on it.
        """
        self._window.check(signed_at, now)
        key = replay_key(signed_bytes, signed_at, fingerprint)

        def work(conn: sqlite3.Connection) -> Claim | None:
            conn.execute("DELETE FROM seen WHERE seen_at < ?", (now - self._window.keep,))
            row = conn.execute(
                "SELECT state, seen_at, reply FROM seen WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO seen (key, signed_at, fingerprint, seen_at, state)"
                    " VALUES (?,?,?,?,?)",
                    (key, signed_at, fingerprint.upper(), now, _PENDING),
                )
                return Claim(key=key)
            state, seen_at, reply = row
            if state == _PENDING:
                if seen_at > now - PENDING_LEASE:
                    raise InProgress("this message is being processed by another delivery")
                conn.execute("UPDATE seen SET seen_at = ? WHERE key = ?", (now, key))
                return Claim(key=key)
            if reply is not None:
                return Claim(key=key, undelivered=bytes(reply))
            return None

        claim = self._transaction(work)
        if claim is None:
            raise Replayed("this message was already processed (replay refused)")
        return claim

    def commit(self, claim: Claim, *, reply: bytes | None, now: float) -> None:
        """The message is processed: never act on it again; ``reply`` is yet to be sent."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE seen SET state = ?, reply = ?, seen_at = ? WHERE key = ?",
                (_DONE, reply, now, claim.key),
            )

        self._transaction(work)

    def delivered(self, claim: Claim) -> None:
        """The stored reply was handed to the MTA: forget it (the entry stays)."""
        self._transaction(
            lambda conn: conn.execute("UPDATE seen SET reply = NULL WHERE key = ?", (claim.key,))
        )

    def release(self, claim: Claim) -> None:
        """Give up a claim that was not committed, so that a retry is processed afresh.

        A no-op for a committed claim: what was stored stays stored exactly once.
        """
        self._transaction(
            lambda conn: conn.execute(
                "DELETE FROM seen WHERE key = ? AND state = ?", (claim.key, _PENDING)
            )
        )

    def __len__(self) -> int:
        count: int = self._conn.execute("SELECT count(*) FROM seen").fetchone()[0]
        return count

    def close(self) -> None:
        self._conn.close()
