"""The SQL directory in Dovecot-style mode (``sql.mode = "dovecot"``): a site's own
tables, read with the queries its Dovecot ``sql`` passdb and userdb use.

:class:`DovecotSqlDirectory` implements the ``Directory`` protocol over a
:class:`~.database.Database`:

- ``find`` runs ``password_query`` with the login's variables (``%u`` ... and the
  request's ``%{service}``, ``%{rip}``, ``%{lip}`` from the :class:`QueryContext`)
  bound as parameters; no row is an unknown user, two rows a temporary failure (as
  Dovecot). Unless that row holds ``userdb_*`` prefetch columns, ``user_query``
  then adds the userdb fields (an empty ``user_query``: prefetch only). A userdb
  lookup (``context.userdb``) runs only ``user_query``, as Dovecot's userdb does.
  The row mapping is :mod:`.dovecotrows`.
- ``iterate`` streams ``iterate_query`` (server-side cursor; in the query's order).
- Writes: only ``set_password``, through ``update_query`` (``%w`` is the new stored
  value, ``{SCHEME}`` included). Without ``update_query``, and for every other
  write, :class:`~mailwarden.errors.WriteRefused`: the tables belong to another
  program (Postfix Admin, the site's scripts). A compare-and-swap
  ``set_password`` (rehash on login) reads the value again first: a password
  changed by another program in the instant between that read and the update can
  be overwritten by the rehash of the old one (Dovecot's queries offer no
  condition to add).
- ``data_version`` is None: other programs write these tables.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import pwd
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

from mailwarden.config import SqlConfig
from mailwarden.directories.base import (
    ALL_LOGIN_ATTRIBUTES,
    BulkReport,
    LoginAttribute,
    Modified,
    QueryContext,
    login_key,
)
from mailwarden.directories.memory import glob_regex
from mailwarden.directories.sql.cache import FindCache
from mailwarden.directories.sql.database import Database
from mailwarden.directories.sql.dovecotrows import (
    Columns,
    RowError,
    columns,
    has_prefetch,
    iterate_user,
    passdb_account,
    userdb_account,
)
from mailwarden.directories.sql.drivers import Row
from mailwarden.directories.sql.queries import parse_queries, variables_for
from mailwarden.directories.streams import BATCH
from mailwarden.errors import DirectoryUnavailable, WriteRefused
from mailwarden.lograte import RateLimitedLog
from mailwarden.model import Account, AppPasswordUsed, Listed

log = logging.getLogger("mailwarden.directory.sql")


def resolve_system_id(kind: str, name: str) -> int | None:
    """A ``uid``/``gid`` column that names a system user or group (Dovecot resolves them)."""
    try:
        return pwd.getpwnam(name).pw_uid if kind == "uid" else grp.getgrnam(name).gr_gid
    except KeyError:
        return None


class DovecotSqlDirectory:
    """A :class:`~mailwarden.directories.base.Directory` over a site's tables (module docstring)."""

    def __init__(
        self,
        db: Database,
        config: SqlConfig,
        *,
        resolve: Callable[[str, str], int | None] = resolve_system_id,
        cache: FindCache | None = None,
    ) -> None:
        self.db = db
        self.config = config
        #: Looked-up accounts for ``sql.cache_ttl`` seconds (cache.py), or None.
        self.cache = cache
        self.queries = parse_queries(config)
        self.default_scheme = config.default_pass_scheme.upper()
        self._resolve = resolve
        self._log = RateLimitedLog(log)

    # ------------------------------------------------------------------ reads

    async def find(
        self,
        login: str,
        *,
        by: Sequence[LoginAttribute] = ALL_LOGIN_ATTRIBUTES,
        context: QueryContext | None = None,
    ) -> Account | None:
        # ``by`` has no meaning here: the site's query decides which names log in.
        values = variables_for(login, **_context_values(context))
        userdb_only = context is not None and context.userdb and self.queries.user is not None
        if self.cache is None:
            return await self._find(login, values, userdb_only=userdb_only)
        # The answer depends on exactly the variables the queries use: the bound
        # queries are the key (as Dovecot's auth cache keys on the variables).
        key = (
            userdb_only,
            self.queries.password.bind(values),
            self.queries.user.bind(values) if self.queries.user is not None else None,
        )
        return await self.cache.find(
            key, login, lambda: self._find(login, values, userdb_only=userdb_only)
        )

    async def _find(
        self, login: str, values: dict[str, str], *, userdb_only: bool
    ) -> Account | None:
        if userdb_only:
            return await self._userdb(login, values, base=None)
        found = await self._passdb(login, values)
        if found is None:
            return None
        account, prefetched = found
        if prefetched or self.queries.user is None:
            return account
        return await self._userdb(account.uid, values, base=account)

    async def _passdb(self, login: str, values: dict[str, str]) -> tuple[Account, bool] | None:
        """The password query's account, and whether it prefetched userdb fields
        (then the user query is not run, as with Dovecot's ``userdb prefetch``)."""
        rows = await self.db.fetch(self.queries.password.bind(values))
        if not rows:
            return None
        if len(rows) > 1:
            raise self._unavailable("password_query", "Password query returned multiple matches")
        row = _columns(rows[0])
        try:
            account = passdb_account(row, login, default_scheme=self.default_scheme)
        except RowError as exc:
            raise self._unavailable("password_query", str(exc)) from None
        return account, has_prefetch(row)

    async def _userdb(
        self, login: str, values: dict[str, str], *, base: Account | None
    ) -> Account | None:
        assert self.queries.user is not None
        if base is not None:
            values = variables_for(base.uid, **_context_values_from(values))
        rows = await self.db.fetch(self.queries.user.bind(values))
        if not rows:
            # Dovecot's userdb answers "unknown user"; a login the passdb accepted
            # keeps its account, without userdb fields.
            return base
        try:
            return userdb_account(_columns(rows[0]), login, base=base, resolve=self._resolve)
        except RowError as exc:
            raise self._unavailable("user_query", str(exc)) from None

    async def get(self, uid: str) -> Account | None:
        return await self.find(uid)

    async def find_by_fingerprint(self, fingerprint: str) -> list[Account]:
        return []  # a site's Dovecot tables hold no OpenPGP keys

    async def iterate(self) -> AsyncGenerator[str]:
        query = self.queries.iterate.bind(variables_for(""))
        async with contextlib.aclosing(self.db.stream(query)) as rows:
            async for row in rows:
                try:
                    yield iterate_user(_columns(row))
                except RowError as exc:
                    raise self._unavailable("iterate_query", str(exc)) from None

    async def search(self, pattern: str, *, limit: int = 1000) -> list[Account]:
        names = await self._names(pattern)
        found = [await self.find(name) for name in names[: max(limit, 0)]]
        return [account for account in found if account is not None]

    async def sample(self, count: int) -> list[Account]:
        # The first names iterate_query gives, then their lookups (after the
        # iteration has given its connection back, as in _names).
        names: list[str] = []
        if count > 0:
            async with contextlib.aclosing(self.iterate()) as users:
                async for name in users:
                    names.append(name)
                    if len(names) >= count:
                        break
        return await self.get_many(names)

    async def get_many(self, uids: Sequence[str]) -> list[Account]:
        # No batched form of a site's password_query: one lookup per uid.
        unique: dict[str, str] = {}
        for uid in uids:
            unique.setdefault(login_key(uid), uid)
        found = [await self.find(uid) for uid in unique.values()]
        return [account for account in found if account is not None]

    async def listing(self, pattern: str = "*") -> AsyncIterator[Listed]:
        names = await self._names(pattern)
        for start in range(0, len(names), BATCH):
            for account in await self.get_many(names[start : start + BATCH]):
                yield Listed.of(account)

    async def _names(self, pattern: str) -> list[str]:
        """The names ``iterate_query`` lists that match ``pattern``, in uid order (as
        every directory lists). Read whole before any lookup: a lookup while the
        listing still holds its connection would need a second one from the pool."""
        regex = glob_regex(pattern)
        names: list[str] = []
        async with contextlib.aclosing(self.iterate()) as users:
            async for user in users:
                if regex.fullmatch(login_key(user)):
                    names.append(user)
        names.sort(key=login_key)
        return names

    async def count(self) -> int:
        n = 0
        async with contextlib.aclosing(self.iterate()) as users:
            async for _ in users:
                n += 1
        return n

    def data_version(self) -> int | None:
        return None

    async def ping(self) -> None:
        await self.db.ping()

    async def close(self) -> None:
        await self.db.close()

    # ------------------------------------------------------------------ writes

    async def set_password(self, uid: str, new: str, *, expected: str | None = None) -> bool:
        try:
            return await self._set_password(uid, new, expected=expected)
        finally:
            if self.cache is not None:
                self.cache.drop([uid])

    async def _set_password(self, uid: str, new: str, *, expected: str | None = None) -> bool:
        update = self.queries.update
        if update is None:
            raise WriteRefused(
                f"cannot store a password for {uid}: [sql] has no update_query "
                "(the tables are read with Dovecot's queries; see docs/sql.md)"
            )
        if expected is not None:
            current = await self._passdb(uid, variables_for(uid))
            if current is None or current[0].password != expected:
                return False
        values = {**variables_for(uid), "password": new}
        return await self.db.execute(update.bind(values)) > 0

    def _refuse(self, what: str) -> NoReturn:
        raise WriteRefused(
            f'cannot {what}: [sql] mode = "dovecot" reads the site\'s own tables and '
            "writes only passwords (through update_query); change accounts with the "
            "program that owns them"
        )

    async def create(self, account: Account) -> None:
        self._refuse(f"create {account.uid}")

    async def replace(self, account: Account) -> None:
        self._refuse(f"replace {account.uid}")

    async def update(self, uid: str, changes: Mapping[str, Any]) -> Account:
        self._refuse(f"change {uid}")

    async def modify(self, uid: str, change: Callable[[Account], Account]) -> Modified:
        self._refuse(f"change {uid}")

    async def delete(self, uid: str) -> bool:
        self._refuse(f"delete {uid}")

    async def record_app_password_uses(self, uses: Sequence[AppPasswordUsed]) -> None:
        # The site's tables have no app passwords (docs/sql.md): no login used one.
        self._refuse("record the use of app passwords")

    async def bulk_upsert(
        self, accounts: Iterable[Account], *, replace: bool, skip_refused: bool = False
    ) -> BulkReport:
        self._refuse("import accounts")

    # ------------------------------------------------------------------ helpers

    def _unavailable(self, query: str, why: str) -> DirectoryUnavailable:
        # A row the site's query returns wrongly fails every login alike: logged at
        # a bounded rate, and a temporary failure (never a wrong password).
        self._log.error(query, "sql %s: %s", query, why)
        return DirectoryUnavailable(f"sql {query}: {why}")


def _columns(row: Row) -> Columns:
    return columns(row.columns, row.values)


def _context_values(context: QueryContext | None) -> dict[str, str]:
    if context is None:
        return {}
    return {
        "service": context.service,
        "rip": context.remote_ip or "",
        "lip": context.local_ip or "",
        "rport": "" if context.remote_port is None else str(context.remote_port),
        "lport": "" if context.local_port is None else str(context.local_port),
    }


def _context_values_from(values: dict[str, str]) -> dict[str, str]:
    return {k: values[k] for k in ("service", "rip", "lip", "rport", "lport") if k in values}
