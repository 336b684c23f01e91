"""The :class:`SQLiteDirectory` class: connections, the reader and writer threads,
the login cache checked against ``PRAGMA data_version``, and the Directory methods.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from mailwarden.accounts.rules import check_account, check_password
from mailwarden.directories.base import (
    ALL_LOGIN_ATTRIBUTES,
    BulkReport,
    LoginAttribute,
    Modified,
    QueryContext,
    fingerprint_key,
    login_key,
)
from mailwarden.directories.bulk import (
    chunked,
    combined,
)
from mailwarden.directories.memory import apply_changes
from mailwarden.directories.sqlite.rows import (
    BY_FINGERPRINT,
    DELETE,
    FIND,
    ITERATE,
    ITERATE_PAGE,
    KIND_MEMO,
    LISTING,
    RECORD_USE,
    SAMPLE,
    SEARCH,
    SWAP_HASH,
    account_from_row,
    accounts_by_uid,
    glob_pattern,
    insert,
    listed_from_row,
    login_kinds,
    read_error,
    settle_finds,
    uid_id,
    upsert_chunk,
)
from mailwarden.directories.sqlite.schema import APPLICATION_ID, SCHEMA_VERSION, migrate
from mailwarden.errors import (
    AccountExists,
    AccountNotFound,
    DirectoryMissing,
    DirectoryUnavailable,
    InvalidAccount,
)
from mailwarden.model import Account, AppPasswordUsed, Listed

T = TypeVar("T")

#: Logins read by one reader thread in one go (see the module docstring).
FIND_BATCH = 64

_MISS = object()
#: Seconds during which one ``PRAGMA data_version`` answer is trusted (see _cached).
CACHE_RECHECK = 0.01


#: Accounts a bulk write settles and inserts at once (all in its one transaction).
BULK_CHUNK = 5000


class SQLiteDirectory:
    """Accounts in one SQLite file. Create it with :meth:`open`, never directly."""

    def __init__(self, path: Path, *, readers: int, timeout: float, cache_size: int = 0) -> None:
        self._path = path
        self._timeout = timeout
        self._closed = False
        # The login cache (see find()): results by query, valid while the file's
        # data_version, read on the event loop's own probe connection, is unchanged.
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[str, ...], Account | None] = OrderedDict()
        self._cache_version: int | None = None
        self._cache_checked = 0.0
        self._probe: sqlite3.Connection | None = None
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="mailwarden-sqlite-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="mailwarden-sqlite-write")
        self._local = threading.local()
        self._finds: list[tuple[tuple[str, ...], asyncio.Future[Account | None]]] = []
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_connection: sqlite3.Connection | None = None

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool,
        readers: int = 4,
        timeout: float = 5.0,
        cache_size: int = 0,
    ) -> SQLiteDirectory:
        """Open the directory at ``path``; with ``create``, make the file if it is missing.

        Pending migrations are applied. DirectoryUnavailable if the file is missing
        (without ``create``), unreadable, not SQLite, not ours, or newer than this
        code. ``readers`` threads read concurrently; ``timeout`` is how many
        seconds a statement waits for another process's lock; ``cache_size``
        logins are remembered by :meth:`find` (0: none).
        """
        if readers < 1:
            raise ValueError("readers must be at least 1")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        directory = cls(Path(path), readers=readers, timeout=timeout, cache_size=cache_size)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(directory._writer, directory._setup, create)
            # The probe reads data_version for the login cache and for the engine's
            # negative cache, so it exists even with the login cache off.
            probe = directory._probe = directory._connect("rw")
            probe.execute("PRAGMA query_only = ON")
            # Known from the start, so that the first burst of finds can be kept
            # (a find stores its answer only under the version it began with).
            directory._cache_version = probe.execute("PRAGMA data_version").fetchone()[0]
            directory._cache_checked = time.monotonic()
        except BaseException:
            await directory.close()
            raise
        return directory

    # ----------------------------------------------------------------- connections

    def _unavailable(self, detail: object) -> DirectoryUnavailable:
        return DirectoryUnavailable(f"{self._path}: {detail}")

    def _connect(self, mode: str) -> sqlite3.Connection:
        # check_same_thread is off only so close() can close every connection from
        # one thread after the pools have stopped; each is used by one thread.
        conn = sqlite3.connect(
            f"{self._path.absolute().as_uri()}?mode={mode}",
            uri=True,
            timeout=self._timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _setup(self, create: bool) -> None:
        """Open the writer connection and bring the schema up to date (writer thread)."""
        path = self._path
        if not create and not path.exists():
            raise DirectoryMissing(
                f"{path}: no such file; create the directory with 'mailwarden init'"
            )
        if create:
            # The file holds every password hash: create it private. SQLite gives
            # the -wal and -shm files the same permissions as the database file.
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
            except OSError as exc:
                raise self._unavailable(exc.strerror or exc) from exc
        try:
            conn = self._connect("rw")
            self._write_connection = conn
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id not in (0, APPLICATION_ID) or (version == 0 and tables):
                raise self._unavailable("not a mailwarden database")
            if version == 0 and not create:
                raise DirectoryMissing(
                    f"{path}: empty database; run 'mailwarden init' to create it"
                )
            if version > SCHEMA_VERSION:
                raise self._unavailable(
                    f"schema version {version} is newer than this mailwarden supports "
                    f"({SCHEMA_VERSION})"
                )
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise self._unavailable(f"cannot use WAL mode (journal_mode is {mode})")
            conn.execute("SELECT json_group_array(1)").fetchone()
            migrate(conn, version)
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect("rw")
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
        return conn

    # ----------------------------------------------------------------- running calls

    async def _read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._closed:
                raise self._unavailable("directory is closed")
            try:
                return job(self._reader())
            except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
                raise self._read_error(exc) from exc

        return await self._submit(self._readers, run)

    def _read_error(self, exc: Exception) -> DirectoryUnavailable:
        return read_error(self._path, exc)

    def _find_soon(self, params: tuple[str, ...]) -> asyncio.Future[Account | None]:
        """The account ``params`` selects, read together with the other finds of this
        turn of the event loop (see the module docstring)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Account | None] = loop.create_future()
        if not self._finds:
            loop.call_soon(self._send_finds)
        self._finds.append((params, future))
        return future

    def _send_finds(self) -> None:
        finds, self._finds = self._finds, []
        loop = asyncio.get_running_loop()
        for start in range(0, len(finds), FIND_BATCH):
            chunk = finds[start : start + FIND_BATCH]
            work = loop.create_task(self._read(partial(self._find_rows, chunk)))
            work.add_done_callback(partial(settle_finds, chunk))

    def _find_rows(
        self,
        chunk: list[tuple[tuple[str, ...], asyncio.Future[Account | None]]],
        conn: sqlite3.Connection,
    ) -> list[Account | DirectoryUnavailable | None]:
        # One answer per find: a row that does not decode fails only its own find.
        out: list[Account | DirectoryUnavailable | None] = []
        for params, _ in chunk:
            try:
                row = conn.execute(FIND, params).fetchone()
                out.append(None if row is None else account_from_row(row))
            except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
                out.append(self._read_error(exc))
        return out

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._write_connection
            if self._closed or conn is None:
                raise self._unavailable("directory is closed")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = job(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.IntegrityError as exc:
                raise InvalidAccount(f"refused by the database: {exc}") from exc
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from exc
            return result

        try:
            return await self._submit(self._writer, run)
        finally:
            # Our own commit: forget cached logins now, and make the next lookup
            # read data_version again (a find that raced with this write may store
            # a stale answer after this line; that recheck drops it).
            self._cache.clear()
            self._cache_checked = 0.0

    async def _submit(self, pool: ThreadPoolExecutor, run: Callable[[], T]) -> T:
        if self._closed:
            raise self._unavailable("directory is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, run)
        except RuntimeError as exc:
            # The pool refuses new work once close() has shut it down.
            if self._closed:
                raise self._unavailable("directory is closed") from exc
            raise

    # ----------------------------------------------------------------- reads

    async def find(
        self,
        login: str,
        *,
        by: Sequence[LoginAttribute] = ALL_LOGIN_ATTRIBUTES,
        context: QueryContext | None = None,
    ) -> Account | None:
        kinds = KIND_MEMO.get(tuple(by))
        if kinds is None:
            kinds = KIND_MEMO[tuple(by)] = login_kinds(by)
        if not kinds:
            return None
        params = (login_key(login), *kinds)
        if self._cache_size <= 0:
            return await self._find_soon(params)
        cached = self._cached(params)
        if cached is not _MISS:
            return cached  # type: ignore[return-value]
        version = self._cache_version
        account = await self._find_soon(params)
        # Only accounts are kept: names that match nothing (credential stuffing with
        # made-up users) would evict real accounts; the engine has its own bounded
        # negative cache for those.
        if account is not None and version is not None and version == self._cache_version:
            self._cache[params] = account
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return account

    def _cached(self, params: tuple[str, ...]) -> Account | object | None:
        """The remembered answer to ``params``, or _MISS (see :meth:`data_version`,
        which drops the whole cache when another connection has committed)."""
        if self.data_version() is None:
            return _MISS
        try:
            self._cache.move_to_end(params)
        except KeyError:
            return _MISS
        return self._cache[params]

    def data_version(self) -> int | None:
        """A number that changes whenever anyone commits a write to the file; None
        when it cannot be read (closed).

        It is ``PRAGMA data_version`` on the event loop's probe connection (no disk
        I/O in WAL mode; read at most once per CACHE_RECHECK, ten milliseconds, so a
        burst of pipelined requests pays for it once): it changes whenever any
        other connection — this process's writer, a CLI command, the mail
        gateway, another process on the same file — commits. When it changes, the
        login cache is dropped; the engine's negative cache keeps its entries only
        under the version they were made at. This process's own writes make the
        next call read it again (:meth:`_write`). So a cached answer is never older
        than the last commit by more than ten milliseconds, and changes made here
        apply at once.
        """
        probe = self._probe
        if probe is None or self._closed:
            return None
        now = time.monotonic()
        if now < self._cache_checked + CACHE_RECHECK:
            return self._cache_version
        try:
            version = probe.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            version = None
        self._cache_checked = now
        if version is None or version != self._cache_version:
            self._cache.clear()
            self._cache_version = version
        return self._cache_version

    async def get(self, uid: str) -> Account | None:
        key = login_key(uid)

        def job(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(FIND, (key, "uid", "uid", "uid")).fetchone()
            return None if row is None else account_from_row(row)

        return await self._read(job)

    async def get_many(self, uids: Sequence[str]) -> list[Account]:
        keys = list(dict.fromkeys(map(login_key, uids)))
        return await self._read(partial(accounts_by_uid, keys=keys)) if keys else []

    async def find_by_fingerprint(self, fingerprint: str) -> list[Account]:
        key = fingerprint_key(fingerprint)

        def job(conn: sqlite3.Connection) -> list[Account]:
            return [account_from_row(row) for row in conn.execute(BY_FINGERPRINT, (key,))]

        return await self._read(job)

    async def iterate(self) -> AsyncIterator[str]:
        async for page in self._pages(ITERATE):
            for _key, uid in page:
                yield uid

    async def listing(self, pattern: str = "*") -> AsyncIterator[Listed]:
        glob = "*" if pattern == "*" else glob_pattern(pattern)
        async for page in self._pages(LISTING, glob):
            for row in page:
                yield listed_from_row(row)

    async def _pages(self, statement: str, *params: str) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The rows of ``statement`` (parameters: the key after which a page starts,
        ``params``, the page size), page by page. Paged by key so that no read
        transaction stays open across awaits (it would pin the WAL and stop
        checkpoints while the caller is slow)."""
        after = ""
        while True:

            def job(conn: sqlite3.Connection, after: str = after) -> list[tuple[Any, ...]]:
                return conn.execute(statement, (after, *params, ITERATE_PAGE)).fetchall()

            page = await self._read(job)
            if page:
                yield page
            if len(page) < ITERATE_PAGE:
                return
            after = page[-1][0]

    async def search(self, pattern: str, *, limit: int = 1000) -> list[Account]:
        if limit <= 0:
            return []
        glob = glob_pattern(pattern)

        def job(conn: sqlite3.Connection) -> list[Account]:
            return [account_from_row(row) for row in conn.execute(SEARCH, (glob, limit))]

        return await self._read(job)

    async def sample(self, count: int) -> list[Account]:
        if count <= 0:
            return []

        def job(conn: sqlite3.Connection) -> list[Account]:
            return [account_from_row(row) for row in conn.execute(SAMPLE, (count,))]

        return await self._read(job)

    async def count(self) -> int:
        def job(conn: sqlite3.Connection) -> int:
            count: int = conn.execute("SELECT count(*) FROM accounts").fetchone()[0]
            return count

        return await self._read(job)

    async def ping(self) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

        await self._read(job)

    # ----------------------------------------------------------------- writes

    async def create(self, account: Account) -> None:
        check_account(account)

        def job(conn: sqlite3.Connection) -> None:
            if uid_id(conn, login_key(account.uid)) is not None:
                raise AccountExists(f"uid {account.uid!r} already exists")
            insert(conn, [account])

        await self._write(job)

    async def replace(self, account: Account) -> None:
        check_account(account)

        def job(conn: sqlite3.Connection) -> None:
            account_id = uid_id(conn, login_key(account.uid))
            if account_id is None:
                raise AccountNotFound(f"no account with uid {account.uid!r}")
            conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
            insert(conn, [account])

        await self._write(job)

    async def update(self, uid: str, changes: Mapping[str, Any]) -> Account:
        changes = dict(changes)
        return (await self.modify(uid, lambda current: apply_changes(current, changes))).after

    async def modify(self, uid: str, change: Callable[[Account], Account]) -> Modified:
        key = login_key(uid)

        # Read, change and write in one BEGIN IMMEDIATE transaction: SQLite's write
        # lock is held from the read on, so no other writer (thread or process) can
        # commit in between, and nothing another writer stored can be reverted.
        def job(conn: sqlite3.Connection) -> Modified:
            row = conn.execute(FIND, (key, "uid", "uid", "uid")).fetchone()
            if row is None:
                raise AccountNotFound(f"no account with uid {uid!r}")
            try:
                old = account_from_row(row)
            except (ValueError, TypeError, KeyError) as exc:
                raise self._read_error(exc) from exc
            new = change(old)
            check_account(new)
            if new == old:
                return Modified(before=old, after=new)
            conn.execute("DELETE FROM accounts WHERE id = ?", (row[0],))
            if uid_id(conn, login_key(new.uid)) is not None:
                raise AccountExists(f"uid {new.uid!r} already exists")
            insert(conn, [new])
            return Modified(before=old, after=new)

        return await self._write(job)

    async def set_password(self, uid: str, new: str, *, expected: str | None = None) -> bool:
        check_password(new)
        key = login_key(uid)

        def job(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(SWAP_HASH, (new, key, expected, expected))
            return cursor.rowcount == 1

        return await self._write(job)

    async def record_app_password_uses(self, uses: Sequence[AppPasswordUsed]) -> None:
        rows = [
            (u.use.at, u.use.service, u.use.remote_ip, u.app_password, login_key(u.uid))
            for u in uses
        ]

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(RECORD_USE, rows)

        if rows:
            await self._write(job)

    async def delete(self, uid: str) -> bool:
        key = login_key(uid)

        def job(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(DELETE, (key,))
            return cursor.rowcount == 1

        return await self._write(job)

    async def bulk_upsert(
        self, accounts: Iterable[Account], *, replace: bool, skip_refused: bool = False
    ) -> BulkReport:
        def job(conn: sqlite3.Connection) -> BulkReport:
            report = BulkReport()
            for chunk in chunked(accounts, BULK_CHUNK):
                part = upsert_chunk(conn, chunk, replace=replace, skip_refused=skip_refused)
                report = combined(report, part)
            return report

        # The accounts are consumed on the writer thread, a chunk at a time: an import
        # that passes a generator over a parsed file does its parsing off the event
        # loop and holds one chunk of accounts. Everything is one transaction (a
        # killed import leaves nothing behind).
        return await self._write(job)

    # ----------------------------------------------------------------- closing

    async def close(self) -> None:
        """Stop both pools (letting running statements finish) and close every connection."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._readers.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:
                # Nothing useful is left to do with a connection that fails to close.
                continue
