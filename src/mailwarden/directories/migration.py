"""Copying every account of one directory into another: what ``mailwarden migrate`` does.

Written against the :class:`~mailwarden.directories.base.Directory` protocol only, so
it copies between any two backends (SQLite, LDAP, and any later one) in either
direction. The command line (cli/transfer.py) opens the two directories, refuses a
directory copied onto itself (:mod:`mailwarden.directories.places`) and prints what
this module reports.

How it copies, and why:

* **In batches, never all at once.** The source's uids come from
  :meth:`Directory.iterate` (SQLite reads them in pages; LDAP holds the list of uids,
  not the accounts); every ``batch_size`` of them are read whole with one
  :meth:`Directory.get_many` and written with one :meth:`Directory.bulk_upsert`.
  Memory holds one batch of accounts, whatever the size of the directory.
* **Idempotent, so a rerun completes an interrupted copy.** Each batch is written with
  ``replace=True``: an account the target has is overwritten, never duplicated. On
  SQLite each batch is one transaction, so a crash loses at most the batch in flight;
  on LDAP a batch is written entry by entry, and a rerun rewrites it. Accounts are
  copied as stored: password values (hashes) verbatim, every field the target can hold.
* **Refusals do not stop the copy.** ``skip_refused=True``: an account the target
  refuses (an address another of its accounts holds, a value it cannot store) is
  reported with its reason, and the rest is written.
* **Resume** (``resume=True``) reads the batch's uids from the target first and writes
  only the accounts that differ, which makes a rerun after a crash, or a final
  catch-up run, cost reads instead of writes.
* **Dry run** (``dry_run=True``) writes nothing: it counts what would be created and
  replaced. What the target would refuse is only known by writing, so it is not
  counted.

Accounts the target holds and the source does not are left alone. Accounts created
in the source while the copy runs may or may not be copied (iterate() pages by uid);
a final run with ``resume`` picks them up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from mailwarden.directories.base import Directory, Refusal, login_key
from mailwarden.model import Account

#: Accounts read and written together by default: big enough that a batch's round
#: trips cost little per account, small enough that an LDAP batch stays well inside
#: one operation's timeout and a crash loses one batch's work.
BATCH_SIZE = 500
MAX_BATCH_SIZE = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationProgress:
    """How far a copy is: the counts so far (after the last batch), or at the end.

    ``total`` is the source's count when the copy began (the source may change
    meanwhile); ``read`` the accounts read from it so far; ``unchanged`` the accounts
    ``resume`` found identical at the target and left alone.
    """

    total: int
    read: int = 0
    created: int = 0
    replaced: int = 0
    unchanged: int = 0
    refused: int = 0
    elapsed: float = 0.0
    dry_run: bool = False

    @property
    def rate(self) -> float:
        """Accounts read per second so far."""
        return self.read / self.elapsed if self.elapsed > 0 else 0.0


#: Called after every batch with the progress so far and the batch's refusals.
OnBatch = Callable[[MigrationProgress, Sequence[Refusal]], None]


async def migrate(
    source: Directory,
    target: Directory,
    *,
    batch_size: int = BATCH_SIZE,
    resume: bool = False,
    dry_run: bool = False,
    on_batch: OnBatch | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> MigrationProgress:
    """Copy every account of ``source`` into ``target``; the final counts.

    A failure of either directory (DirectoryUnavailable) propagates at once; the
    batches reported through ``on_batch`` until then are written, and running the
    copy again completes it. ValueError for a batch size outside 1..MAX_BATCH_SIZE.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch size must be between 1 and {MAX_BATCH_SIZE}")
    started = clock()
    progress = MigrationProgress(total=await source.count(), dry_run=dry_run)
    uids: list[str] = []

    async def flush() -> None:
        nonlocal progress
        accounts = await source.get_many(uids)
        uids.clear()
        progress, refused = await _copy_batch(
            accounts, target, progress, resume=resume, dry_run=dry_run
        )
        progress = replace(progress, elapsed=clock() - started)
        if on_batch is not None:
            on_batch(progress, refused)

    async for uid in source.iterate():
        uids.append(uid)
        if len(uids) >= batch_size:
            await flush()
    if uids:
        await flush()
    return replace(progress, elapsed=clock() - started)


async def _copy_batch(
    accounts: list[Account],
    target: Directory,
    progress: MigrationProgress,
    *,
    resume: bool,
    dry_run: bool,
) -> tuple[MigrationProgress, tuple[Refusal, ...]]:
    """Write one batch (or, dry, count it); the progress after it and its refusals."""
    read = progress.read + len(accounts)
    stored: dict[str, Account] = {}
    if resume or dry_run:
        found = await target.get_many([a.uid for a in accounts])
        stored = {login_key(a.uid): a for a in found}
    unchanged = 0
    if resume:
        changed = [a for a in accounts if stored.get(login_key(a.uid)) != a]
        unchanged = len(accounts) - len(changed)
        accounts = changed
    if dry_run:
        replaced = sum(1 for a in accounts if login_key(a.uid) in stored)
        return replace(
            progress,
            read=read,
            created=progress.created + len(accounts) - replaced,
            replaced=progress.replaced + replaced,
            unchanged=progress.unchanged + unchanged,
        ), ()
    report = await target.bulk_upsert(accounts, replace=True, skip_refused=True)
    return replace(
        progress,
        read=read,
        created=progress.created + report.created,
        replaced=progress.replaced + report.replaced,
        unchanged=progress.unchanged + unchanged,
        refused=progress.refused + len(report.refused),
    ), report.refused
