"""The SQL directory in Dovecot-style mode against real PostgreSQL and MariaDB: the
Postfix Admin schema and queries, Dovecot's column rules, bound variables, writes."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mailwarden.accounts.edit import AccountAdmin
from mailwarden.app import build_engine
from mailwarden.config import SqlConfig
from mailwarden.directories.base import QueryContext
from mailwarden.directories.sql import Database
from mailwarden.directories.sql.dovecot import DovecotSqlDirectory
from mailwarden.errors import DirectoryUnavailable, WriteRefused
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Accepted, Account, Denied, DenyReason, Unavailable, UserRecord
from tests.helpers import attempt, make_config
from tests.sqlservers import SqlServer

pytestmark = pytest.mark.peer

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "postfixadmin"

# Postfix Admin's DOCUMENTS/DOVECOT.txt queries, per engine.
PFA_PASSWORD = "SELECT username AS user,password FROM mailbox WHERE username = '%u' AND active='1'"
PFA_USER = {
    "postgresql": "SELECT '/var/mail/vmail/' || maildir AS home, 1001 AS uid, 1001 AS gid, "
    "'*:bytes=' || quota AS quota_rule FROM mailbox WHERE username = '%u' AND active='1'",
    "mariadb": "SELECT CONCAT('/var/mail/vmail/', maildir) AS home, 1001 AS uid, 1001 AS gid, "
    "CONCAT('*:bytes=', quota) AS quota_rule FROM mailbox WHERE username = '%u' AND active='1'",
}
PFA_ITERATE = "SELECT username as user FROM mailbox WHERE active = '1'"


def postfixadmin(server: SqlServer, database: str) -> None:
    schema = "schema-pgsql.sql" if server.name == "postgresql" else "schema-mysql.sql"
    server.run_sql((EXAMPLES / schema).read_text(), database)
    server.run_sql((EXAMPLES / "sample-data.sql").read_text(), database)


@pytest.fixture
async def pfa(
    sql_server: SqlServer, sql_database: str, sql_config: SqlConfig
) -> AsyncIterator[DovecotSqlDirectory]:
    postfixadmin(sql_server, sql_database)
    config = dataclasses.replace(
        sql_config,
        mode="dovecot",
        default_pass_scheme="SHA512-CRYPT",
        password_query=PFA_PASSWORD,
        user_query=PFA_USER[sql_server.name],
        iterate_query=PFA_ITERATE,
        update_query="UPDATE mailbox SET password = '%w' WHERE username = '%u'",
    )
    directory = DovecotSqlDirectory(await Database.open(config), config)
    yield directory
    await directory.close()


async def authenticate(directory: Any, user: str, password: str, **kw: Any) -> Any:
    config = make_config(passwords={"scheme": "SHA512-CRYPT", "rehash": "never"})
    hasher = Hasher(workers=1, processes=False)
    try:
        engine = build_engine(config, directory=directory, hasher=hasher)
        return await engine.authenticate(attempt(user, password, **kw))
    finally:
        hasher.close()


@pytest.mark.parametrize(
    "user",
    ["crypt6@example.com", "sha512@example.com", "blf@example.com", "md5crypt@example.com"],
)
async def test_every_postfixadmin_hash_form_verifies(pfa: DovecotSqlDirectory, user: str) -> None:
    outcome = await authenticate(pfa, user, "test123")
    assert isinstance(outcome, Accepted), outcome
    assert outcome.user == user
    wrong = await authenticate(pfa, user, "test124")
    assert isinstance(wrong, Denied) and wrong.reason is DenyReason.CREDENTIALS


async def test_postfixadmin_userdb_fields_are_dovecots(pfa: DovecotSqlDirectory) -> None:
    account = await pfa.find("crypt6@example.com")
    assert account is not None
    assert account.home == "/var/mail/vmail/example.com/crypt6/"
    assert (account.uid_number, account.gid_number, account.quota_bytes) == (1001, 1001, 1024000)
    userdb = await pfa.find("crypt6@example.com", context=QueryContext(userdb=True))
    assert userdb is not None and userdb.password == ""
    assert userdb.home == account.home


async def test_an_inactive_mailbox_is_an_unknown_user(pfa: DovecotSqlDirectory) -> None:
    assert await pfa.find("away@example.com") is None
    outcome = await authenticate(pfa, "away@example.com", "test123")
    assert isinstance(outcome, Denied) and outcome.reason is DenyReason.CREDENTIALS


async def test_iterate_streams_the_active_mailboxes(pfa: DovecotSqlDirectory) -> None:
    users = sorted([u async for u in pfa.iterate()])
    assert users == sorted(
        ["crypt6@example.com", "sha512@example.com", "blf@example.com", "md5crypt@example.com"]
    )
    assert await pfa.count() == 4
    assert [a.uid for a in await pfa.search("blf*")] == ["blf@example.com"]
    # In uid order, as every directory searches, the limit taken after the ordering
    # (iterate_query's own order starts with crypt6 and sha512).
    assert [a.uid for a in await pfa.search("*", limit=2)] == [
        "blf@example.com",
        "crypt6@example.com",
    ]
    assert [item.uid async for item in pfa.listing("*e*")] == [
        "blf@example.com",
        "crypt6@example.com",
        "md5crypt@example.com",
        "sha512@example.com",
    ]


async def test_a_username_with_quotes_backslashes_and_percent_is_just_data(
    pfa: DovecotSqlDirectory, sql_server: SqlServer, sql_database: str
) -> None:
    odd = "o'b\\r%u_n'--@example.com"
    sql_server.run_sql(
        "INSERT INTO mailbox (username, password, maildir, local_part, domain, active) "
        "VALUES ('x@example.com', '$1$c9809462$fC8eUPU2lq7arWRvxChMu1', 'x/', 'x', "
        "'example.com', '1');",
        sql_database,
    )
    # A name that would match everything if it were pasted into the query:
    assert await pfa.find("' OR '1'='1") is None
    assert await pfa.find("x@example.com' --") is None
    assert await pfa.find(odd) is None
    assert (await pfa.find("x@example.com")) is not None


async def test_password_changes_go_through_update_query_and_other_writes_are_refused(
    pfa: DovecotSqlDirectory,
) -> None:
    before = await pfa.find("blf@example.com")
    assert before is not None
    assert await pfa.set_password("blf@example.com", "{PLAIN}new", expected="{PLAIN}x") is False
    assert await pfa.set_password("blf@example.com", "{PLAIN}new", expected=before.password)
    assert isinstance(await authenticate(pfa, "blf@example.com", "new"), Accepted)
    with pytest.raises(WriteRefused):
        await pfa.create(Account(uid="new@example.com"))
    with pytest.raises(WriteRefused):
        await pfa.delete("blf@example.com")
    with pytest.raises(WriteRefused):
        await pfa.update("blf@example.com", {"home": "/x"})


async def test_app_passwords_cannot_be_stored_and_the_refusal_says_so(
    pfa: DovecotSqlDirectory,
) -> None:
    config = make_config(passwords={"scheme": "SHA512-CRYPT", "rehash": "never"})
    hasher = Hasher(workers=1, processes=False)
    try:
        engine = build_engine(config, directory=pfa, hasher=hasher)
        admin = AccountAdmin(
            directory=pfa, hasher=hasher, engine=engine, default_scheme="SHA512-CRYPT"
        )
        with pytest.raises(WriteRefused, match="cannot store app passwords"):
            await admin.add_app_password("blf@example.com", name="phone")
        with pytest.raises(WriteRefused, match="cannot store app passwords"):
            await admin.set_app_passwords_only("blf@example.com", True)
    finally:
        hasher.close()
    found = await pfa.find("blf@example.com")
    assert found is not None and found.app_passwords == ()


async def test_without_update_query_a_password_change_is_refused(
    pfa: DovecotSqlDirectory,
) -> None:
    config = dataclasses.replace(pfa.config, update_query="")
    directory = DovecotSqlDirectory(pfa.db, config)
    with pytest.raises(WriteRefused, match="update_query"):
        await directory.set_password("blf@example.com", "{PLAIN}x")


# ------------------------------------------------------------ Dovecot's column rules


@pytest.fixture
async def users_table(
    sql_server: SqlServer, sql_database: str, sql_config: SqlConfig
) -> AsyncIterator[tuple[SqlServer, str, SqlConfig]]:
    sql_server.run_sql(
        "CREATE TABLE users (username VARCHAR(100) PRIMARY KEY, domain VARCHAR(100), "
        "password VARCHAR(200), home VARCHAR(200), nets VARCHAR(100), flags VARCHAR(20));"
        "INSERT INTO users VALUES ('alice', 'example.org', '{PLAIN}pw', '/home/alice', "
        "'10.0.0.0/8, 192.0.2.1', 'x');"
        "INSERT INTO users VALUES ('nopw', 'example.org', NULL, '/home/nopw', NULL, NULL);"
        "INSERT INTO users VALUES ('bare', 'example.org', 'pw', NULL, NULL, NULL);"
        "INSERT INTO users VALUES ('twice', 'a.org', '{PLAIN}pw', NULL, NULL, NULL);"
        "INSERT INTO users VALUES ('twice2', 'a.org', '{PLAIN}pw', NULL, NULL, NULL);",
        sql_database,
    )
    yield sql_server, sql_database, sql_config


async def directory_with(config: SqlConfig, **queries: Any) -> DovecotSqlDirectory:
    config = dataclasses.replace(config, mode="dovecot", **queries)
    return DovecotSqlDirectory(await Database.open(config), config)


async def test_extra_columns_map_as_dovecot_maps_them(
    users_table: tuple[SqlServer, str, SqlConfig],
) -> None:
    _, _, config = users_table
    d = await directory_with(
        config,
        password_query="SELECT username, domain, password, nets AS allow_nets, "
        "'Y' AS nologin, 'moved' AS reason, home AS userdb_home, "
        "'maildir:~/M' AS userdb_mail, NULL AS userdb_quota_rule "
        "FROM users WHERE username = '%n' AND domain = '%d'",
        user_query="SELECT '/never' AS home FROM users WHERE username = '%n'",
    )
    try:
        account = await d.find("alice@example.org")
        assert account is not None
        assert account.uid == "alice@example.org"
        assert account.password == "{PLAIN}pw"
        assert account.allow_nets == ("10.0.0.0/8", "192.0.2.1")
        assert dict(account.passdb_fields) == {"nologin": "Y", "reason": "moved"}
        # userdb_* columns are prefetch: the user query is not run.
        assert (account.home, account.mail_location) == ("/home/alice", "maildir:~/M")
        outcome = await authenticate(d, "alice@example.org", "pw", remote_ip="10.1.2.3")
        assert isinstance(outcome, Accepted)
        assert "nologin" in outcome.passdb_fields
        refused = await authenticate(d, "alice@example.org", "pw", remote_ip="203.0.113.1")
        assert isinstance(refused, Denied) and refused.reason is DenyReason.NETWORK
    finally:
        await d.close()


async def test_null_passwords_default_schemes_and_nopassword(
    users_table: tuple[SqlServer, str, SqlConfig],
) -> None:
    _, _, config = users_table
    d = await directory_with(
        config,
        default_pass_scheme="plain",
        password_query="SELECT username, domain, password FROM users WHERE username = '%n'",
        user_query="",
    )
    try:
        nopw = await d.find("nopw@example.org")
        assert nopw is not None and nopw.password == ""
        assert isinstance(await authenticate(d, "nopw@example.org", ""), Denied)
        bare = await d.find("bare@example.org")
        assert bare is not None and bare.password == "{PLAIN}pw"
        assert isinstance(await authenticate(d, "bare@example.org", "pw"), Accepted)
    finally:
        await d.close()
    sql_verified = await directory_with(
        config,
        password_query="SELECT username, domain, NULL AS password, 'Y' AS nopassword "
        "FROM users WHERE username = '%n' AND password = CONCAT('{PLAIN}', '%w')".replace(
            "%w", "pw"
        ),
        user_query="",
    )
    try:
        outcome = await authenticate(sql_verified, "alice@example.org", "anything")
        assert isinstance(outcome, Accepted)
    finally:
        await sql_verified.close()


async def test_renames_by_user_username_and_domain_columns(
    users_table: tuple[SqlServer, str, SqlConfig],
) -> None:
    _, _, config = users_table
    d = await directory_with(
        config,
        password_query="SELECT password, 'Renamed' AS username FROM users WHERE username = '%n'",
        user_query="",
    )
    try:
        account = await d.find("alice@example.org")
        assert account is not None and account.uid == "Renamed@example.org"
    finally:
        await d.close()


async def test_two_rows_or_no_password_column_are_temporary_failures(
    users_table: tuple[SqlServer, str, SqlConfig],
) -> None:
    _, _, config = users_table
    two = await directory_with(
        config,
        password_query="SELECT password FROM users WHERE domain = '%d'",
        user_query="",
    )
    nopass = await directory_with(
        config, password_query="SELECT username FROM users WHERE username = '%n'", user_query=""
    )
    try:
        with pytest.raises(DirectoryUnavailable, match="multiple"):
            await two.find("twice@a.org")
        with pytest.raises(DirectoryUnavailable, match="password"):
            await nopass.find("alice@example.org")
        outcome = await authenticate(two, "twice@a.org", "pw")
        assert isinstance(outcome, Unavailable)
    finally:
        await two.close()
        await nopass.close()


async def test_service_and_ip_variables_come_from_the_login(
    users_table: tuple[SqlServer, str, SqlConfig],
) -> None:
    _, _, config = users_table
    d = await directory_with(
        config,
        password_query="SELECT password FROM users WHERE username = '%n' "
        "AND '%s' = 'imap' AND '%{rip}' = '192.0.2.9' AND '%l' = '192.0.2.1'",
        user_query="",
    )
    try:
        ok = await authenticate(
            d,
            "alice@example.org",
            "pw",
            service="imap",
            remote_ip="192.0.2.9",
            local_ip="192.0.2.1",
        )
        assert isinstance(ok, Accepted)
        other = await authenticate(
            d,
            "alice@example.org",
            "pw",
            service="smtp",
            remote_ip="192.0.2.9",
            local_ip="192.0.2.1",
        )
        assert isinstance(other, Denied)
    finally:
        await d.close()


async def test_a_lookup_runs_the_user_query_only(
    users_table: tuple[SqlServer, str, SqlConfig],
) -> None:
    _, _, config = users_table
    d = await directory_with(
        config,
        password_query="SELECT password FROM no_such_table WHERE u = '%u'",
        user_query="SELECT home, 5000 AS uid, 'root' AS gid FROM users WHERE username = '%n'",
    )
    try:
        config_ = make_config(passwords={"scheme": "SHA512-CRYPT"})
        hasher = Hasher(workers=1, processes=False)
        engine = build_engine(config_, directory=d, hasher=hasher)
        found = await engine.lookup("alice@example.org", service="imap")
        hasher.close()
        assert isinstance(found, UserRecord)
        assert found.fields == {"home": "/home/alice", "uid": "5000", "gid": "0"}
    finally:
        await d.close()
