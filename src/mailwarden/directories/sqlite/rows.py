"""SQL statements and the mapping between rows and :class:`~mailwarden.model.Account`,
and the insert of checked accounts (with the login clash it may hit). Runs on the
directory's threads; nothing here awaits.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from mailwarden.accounts.rules import check_account
from mailwarden.directories.base import (
    ALL_LOGIN_ATTRIBUTES,
    BulkReport,
    LoginAttribute,
    login_key,
)
from mailwarden.directories.bulk import (
    settle_batch,
    settle_existing,
    without_refused,
    write_one_by_one,
)
from mailwarden.directories.memory import (
    address_logins,
)
from mailwarden.errors import (
    AccountExists,
    DirectoryUnavailable,
    InvalidAccount,
    MailwardenError,
)
from mailwarden.model import Account, AccountStatus, AppPassword, LastUse, Listed, Profile

T = TypeVar("T")

INSERT_ACCOUNT = """INSERT INTO accounts (
    id, uid, mail, password, status, mail_host, home, mail_location, uid_number, gid_number,
    quota_bytes, quota_messages, master, allow_nets, passdb_fields, userdb_fields,
    pgp_fingerprint, profile, dns_records, app_passwords_only
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_LOGIN = (
    "INSERT INTO logins (login, space, kind, account_id, name, position) VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_SERVICE = "INSERT INTO services (account_id, name, enabled) VALUES (?, ?, ?)"
INSERT_SSH_KEY = "INSERT INTO ssh_keys (account_id, position, key) VALUES (?, ?, ?)"
INSERT_APP_PASSWORD = """INSERT INTO app_passwords (account_id, position, id, name, digest,
    services, expires, created, last_used, last_service, last_ip)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""  # noqa: S105 - a statement
# The last use of one app password, in place (Directory.record_app_password_uses).
RECORD_USE = """UPDATE app_passwords SET last_used = ?, last_service = ?, last_ip = ?
    WHERE id = ?
    AND account_id = (SELECT account_id FROM logins WHERE login = ? AND space = 'uid')"""

# Logins are stored lower-cased, so '= ?' with a lower-cased key is the whole
# case-insensitive match and stays on the primary key.
FIND = """SELECT v.* FROM logins AS l JOIN account_rows AS v ON v.id = l.account_id
    WHERE l.login = ? AND l.kind IN (?, ?, ?) ORDER BY l.space = 'uid' DESC LIMIT 1"""
SELECT_UID_ID = "SELECT account_id FROM logins WHERE login = ? AND space = 'uid'"
# The WHERE expression is _FINGERPRINT_KEY exactly, so the index serves it.
BY_FINGERPRINT = """SELECT v.* FROM accounts AS a JOIN account_rows AS v ON v.id = a.id
    WHERE upper(replace(a.pgp_fingerprint, ' ', '')) = ? ORDER BY v.uid"""
# Any accounts, the cheapest to read (Directory.sample).
SAMPLE = "SELECT v.* FROM account_rows AS v LIMIT ?"
SEARCH = """SELECT v.* FROM logins AS l JOIN account_rows AS v ON v.id = l.account_id
    WHERE l.space = 'uid' AND l.account_id IN (SELECT account_id FROM logins WHERE login GLOB ?)
    ORDER BY l.login LIMIT ?"""
# A page of an account list (Directory.listing), by uid key after the last page's;
# the pattern is a GLOB over every login of the account, as in SEARCH.
LISTING = """SELECT l.login, a.uid, a.mail, a.status, a.mail_host,
    (SELECT json_group_array(s.name) FROM services AS s
        WHERE s.account_id = a.id AND NOT s.enabled) AS off
    FROM logins AS l JOIN accounts AS a ON a.id = l.account_id
    WHERE l.space = 'uid' AND l.login > ?1
    AND (?2 = '*' OR l.account_id IN (SELECT account_id FROM logins WHERE login GLOB ?2))
    ORDER BY l.login LIMIT ?3"""
ITERATE = """SELECT l.login, a.uid FROM logins AS l JOIN accounts AS a ON a.id = l.account_id
    WHERE l.space = 'uid' AND l.login > ?1 ORDER BY l.login LIMIT ?2"""
OWNER = """SELECT a.id, a.uid FROM logins AS l JOIN accounts AS a ON a.id = l.account_id
    WHERE l.login = ? AND l.space = ?"""
# The ids of the accounts with these uids: one statement for a whole batch.
UID_IDS = """SELECT j.value, l.account_id FROM json_each(?) AS j
    JOIN logins AS l ON l.login = j.value AND l.space = 'uid'"""
# Whole accounts by uid key, a batch in one statement (get_many); the key comes first.
GET_MANY = """SELECT l.login, v.* FROM json_each(?) AS j
    JOIN logins AS l ON l.login = j.value AND l.space = 'uid'
    JOIN account_rows AS v ON v.id = l.account_id"""
NEXT_ID = "SELECT coalesce(max(id), 0) + 1 FROM accounts"
# Compare-and-swap in one statement: the stored value is tested where it is written.
SWAP_HASH = """UPDATE accounts SET password = ?
    WHERE id = (SELECT account_id FROM logins WHERE login = ? AND space = 'uid')
    AND (? IS NULL OR password = ?)"""
DELETE = """DELETE FROM accounts
    WHERE id = (SELECT account_id FROM logins WHERE login = ? AND space = 'uid')"""

ITERATE_PAGE = 1000


def glob_pattern(pattern: str) -> str:
    # GLOB's only other special character is '['; '*' and '?' mean what our pattern says.
    return login_key(pattern).replace("[", "[[]")


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def account_row(account_id: int, account: Account) -> tuple[Any, ...]:
    return (
        account_id,
        account.uid,
        account.mail,
        account.password,
        account.status.value,
        account.mail_host,
        account.home,
        account.mail_location,
        account.uid_number,
        account.gid_number,
        account.quota_bytes,
        account.quota_messages,
        int(account.master),
        dumps(list(account.allow_nets)) if account.allow_nets else "[]",
        dumps(dict(account.passdb_fields)) if account.passdb_fields else "{}",
        dumps(dict(account.userdb_fields)) if account.userdb_fields else "{}",
        account.pgp_fingerprint,
        dumps(account.profile.as_dict()),
        dumps(list(account.dns_records)) if account.dns_records else "[]",
        int(account.app_passwords_only),
    )


def app_password_rows(account_id: int, account: Account) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for position, app in enumerate(sorted(account.app_passwords, key=lambda app: app.order)):
        use = app.last_used
        rows.append(
            (
                account_id,
                position,
                app.id,
                app.name,
                app.digest,
                dumps(list(app.services)),
                app.expires,
                app.created,
                None if use is None else use.at,
                None if use is None else use.service,
                None if use is None else use.remote_ip,
            )
        )
    return rows


def app_passwords(text: str) -> tuple[AppPassword, ...]:
    """The ``apps`` column of ``account_rows`` as the account's app passwords, in order."""
    if text == "[]":
        return ()
    out: list[AppPassword] = []
    for row in sorted(json.loads(text)):
        _pos, app_id, name, digest, services, expires, created, at, service, ip = row
        out.append(
            AppPassword(
                id=app_id,
                name=name,
                digest=digest,
                services=tuple(json.loads(services)),
                expires=expires,
                created=created,
                last_used=None if at is None else LastUse(at=at, service=service, remote_ip=ip),
            )
        )
    return tuple(out)


# Most accounts have no children and empty JSON columns; find() skips decoding them.
STATUS = {status.value: status for status in AccountStatus}
_NO_FIELDS: Mapping[str, str] = MappingProxyType({})
_NO_SERVICES: Mapping[str, bool] = MappingProxyType({})


def pairs(text: str) -> list[list[Any]]:
    if text == "[]":
        return []
    value: list[list[Any]] = json.loads(text)
    return value


def fields(text: str) -> Mapping[str, str]:
    return _NO_FIELDS if text == "{}" else MappingProxyType(json.loads(text))


def listed_from_row(row: Sequence[Any]) -> Listed:
    """A :data:`LISTING` row (after its key column) as the value a list shows."""
    _key, uid, mail, status, mail_host, off = row
    return Listed(
        uid=uid,
        mail=mail,
        status=STATUS[status],
        mail_host=mail_host,
        services_off=() if off == "[]" else tuple(sorted(json.loads(off))),
    )


def account_from_row(row: Sequence[Any]) -> Account:
    (
        _id,
        uid,
        mail,
        password,
        status,
        mail_host,
        home,
        mail_location,
        uid_number,
        gid_number,
        quota_bytes,
        quota_messages,
        master,
        allow_nets,
        passdb_fields,
        userdb_fields,
        pgp_fingerprint,
        profile,
        dns_records,
        apps_only,
        alternates,
        services,
        ssh_keys,
        apps,
    ) = row
    return Account(
        uid=uid,
        mail=mail,
        alternate_addresses=tuple(name for _pos, name in sorted(pairs(alternates))),
        password=password,
        status=STATUS[status],
        services=(
            MappingProxyType({name: bool(on) for name, on in pairs(services)})
            if services != "[]"
            else _NO_SERVICES
        ),
        mail_host=mail_host,
        home=home,
        mail_location=mail_location,
        uid_number=uid_number,
        gid_number=gid_number,
        quota_bytes=quota_bytes,
        quota_messages=quota_messages,
        master=bool(master),
        allow_nets=() if allow_nets == "[]" else tuple(json.loads(allow_nets)),
        passdb_fields=fields(passdb_fields),
        userdb_fields=fields(userdb_fields),
        pgp_fingerprint=pgp_fingerprint,
        ssh_keys=tuple(key for _pos, key in sorted(pairs(ssh_keys))),
        dns_records=() if dns_records == "[]" else tuple(json.loads(dns_records)),
        profile=Profile(**json.loads(profile)) if profile != "{}" else Profile(),
        app_passwords=app_passwords(apps),
        app_passwords_only=bool(apps_only),
    )


def read_error(path: Path, exc: Exception) -> DirectoryUnavailable:
    """A failed read, naming the file: a sqlite3 error, or a row that does not decode
    (written by something else, or a damaged file: the data cannot be trusted, which
    is not a denial)."""
    if isinstance(exc, sqlite3.Error):
        return DirectoryUnavailable(f"{path}: {exc}")
    return DirectoryUnavailable(f"{path}: malformed account data: {exc}")


def settle_finds(
    chunk: list[tuple[tuple[str, ...], asyncio.Future[Account | None]]],
    work: asyncio.Future[list[Account | DirectoryUnavailable | None]],
) -> None:
    """Hand each waiting find its answer (or the chunk's failure)."""
    if work.cancelled():
        for _, future in chunk:
            future.cancel()
        return
    failed = work.exception()
    answers = work.result() if failed is None else [failed] * len(chunk)
    for (_, future), answer in zip(chunk, answers, strict=True):
        if future.done():  # its caller was cancelled meanwhile
            continue
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)


def login_kinds(by: Sequence[LoginAttribute]) -> tuple[str, ...]:
    """The three ``kind`` parameters of FIND for ``by`` (always three, so that there is
    one statement to cache), or () when ``by`` names none."""
    kinds = [kind for kind in ALL_LOGIN_ATTRIBUTES if kind in by]
    return (*kinds, *[kinds[0]] * (3 - len(kinds))) if kinds else ()


KIND_MEMO: dict[tuple[str, ...], tuple[str, ...]] = {}


def accounts_by_uid(conn: sqlite3.Connection, *, keys: list[str]) -> list[Account]:
    """The accounts with these uid keys, in their order (get_many: one statement)."""
    found = {
        row[0]: account_from_row(row[1:])
        for row in conn.execute(GET_MANY, (json.dumps(keys),)).fetchall()
    }
    return [found[key] for key in keys if key in found]


def uid_id(conn: sqlite3.Connection, key: str) -> int | None:
    row = conn.execute(SELECT_UID_ID, (key,)).fetchone()
    return None if row is None else int(row[0])


def insert(conn: sqlite3.Connection, accounts: Sequence[Account]) -> None:
    """Insert checked accounts whose uids are free; AccountExists on a login clash.

    One executemany per table: a bulk import costs a few statements, not a few
    per account. Ids are given here so that child rows can be built up front.
    """
    if not accounts:
        return
    first: int = conn.execute(NEXT_ID).fetchone()[0]
    account_rows: list[tuple[Any, ...]] = []
    login_rows: list[tuple[str, str, str, int, str, int]] = []
    service_rows: list[tuple[int, str, int]] = []
    key_rows: list[tuple[int, int, str]] = []
    app_rows: list[tuple[Any, ...]] = []
    for account_id, account in enumerate(accounts, first):
        account_rows.append(account_row(account_id, account))
        login_rows.append((login_key(account.uid), "uid", "uid", account_id, account.uid, 0))
        for position, (key, kind, name) in enumerate(address_logins(account)):
            login_rows.append((key, "address", kind, account_id, name, position))
        service_rows.extend((account_id, name, int(on)) for name, on in account.services.items())
        key_rows.extend((account_id, i, key) for i, key in enumerate(account.ssh_keys))
        if account.app_passwords:
            app_rows.extend(app_password_rows(account_id, account))
    conn.executemany(INSERT_ACCOUNT, account_rows)
    try:
        conn.executemany(INSERT_LOGIN, login_rows)
    except sqlite3.IntegrityError as exc:
        raise clash(conn, login_rows, exc) from exc
    conn.executemany(INSERT_SERVICE, service_rows)
    conn.executemany(INSERT_SSH_KEY, key_rows)
    if app_rows:
        conn.executemany(INSERT_APP_PASSWORD, app_rows)


def clash(
    conn: sqlite3.Connection,
    login_rows: Iterable[tuple[str, str, str, int, str, int]],
    exc: sqlite3.IntegrityError,
) -> MailwardenError:
    """Name the login that made an insert of ``login_rows`` fail.

    The rows before the failing one are in the table and belong to their own
    accounts, so the first row whose login another account holds is the culprit.
    """
    for key, space, _kind, account_id, name, _position in login_rows:
        owner = conn.execute(OWNER, (key, space)).fetchone()
        if owner is not None and owner[0] != account_id:
            if space == "uid":
                return AccountExists(f"uid {name!r} already exists")
            return AccountExists(f"address {name!r} already belongs to {owner[1]!r}")
    return InvalidAccount(f"refused by the database: {exc}")


def upsert_chunk(
    conn: sqlite3.Connection, chunk: list[Account], *, replace: bool, skip_refused: bool
) -> BulkReport:
    batch, report = settle_batch(
        chunk, replace=replace, check=check_account, skip_invalid=skip_refused
    )
    existing = dict(conn.execute(UID_IDS, (json.dumps(list(batch)),)).fetchall())
    report, obsolete = settle_existing(batch, existing, report, replace=replace)
    conn.execute("SAVEPOINT bulk")
    try:
        conn.executemany("DELETE FROM accounts WHERE id = ?", [(i,) for i in obsolete])
        insert(conn, list(batch.values()))
    except AccountExists:
        conn.execute("ROLLBACK TO bulk")
        conn.execute("RELEASE bulk")
        if not skip_refused:
            raise
        return insert_each(conn, batch, existing, report, replace=replace)
    conn.execute("RELEASE bulk")
    return report


def insert_each(
    conn: sqlite3.Connection,
    batch: dict[str, Account],
    existing: Mapping[str, int],
    report: BulkReport,
    *,
    replace: bool,
) -> BulkReport:
    """bulk_upsert's slow path for skip_refused: one savepoint per account, in the
    same transaction, so a clashing account leaves nothing behind."""
    replacing = set(existing) if replace else set()

    def write_one(key: str, account: Account, replaces: bool) -> None:
        conn.execute("SAVEPOINT one")
        try:
            if replaces:
                conn.execute("DELETE FROM accounts WHERE id = ?", (existing[key],))
            insert(conn, [account])
        except AccountExists:
            conn.execute("ROLLBACK TO one")
            raise
        finally:
            conn.execute("RELEASE one")

    refused = write_one_by_one(batch, replacing, write_one)
    return without_refused(report, refused, replacing)
