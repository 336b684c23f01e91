"""The own schema's statements, and the mapping between its rows and accounts.

Every query is an :class:`~mailwarden.directories.sql.dialect.Sql` rendered per
engine; the row layout and the JSON columns are the SQLite directory's
(:mod:`mailwarden.directories.sqlite.rows`: one mapping for both), with the
child rows (alternates, services, SSH keys, app passwords) aggregated to JSON in the same
statement, so that reading an account is always one query.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from mailwarden.directories.base import fingerprint_key, login_key
from mailwarden.directories.memory import address_logins
from mailwarden.directories.sql.database import Transaction
from mailwarden.directories.sql.dialect import Dialect, Param, Sql
from mailwarden.directories.sql.drivers import Row
from mailwarden.directories.sql.own.schema import MAX_LOGIN
from mailwarden.directories.sqlite.rows import account_from_row, account_row, app_password_rows
from mailwarden.errors import AccountExists, DirectoryUnavailable, InvalidAccount
from mailwarden.model import Account

COLUMNS = (
    "uid",
    "mail",
    "password",
    "status",
    "mail_host",
    "home",
    "mail_location",
    "uid_number",
    "gid_number",
    "quota_bytes",
    "quota_messages",
    "master",
    "allow_nets",
    "passdb_fields",
    "userdb_fields",
    "pgp_fingerprint",
    "profile",
    "dns_records",
    "app_passwords_only",
    "fingerprint_key",
)
APP_PASSWORD_COLUMNS = (
    "account_id",
    "position",
    "id",
    "name",
    "digest",
    "services",
    "expires",
    "created",
    "last_used",
    "last_service",
    "last_ip",
)
#: Rows per multi-row INSERT (PostgreSQL binds at most 32767 parameters).
INSERT_CHUNK = 500
#: Keys per ``IN (...)`` list.
IN_CHUNK = 500

LoginRow = tuple[str, str, str, str, int]  # login key, space, kind, name as given, position


def select_list(d: Dialect) -> str:
    """The columns :func:`account_from_row` reads, for an ``accounts AS a``."""
    if d.name == "postgresql":

        def agg(pair: str, source: str) -> str:
            return f"coalesce((SELECT json_agg(json_build_array({pair}))::text {source}), '[]')"
    else:

        def agg(pair: str, source: str) -> str:
            return f"coalesce((SELECT JSON_ARRAYAGG(JSON_ARRAY({pair})) {source}), '[]')"

    plain = ", ".join(f"a.{c}" for c in ("id", *COLUMNS[:-1]))
    return ", ".join(
        (
            plain,
            agg(
                "c.position, c.name",
                "FROM logins AS c WHERE c.account_id = a.id AND c.kind = 'alternate'",
            ),
            agg("s.name, s.enabled", "FROM services AS s WHERE s.account_id = a.id"),
            agg("k.position, k.ssh_key", "FROM ssh_keys AS k WHERE k.account_id = a.id"),
            agg(
                "p.position, p.id, p.name, p.digest, p.services, p.expires, p.created,"
                " p.last_used, p.last_service, p.last_ip",
                "FROM app_passwords AS p WHERE p.account_id = a.id",
            ),
        )
    )


def account_of(row: Row) -> Account:
    """The account in ``row``; DirectoryUnavailable if it does not decode (written by
    something else, or damaged: the data cannot be trusted, which is not a denial)."""
    try:
        return account_from_row(row.values)
    except (ValueError, TypeError, KeyError) as exc:
        raise DirectoryUnavailable(f"sql: malformed account data: {exc}") from exc


def storable(text: str) -> bool:
    """Whether ``text`` can be stored and compared in both engines: PostgreSQL
    refuses NUL characters, and neither engine takes lone surrogates. A login
    that is not storable matches no account (a query would fail instead)."""
    if "\x00" in text:
        return False
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def check_storable(account: Account) -> None:
    """InvalidAccount for a value the schema cannot hold (JSON columns escape them)."""
    texts = [v for v in values_of(account) if isinstance(v, str)]
    texts.extend(account.alternate_addresses)
    texts.extend(account.services)
    texts.extend(account.ssh_keys)
    texts.extend(app.name for app in account.app_passwords)
    for text in texts:
        if "\x00" in text:
            raise InvalidAccount("a NUL character cannot be stored in an SQL directory")


def values_of(account: Account) -> tuple[Any, ...]:
    """The :data:`COLUMNS` of a checked account."""
    key = fingerprint_key(account.pgp_fingerprint) if account.pgp_fingerprint else None
    return (*account_row(0, account)[1:], key)


def login_rows(account: Account) -> list[LoginRow]:
    """The ``logins`` rows of a checked account (InvalidAccount for an overlong login or
    any value the schema cannot hold: every write builds these first)."""
    check_storable(account)
    rows: list[LoginRow] = [(login_key(account.uid), "uid", "uid", account.uid, 0)]
    rows.extend(
        (key, "address", kind, name, position)
        for position, (key, kind, name) in enumerate(address_logins(account))
    )
    for key, _space, _kind, name, _pos in rows:
        if len(key) > MAX_LOGIN or len(name) > MAX_LOGIN:
            raise InvalidAccount(f"login {name[:40]!r}...: longer than {MAX_LOGIN} characters")
    for service in account.services:
        if len(service) > MAX_LOGIN:
            raise InvalidAccount(f"service name longer than {MAX_LOGIN} characters")
    if account.pgp_fingerprint and len(fingerprint_key(account.pgp_fingerprint)) > MAX_LOGIN:
        raise InvalidAccount(f"pgp_fingerprint: longer than {MAX_LOGIN} characters")
    return rows


def in_list(values: Sequence[Any]) -> list[str | Param]:
    """``(p1, p2, ...)`` as Sql parts (``values`` must not be empty)."""
    parts: list[str | Param] = ["("]
    for i, value in enumerate(values):
        parts.extend([", " if i else "", Param(value)])
    parts.append(")")
    return parts


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def multi_insert(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Sql:
    """One ``INSERT`` of several rows (identifiers are ours, values bound)."""
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608 - our names
    parts: list[str | Param] = [head]
    for i, row in enumerate(rows):
        parts.append(", " if i else "")
        parts.extend(in_list(row))
    return Sql(tuple(parts))


async def owners(tx: Transaction, keys: Sequence[str]) -> dict[tuple[str, str], tuple[int, str]]:
    """(login key, space) -> (account id, uid) for the stored ``keys``."""
    found: dict[tuple[str, str], tuple[int, str]] = {}
    for chunk in chunks(sorted(set(keys)), IN_CHUNK):
        rows = await tx.fetch(
            Sql.of(
                "SELECT l.login, l.space, l.account_id, a.uid FROM logins AS l"
                " JOIN accounts AS a ON a.id = l.account_id WHERE l.login IN ",
                *in_list(chunk),
            )
        )
        for row in rows:
            login, space, account_id, uid = row.values
            found[(login, space)] = (int(account_id), uid)
    return found


async def check_free(tx: Transaction, rows: Sequence[LoginRow], own_id: int | None) -> None:
    """AccountExists, naming the login and its owner, if another account holds one of
    ``rows`` (read in the write transaction; the unique index catches a race)."""
    taken = await owners(tx, [r[0] for r in rows])
    for key, space, _kind, name, _pos in rows:
        owner = taken.get((key, space))
        if owner is not None and owner[0] != own_id:
            if space == "uid":
                raise AccountExists(f"uid {name!r} already exists")
            raise AccountExists(f"address {name!r} already belongs to {owner[1]!r}")


async def insert_accounts(tx: Transaction, dialect: Dialect, accounts: Sequence[Account]) -> None:
    """Insert checked accounts whose logins are free (DuplicateKey on a race)."""
    ids: dict[str, int] = {}
    for chunk in chunks(accounts, INSERT_CHUNK):
        query = multi_insert("accounts", COLUMNS, [values_of(a) for a in chunk])
        rows = await tx.fetch(Sql((*query.parts, " RETURNING id, uid")))
        ids.update((login_key(row.values[1]), int(row.values[0])) for row in rows)
    await insert_children(tx, [(ids[login_key(a.uid)], a) for a in accounts])


async def insert_children(
    tx: Transaction, accounts: Sequence[tuple[int, Account]], *, logins: bool = True
) -> None:
    """The ``services``, ``ssh_keys`` and ``app_passwords`` rows (and with ``logins``,
    the ``logins`` rows) of accounts whose ``accounts`` row has the given id."""
    login_values: list[tuple[Any, ...]] = []
    services: list[tuple[Any, ...]] = []
    keys: list[tuple[Any, ...]] = []
    apps: list[tuple[Any, ...]] = []
    for account_id, account in accounts:
        if logins:
            login_values.extend(
                (key, space, kind, account_id, name, pos)
                for key, space, kind, name, pos in login_rows(account)
            )
        services.extend((account_id, name, int(on)) for name, on in account.services.items())
        keys.extend((account_id, i, key) for i, key in enumerate(account.ssh_keys))
        apps.extend(app_password_rows(account_id, account))
    tables = (
        ("logins", ("login", "space", "kind", "account_id", "name", "position"), login_values),
        ("services", ("account_id", "name", "enabled"), services),
        ("ssh_keys", ("account_id", "position", "ssh_key"), keys),
        ("app_passwords", APP_PASSWORD_COLUMNS, apps),
    )
    for table, columns, rows in tables:
        for chunk in chunks(rows, INSERT_CHUNK * 2):
            await tx.execute(multi_insert(table, columns, chunk))


async def rewrite(tx: Transaction, account_id: int, account: Account) -> None:
    """Overwrite the stored account ``account_id`` in place.

    The id stays, and so do the ``logins`` rows whose login stays (they are
    updated, not deleted and inserted again): a writer waiting for the lock on
    the account's uid row (PostgreSQL re-reads a locked row once it is free, and
    skips it if it was deleted) then still finds the account."""
    parts: list[str | Param] = ["UPDATE accounts SET "]
    for i, (column, value) in enumerate(zip(COLUMNS, values_of(account), strict=True)):
        parts.extend([", " if i else "", f"{column} = ", Param(value)])
    parts.extend([" WHERE id = ", Param(account_id)])
    await tx.execute(Sql(tuple(parts)))
    await _rewrite_logins(tx, account_id, login_rows(account))
    for table in ("services", "ssh_keys", "app_passwords"):
        await tx.execute(Sql.of(f"DELETE FROM {table} WHERE account_id = ", Param(account_id)))  # noqa: S608
    await insert_children(tx, [(account_id, account)], logins=False)


async def _rewrite_logins(tx: Transaction, account_id: int, rows: Sequence[LoginRow]) -> None:
    stored = await tx.fetch(
        Sql.of(
            "SELECT login, space, kind, name, position FROM logins WHERE account_id = ",
            Param(account_id),
        )
    )
    old = {(r.values[0], r.values[1]): (r.values[2], r.values[3], int(r.values[4])) for r in stored}
    new = {(key, space): (kind, name, pos) for key, space, kind, name, pos in rows}
    for key, space in sorted(set(old) - set(new)):
        await tx.execute(
            Sql.of(
                "DELETE FROM logins WHERE login = ",
                Param(key),
                " AND space = ",
                Param(space),
                " AND account_id = ",
                Param(account_id),
            )
        )
    for (key, space), (kind, name, pos) in sorted(new.items()):
        if (key, space) not in old:
            await tx.execute(
                multi_insert(
                    "logins",
                    ("login", "space", "kind", "account_id", "name", "position"),
                    [(key, space, kind, account_id, name, pos)],
                )
            )
        elif old[(key, space)] != (kind, name, pos):
            await tx.execute(
                Sql.of(
                    "UPDATE logins SET kind = ",
                    Param(kind),
                    ", name = ",
                    Param(name),
                    ", position = ",
                    Param(pos),
                    " WHERE login = ",
                    Param(key),
                    " AND space = ",
                    Param(space),
                    " AND account_id = ",
                    Param(account_id),
                )
            )
