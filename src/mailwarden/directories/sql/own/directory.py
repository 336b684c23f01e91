"""The :class:`OwnDirectory` class: the Directory protocol on the own schema.

Reads are one statement each, on any read host. Writes are one transaction on a
primary that also records the change for the other nodes (:mod:`.feed`).
Compare-and-swap: every write of an existing account first locks its
``accounts`` row (``SELECT ... FOR UPDATE``) and then reads it, so a writer that
waited for the lock reads what the previous one stored; the row keeps its id
when it is rewritten, so the waiting writer still finds it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from mailwarden.accounts.rules import check_account, check_password
from mailwarden.config import SqlConfig
from mailwarden.directories.base import (
    ALL_LOGIN_ATTRIBUTES,
    BulkReport,
    ChangeFeed,
    LoginAttribute,
    Modified,
    QueryContext,
    fingerprint_key,
    login_key,
)
from mailwarden.directories.bulk import (
    judge_clashes,
    settle_batch,
    settle_existing,
    without_refused,
)
from mailwarden.directories.memory import apply_changes
from mailwarden.directories.sql.cache import FindCache
from mailwarden.directories.sql.database import Database, Transaction
from mailwarden.directories.sql.dialect import Param, Sql
from mailwarden.directories.sql.own.feed import SqlChanges
from mailwarden.directories.sql.own.rows import (
    IN_CHUNK,
    LoginRow,
    account_of,
    check_free,
    chunks,
    in_list,
    insert_accounts,
    login_rows,
    rewrite,
    select_list,
    storable,
)
from mailwarden.directories.sql.own.schema import ensure_schema
from mailwarden.errors import AccountNotFound, DuplicateKey, InvalidAccount
from mailwarden.model import Account, AppPasswordUsed, Listed

#: A write touching more logins than this tells the other nodes "everything".
MAX_NAMED = 100


def _names(*accounts: Account | None) -> list[str]:
    """The lower-cased logins of ``accounts`` (what a change feed names)."""
    return sorted({login_key(n) for a in accounts if a is not None for n in a.logins()})


def _like(pattern: str) -> str:
    """A ``*``/``?`` pattern as a LIKE pattern with ``!`` as the escape character."""
    out = []
    for c in login_key(pattern):
        if c in "!%_":
            out.append("!" + c)
        else:
            out.append({"*": "%", "?": "_"}.get(c, c))
    return "".join(out)


#: Accounts per page of :meth:`OwnDirectory.listing`.
LISTING_PAGE = 1000


class OwnDirectory:
    """Accounts in mailwarden's own tables (``sql.mode = "own"``); :meth:`open` it."""

    def __init__(
        self, db: Database, *, poll_interval: float, cache: FindCache | None = None
    ) -> None:
        self.db = db
        self.feed = SqlChanges(db, poll_interval=poll_interval)
        #: Looked-up accounts, read while the feed is live (sql/cache.py); its drops
        #: come through the engine's login cache, to which app.py links it.
        self.cache = cache
        self._mariadb = db.dialect.name == "mariadb"
        self._select = select_list(db.dialect)
        self._find_head = (
            f"SELECT {self._select} FROM logins AS l JOIN accounts AS a ON a.id = l.account_id"  # noqa: S608
            " WHERE l.login = "
        )

    @classmethod
    async def open(
        cls, config: SqlConfig, *, password: str, create: bool, cache: FindCache | None = None
    ) -> OwnDirectory:
        """The directory on a new pool; with ``create`` (``mailwarden init``) the schema
        is created or upgraded first (own/schema.py says what is refused)."""
        db = await Database.open(config, password=password)
        try:
            await ensure_schema(
                db, create=create, where=f"{config.driver} database {config.database!r}"
            )
        except BaseException:
            await db.close()
            raise
        return cls(db, poll_interval=config.poll_interval, cache=cache)

    @property
    def changes(self) -> ChangeFeed:
        """Writes by any node, as they happen (app.py hands this to the engine)."""
        return self.feed

    def data_version(self) -> int | None:
        return None  # other nodes write; the change feed is not exact enough for this

    # ----------------------------------------------------------------- reads

    async def find(
        self,
        login: str,
        *,
        by: Sequence[LoginAttribute] = ALL_LOGIN_ATTRIBUTES,
        context: QueryContext | None = None,
    ) -> Account | None:
        # ``context``: the own tables' answer does not depend on the request.
        kinds = [k for k in ALL_LOGIN_ATTRIBUTES if k in by]
        if not kinds or not storable(login):
            return None
        cache = self.cache if self.cache is not None and self.feed.live else None
        if cache is None:
            return await self._find(login, kinds)
        key = (login_key(login), tuple(kinds))
        return await cache.find(key, login, lambda: self._find(login, kinds))

    async def _find(self, login: str, kinds: list[LoginAttribute]) -> Account | None:
        row = await self.db.fetchrow(
            Sql.of(
                self._find_head,
                Param(login_key(login)),
                " AND l.kind IN ",
                *in_list(kinds),
                " ORDER BY l.space = 'uid' DESC LIMIT 1",
            )
        )
        return None if row is None else account_of(row)

    async def get(self, uid: str) -> Account | None:
        return await self.find(uid, by=("uid",))

    async def get_many(self, uids: Sequence[str]) -> list[Account]:
        wanted = list(dict.fromkeys(k for k in map(login_key, uids) if storable(k)))
        found: dict[str, Account] = {}
        for part in chunks(wanted, IN_CHUNK):
            rows = await self.db.fetch(
                Sql.of(
                    f"SELECT {self._select} FROM logins AS u JOIN accounts AS a"  # noqa: S608
                    " ON a.id = u.account_id WHERE u.space = 'uid' AND u.login IN ",
                    *in_list(part),
                )
            )
            for row in rows:
                account = account_of(row)
                found[login_key(account.uid)] = account
        return [found[key] for key in wanted if key in found]

    async def listing(self, pattern: str = "*") -> AsyncIterator[Listed]:
        # Keyset pages by uid key: one statement per page, no cursor held between.
        if not storable(pattern):
            return
        matching: list[str | Param] = []
        if pattern != "*":
            matching = [
                " AND u.account_id IN (SELECT account_id FROM logins WHERE login LIKE ",
                Param(_like(pattern)),
                " ESCAPE '!')",
            ]
        after = ""
        while True:
            rows = await self.db.fetch(
                Sql.of(
                    f"SELECT {self._select} FROM logins AS u JOIN accounts AS a"  # noqa: S608
                    " ON a.id = u.account_id WHERE u.space = 'uid' AND u.login > ",
                    Param(after),
                    *matching,
                    " ORDER BY u.login LIMIT ",
                    Param(LISTING_PAGE),
                )
            )
            for row in rows:
                account = account_of(row)
                after = login_key(account.uid)
                yield Listed.of(account)
            if len(rows) < LISTING_PAGE:
                return

    async def find_by_fingerprint(self, fingerprint: str) -> list[Account]:
        if not storable(fingerprint):
            return []
        rows = await self.db.fetch(
            Sql.of(
                f"SELECT {self._select} FROM accounts AS a JOIN logins AS u"  # noqa: S608
                " ON u.account_id = a.id AND u.space = 'uid' WHERE a.fingerprint_key = ",
                Param(fingerprint_key(fingerprint)),
                " ORDER BY u.login",
            )
        )
        return [account_of(row) for row in rows]

    async def iterate(self) -> AsyncIterator[str]:
        query = Sql.of(
            "SELECT a.uid FROM logins AS l JOIN accounts AS a ON a.id = l.account_id"
            " WHERE l.space = 'uid' ORDER BY l.login"
        )
        async with contextlib.aclosing(self.db.stream(query)) as rows:
            async for row in rows:
                yield str(row.values[0])

    async def search(self, pattern: str, *, limit: int = 1000) -> list[Account]:
        if limit <= 0 or not storable(pattern):
            return []
        rows = await self.db.fetch(
            Sql.of(
                f"SELECT {self._select} FROM logins AS u JOIN accounts AS a"  # noqa: S608
                " ON a.id = u.account_id WHERE u.space = 'uid' AND u.account_id IN"
                " (SELECT account_id FROM logins WHERE login LIKE ",
                Param(_like(pattern)),
                " ESCAPE '!') ORDER BY u.login LIMIT ",
                Param(limit),
            )
        )
        return [account_of(row) for row in rows]

    async def sample(self, count: int) -> list[Account]:
        if count <= 0:
            return []
        rows = await self.db.fetch(
            Sql.of(
                f"SELECT {self._select} FROM logins AS u JOIN accounts AS a"  # noqa: S608
                " ON a.id = u.account_id WHERE u.space = 'uid' LIMIT ",
                Param(count),
            )
        )
        return [account_of(row) for row in rows]

    async def count(self) -> int:
        row = await self.db.fetchrow(Sql.of("SELECT count(*) FROM accounts"))
        return 0 if row is None else int(row.values[0])

    async def ping(self) -> None:
        await self.db.ping()

    # ----------------------------------------------------------------- writes

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[tuple[Transaction, list[str]]]:
        """A write transaction; the block fills the list with the logins it touched,
        recorded for the other nodes at its end (more than :data:`MAX_NAMED`: as
        "everything") and delivered to this node's subscribers once committed."""
        touched: list[str] = []
        async with self.db.transaction() as tx:
            yield tx, touched
            names = touched if len(touched) <= MAX_NAMED else None
            if touched:
                await self.feed.record(tx, names)
        if touched:
            self.feed.deliver(names)

    async def _lock(self, tx: Transaction, key: str) -> int | None:
        """Lock the account whose uid key is ``key``; its id, or None."""
        if not storable(key):
            return None
        row = await tx.fetchrow(
            Sql.of(
                "SELECT a.id FROM logins AS u JOIN accounts AS a ON a.id = u.account_id"
                " WHERE u.login = ",
                Param(key),
                " AND u.space = 'uid' FOR UPDATE",
            )
        )
        return None if row is None else int(row.values[0])

    async def _locked(self, tx: Transaction, uid: str) -> tuple[int, Account] | None:
        """The account ``uid``, locked, as stored now (module docstring)."""
        account_id = await self._lock(tx, login_key(uid))
        if account_id is None:
            return None
        # MariaDB: a locking read, so it reads the latest rows, not a snapshot.
        lock = " FOR UPDATE" if self._mariadb else ""
        row = await tx.fetchrow(
            Sql.of(
                f"SELECT {self._select} FROM accounts AS a WHERE a.id = ",  # noqa: S608
                Param(account_id),
                lock,
            )
        )
        if row is None:
            return None
        return account_id, account_of(row)

    async def create(self, account: Account) -> None:
        check_account(account)
        logins = login_rows(account)
        try:
            async with self._write() as (tx, touched):
                await check_free(tx, logins, None)
                await insert_accounts(tx, self.db.dialect, [account])
                touched.extend(_names(account))
        except DuplicateKey:
            await self._name_the_clash(logins, None)
            raise

    async def _name_the_clash(self, logins: Sequence[LoginRow], own_id: int | None) -> None:
        """After the unique index refused a write (another node took a login between
        our check and our insert): raise AccountExists naming the login and its
        owner, read again now; return if it cannot be found (then the caller's
        DuplicateKey stands)."""
        async with self.db.transaction() as tx:
            await check_free(tx, logins, own_id)

    async def replace(self, account: Account) -> None:
        check_account(account)
        logins = login_rows(account)
        account_id: int | None = None
        try:
            async with self._write() as (tx, touched):
                found = await self._locked(tx, account.uid)
                if found is None:
                    raise AccountNotFound(f"no account with uid {account.uid!r}")
                account_id, old = found
                await check_free(tx, logins, account_id)
                await rewrite(tx, account_id, account)
                touched.extend(_names(old, account))
        except DuplicateKey:
            await self._name_the_clash(logins, account_id)
            raise

    async def update(self, uid: str, changes: Mapping[str, Any]) -> Account:
        changes = dict(changes)
        return (await self.modify(uid, lambda current: apply_changes(current, changes))).after

    async def modify(self, uid: str, change: Callable[[Account], Account]) -> Modified:
        async with self._write() as (tx, touched):
            found = await self._locked(tx, uid)
            if found is None:
                raise AccountNotFound(f"no account with uid {uid!r}")
            account_id, old = found
            new = change(old)
            check_account(new)
            logins = login_rows(new)
            if new == old:
                return Modified(before=old, after=new)
            await check_free(tx, logins, account_id)
            await rewrite(tx, account_id, new)
            touched.extend(_names(old, new))
        return Modified(before=old, after=new)

    async def set_password(self, uid: str, new: str, *, expected: str | None = None) -> bool:
        check_password(new)
        if "\x00" in new:
            raise InvalidAccount("a NUL character cannot be stored in an SQL directory")
        key = login_key(uid)
        async with self._write() as (tx, touched):
            account_id = await self._lock(tx, key)
            if account_id is None:
                return False
            if expected is not None:
                # Compared after the lock: no other write can fall in between.
                row = await tx.fetchrow(
                    Sql.of(
                        "SELECT password FROM accounts WHERE id = ",
                        Param(account_id),
                        " FOR UPDATE" if self._mariadb else "",
                    )
                )
                if row is None or row.values[0] != expected:
                    return False
            await tx.execute(
                Sql.of(
                    "UPDATE accounts SET password = ",
                    Param(new),
                    " WHERE id = ",
                    Param(account_id),
                )
            )
            touched.append(key)
        return True

    async def record_app_password_uses(self, uses: Sequence[AppPasswordUsed]) -> None:
        # Not an account change: nothing is recorded for the change feed (a node's
        # cached account with an older last use still decides its logins right).
        async with self.db.transaction() as tx:
            for used in uses:
                key = login_key(used.uid)
                if not storable(key):
                    continue
                use = used.use
                await tx.execute(
                    Sql.of(
                        "UPDATE app_passwords SET last_used = ",
                        Param(use.at),
                        ", last_service = ",
                        Param(use.service),
                        ", last_ip = ",
                        Param(use.remote_ip),
                        " WHERE id = ",
                        Param(used.app_password),
                        " AND account_id = (SELECT account_id FROM logins WHERE login = ",
                        Param(key),
                        " AND space = 'uid')",
                    )
                )

    async def delete(self, uid: str) -> bool:
        async with self._write() as (tx, touched):
            found = await self._locked(tx, uid)
            if found is None:
                return False
            account_id, old = found
            await tx.execute(Sql.of("DELETE FROM accounts WHERE id = ", Param(account_id)))
            touched.extend(_names(old))
        return True

    async def bulk_upsert(
        self, accounts: Iterable[Account], *, replace: bool, skip_refused: bool = False
    ) -> BulkReport:
        def check(account: Account) -> None:
            check_account(account)
            login_rows(account)

        batch, report = settle_batch(
            accounts, replace=replace, check=check, skip_invalid=skip_refused
        )
        async with self._write() as (tx, touched):
            existing: dict[str, int] = {}
            for chunk in chunks(sorted(batch), IN_CHUNK):
                rows = await tx.fetch(
                    Sql.of(
                        "SELECT login, account_id FROM logins WHERE space = 'uid' AND login IN ",
                        *in_list(chunk),
                        " FOR UPDATE",
                    )
                )
                existing.update((str(r.values[0]), int(r.values[1])) for r in rows)
            final, _obsolete = settle_existing(batch, existing, report, replace=replace)
            replacing = set(existing) if replace else set()
            stored = await self._address_owners(tx, batch.values())
            refused = judge_clashes(batch, stored, replacing, skip=skip_refused)
            gone = [existing[key] for key in sorted(replacing - set(refused))]
            for chunk in chunks(gone, IN_CHUNK):
                await tx.execute(Sql.of("DELETE FROM accounts WHERE id IN ", *in_list(chunk)))
            written = [a for key, a in batch.items() if key not in refused]
            await insert_accounts(tx, self.db.dialect, written)
            # The replaced accounts' old addresses are among the names: a replaced
            # account is read again, so naming its uid is enough for the cache.
            touched.extend(_names(*written))
        return without_refused(final, refused, replacing)

    async def _address_owners(
        self, tx: Transaction, accounts: Iterable[Account]
    ) -> dict[str, set[str]]:
        """Address key -> uid keys of the accounts that hold it now, for the
        addresses of ``accounts`` (bulk.judge_clashes)."""
        keys = sorted(
            {login_key(a) for acc in accounts for a in (acc.mail, *acc.alternate_addresses) if a}
        )
        stored: dict[str, set[str]] = {}
        for chunk in chunks(keys, IN_CHUNK):
            rows = await tx.fetch(
                Sql.of(
                    # Joined on the accounts' primary key: right after a bulk load the
                    # planner has no statistics, and a self-join of logins went wrong.
                    "SELECT l.login, a.uid FROM logins AS l JOIN accounts AS a"
                    " ON a.id = l.account_id WHERE l.space = 'address' AND l.login IN ",
                    *in_list(chunk),
                )
            )
            for row in rows:
                stored.setdefault(str(row.values[0]), set()).add(login_key(str(row.values[1])))
        return stored

    # ----------------------------------------------------------------- closing

    async def close(self) -> None:
        await self.feed.close()
        await self.db.close()
