"""Differential test: Dovecot 2.3's own ``sql`` passdb/userdb and mailwarden's SQL
directory in Dovecot-style mode, with the same queries, on the same database.

The database holds Postfix Admin's tables (docs/examples/postfixadmin, with
``mailbox.password`` made nullable for the NULL-password case) and 200 generated
mailboxes whose passwords are stored in the forms Postfix Admin and Dovecot use
(bare ``$6$`` and ``$1$`` under ``default_pass_scheme = SHA512-CRYPT``,
``{SHA512-CRYPT}``, ``{BLF-CRYPT}``, ``{PLAIN}``, ``{SSHA256}``), plus the edge
cases: an inactive mailbox, a mailbox of an inactive domain, a NULL password,
bare hashes, a username with a quote, an unknown user, a hash with an unknown
scheme, and a bare hex MD5 that SHA512-CRYPT cannot read.

One ``dovecot-sql.conf.ext`` is written; a private Dovecot (auth service only,
``auth_username_chars`` empty so that a quote may reach SQL) reads it as passdb and
userdb, and mailwarden reads the ``[sql]`` section that ``import dovecot-sql-conf``
makes of the same file. For every account, with its password and with a wrong one,
Dovecot's answer on its auth-client socket (a PLAIN ``AUTH``, as ``doveadm auth
test`` sends it) and the engine's decision must agree (ok, failed, temporary
failure); for every name, Dovecot's auth-userdb ``USER`` answer (``doveadm user``)
and the engine's userdb lookup must give the same fields. Both engines:
PostgreSQL and MariaDB (Dovecot's pgsql and mysql drivers).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import shutil
import socket
import string
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailwarden import config as config_mod
from mailwarden import schemes
from mailwarden.app import build_engine
from mailwarden.auth.engine import Engine
from mailwarden.directories.sql import Database
from mailwarden.directories.sql.dovecot import DovecotSqlDirectory
from mailwarden.directories.sql.dovecotconf import convert
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Accepted, Denied, NotFound, Unavailable, UserRecord
from tests.helpers import attempt, make_config
from tests.peers.configs import daemon_toml, dovecot_conf, listeners
from tests.peers.conftest import DOVECOT, private_dir, running_dovecot, running_serve, wait_until
from tests.sqlservers import (
    PASSWORD,
    USER,
    MariaDBServer,
    PostgresServer,
    SqlServer,
    have_postgres,
)

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(shutil.which("doveadm") is None, reason="doveadm is not installed"),
]

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "postfixadmin"
GENERATED = 200

ACTIVE = "m.active = '1' AND d.active = '1'"
QUERIES = {
    "postgresql": {
        "user_query": "SELECT '/var/mail/vmail/' || m.maildir AS home, 1001 AS uid, "
        "1001 AS gid, '*:bytes=' || m.quota AS quota_rule",
    },
    "mariadb": {
        "user_query": "SELECT CONCAT('/var/mail/vmail/', m.maildir) AS home, 1001 AS uid, "
        "1001 AS gid, CONCAT('*:bytes=', m.quota) AS quota_rule",
    },
}
FROM = "FROM mailbox m JOIN domain d ON d.domain = m.domain WHERE m.username = '%u' AND " + ACTIVE


@dataclass(frozen=True)
class Mailbox:
    username: str
    password: str | None  # as stored
    plaintext: str
    active: bool = True
    domain: str = "example.com"
    quota: int = 0


def stored_forms(rng: random.Random, plaintext: str) -> str:
    """One of the forms Postfix Admin sites store, chosen at random."""
    pw = plaintext.encode()
    form = rng.randrange(6)
    if form == 0:  # php_crypt, Postfix Admin's default: bare $6$
        return schemes.generate(pw, "SHA512-CRYPT").removeprefix("{SHA512-CRYPT}")
    if form == 1:  # legacy md5crypt: bare $1$
        return schemes.generate(pw, "MD5-CRYPT").removeprefix("{MD5-CRYPT}")
    if form == 2:
        return schemes.generate(pw, "SHA512-CRYPT")
    if form == 3:
        return schemes.generate(pw, "BLF-CRYPT")
    if form == 4:
        return schemes.generate(pw, "PLAIN")
    return schemes.generate(pw, "SSHA256")


def mailboxes() -> list[Mailbox]:
    rng = random.Random(17)
    out = []
    for i in range(GENERATED):
        plaintext = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(12))
        out.append(
            Mailbox(
                username=f"user{i:03d}@{'example.com' if i % 7 else 'example.net'}",
                password=stored_forms(rng, plaintext),
                plaintext=plaintext,
                domain="example.com" if i % 7 else "example.net",
                quota=rng.choice([0, 1024000, 52428800]),
            )
        )
    md5crypt = "$1$c9809462$fC8eUPU2lq7arWRvxChMu1"  # test123, PacryptTest.php
    out += [
        Mailbox(
            username="inactive@example.com", password=md5crypt, plaintext="test123", active=False
        ),
        Mailbox(
            username="retired@old.example",
            password=md5crypt,
            plaintext="test123",
            domain="old.example",
        ),
        Mailbox(username="nullpw@example.com", password=None, plaintext="test123"),
        Mailbox(
            username="bare6@example.com",
            password="$6$IeqpXtDIXF09ADdc$IsE.SSK3zuwtS9fdWZ0oVxXQjPDj834xqxTiv3Qfidq3AbAjPb0DNyI28JyzmDVlbfC9uSfNxD9RUyeO1.7FV/",
            plaintext="test123",
        ),
        Mailbox(username="bare1@example.com", password=md5crypt, plaintext="test123"),
        Mailbox(username="o'brien@example.com", password="{PLAIN}quote'pw", plaintext="quote'pw"),
        Mailbox(username="badscheme@example.com", password="{NOSUCH}test123", plaintext="test123"),
        Mailbox(
            username="hexmd5@example.com",
            password="cc03e747a6afbbcbf8be7668acfebee5",
            plaintext="test123",
        ),
    ]
    return out


def sql_literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def load_database(server: SqlServer, database: str, boxes: list[Mailbox]) -> None:
    schema = "schema-pgsql.sql" if server.name == "postgresql" else "schema-mysql.sql"
    nullable = (
        "ALTER TABLE mailbox ALTER COLUMN password DROP NOT NULL;"
        if server.name == "postgresql"
        else "ALTER TABLE mailbox MODIFY password varchar(255) CHARACTER SET latin1 "
        "COLLATE latin1_general_ci NULL;"
    )
    rows = ",\n".join(
        f"({sql_literal(b.username)}, {sql_literal(b.password)}, "
        f"{sql_literal(b.domain + '/' + b.username.split('@')[0] + '/')}, {b.quota}, "
        f"{sql_literal(b.username.split('@')[0])}, {sql_literal(b.domain)}, "
        f"'{1 if b.active else 0}')"
        for b in boxes
    )
    server.run_sql(
        (EXAMPLES / schema).read_text()
        + nullable
        + "INSERT INTO domain (domain, active) VALUES ('example.com', '1'), "
        "('example.net', '1'), ('old.example', '0');"
        + "INSERT INTO mailbox (username, password, maildir, quota, local_part, domain, active) "
        + f"VALUES {rows};",
        database,
    )


def dovecot_sql_conf(server: SqlServer, database: str) -> str:
    driver = "pgsql" if server.name == "postgresql" else "mysql"
    return (
        f"driver = {driver}\n"
        f"connect = host=127.0.0.1 port={server.port} dbname={database} "
        f"user={USER} password={PASSWORD}\n"
        "default_pass_scheme = SHA512-CRYPT\n"
        f"password_query = SELECT m.username AS user, m.password {FROM}\n"
        f"user_query = {QUERIES[server.name]['user_query']} {FROM}\n"
        "iterate_query = SELECT username AS user FROM mailbox WHERE active = '1'\n"
    )


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> SqlServer:
    fixture = {"postgresql": "postgres_server", "mariadb": "mariadb_server"}[request.param]
    found: PostgresServer | MariaDBServer = request.getfixturevalue(fixture)
    return found


@dataclass
class Setup:
    root: Path
    engine: Engine
    boxes: list[Mailbox]


@pytest.fixture
def dovecot_and_conf(server: SqlServer) -> Iterator[tuple[Path, str]]:
    """The database loaded, the conf file written, Dovecot reading it."""
    if shutil.which(DOVECOT) is None:
        pytest.skip("dovecot is not installed")
    database = server.create_database()
    load_database(server, database, mailboxes())
    with private_dir("dovecot-sql") as root:
        conf_text = dovecot_sql_conf(server, database)
        (root / "dovecot-sql.conf.ext").write_text(conf_text)
        sql_db = {"driver": "sql", "args": str(root / "dovecot-sql.conf.ext")}
        conf = root / "dovecot.conf"
        conf.write_text(
            dovecot_conf(
                root,
                settings={
                    "auth_mechanisms": "plain",
                    "auth_failure_delay": 0,
                    "auth_cache_size": 0,
                    "auth_username_chars": "",
                },
                passdbs=[sql_db],
                userdbs=[sql_db],
                services={
                    "auth": listeners({"auth-client": "0600", "auth-userdb": "0600"}, user="root")
                },
            )
        )
        (root / "min.conf").write_text("ssl = no\n")
        with running_dovecot(conf, root):
            yield root, conf_text


@pytest.fixture
async def setup(dovecot_and_conf: tuple[Path, str]) -> AsyncIterator[Setup]:
    root, conf_text = dovecot_and_conf
    # mailwarden reads the [sql] section import dovecot-sql-conf makes of the same file.
    loaded = config_mod.loads(convert(conf_text).toml)
    config = make_config(
        auth={"username_chars": ""},
        passwords={"scheme": "SHA512-CRYPT", "rehash": "never"},
    )
    directory = DovecotSqlDirectory(await Database.open(loaded.sql), loaded.sql)
    hasher = Hasher(workers=2)
    try:
        yield Setup(root, build_engine(config, directory=directory, hasher=hasher), mailboxes())
    finally:
        hasher.close()
        await directory.close()


class DovecotAuth:
    """Dovecot's auth sockets, spoken to directly: every request sent at once on one
    connection (``doveadm auth test`` opens a connection per check, and Dovecot
    holds each failure back about half a second)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _exchange(self, socket_name: str, hello: str, lines: list[str]) -> dict[int, str]:
        """Send ``hello`` and ``lines`` (request ids 1..n); the reply line of each id."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(60)
            sock.connect(str(self.root / "run" / socket_name))
            sock.sendall(hello.encode())
            sock.sendall("".join(lines).encode())
            replies: dict[int, str] = {}
            pending = b""
            while len(replies) < len(lines):  # bounded by the socket's timeout
                chunk = sock.recv(65536)
                assert chunk, f"{socket_name} closed after {len(replies)} replies"
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    fields = raw.decode().split("\t")
                    if (
                        len(fields) > 1
                        and fields[1].isdigit()
                        and fields[0]
                        not in (
                            "VERSION",
                            "MECH",
                            "SPID",
                            "CUID",
                            "COOKIE",
                        )
                    ):
                        replies[int(fields[1])] = raw.decode()
            return replies

    def verdicts(self, logins: list[tuple[str, str]]) -> list[str]:
        """``ok``, ``failed`` or ``tempfail`` for each (user, password), as PLAIN logins."""
        lines = []
        for i, (user, password) in enumerate(logins, 1):
            resp = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            lines.append(f"AUTH\t{i}\tPLAIN\tservice=imap\tresp={resp}\n")
        replies = self._exchange("auth-client", f"VERSION\t1\t2\nCPID\t{os.getpid()}\n", lines)
        out = []
        for i in range(1, len(logins) + 1):
            kind, _id, *fields = replies[i].split("\t")
            assert kind in ("OK", "FAIL"), replies[i]
            if kind == "OK":
                out.append("ok")
            elif "temp" in fields or "code=temp_fail" in fields:
                out.append("tempfail")
            else:
                out.append("failed")
        return out

    def userdb(self, users: list[str]) -> list[dict[str, str] | None]:
        """The userdb fields of each user (``user`` itself left out), None: not found."""
        lines = [f"USER\t{i}\t{_escape(u)}\tservice=imap\n" for i, u in enumerate(users, 1)]
        replies = self._exchange("auth-userdb", "VERSION\t1\t0\n", lines)
        out: list[dict[str, str] | None] = []
        for i in range(1, len(users) + 1):
            kind, _id, *rest = replies[i].split("\t")
            if kind == "NOTFOUND":
                out.append(None)
                continue
            assert kind == "USER", replies[i]
            fields = dict(_unescape(f).partition("=")[::2] for f in rest[1:])
            out.append(fields)
        return out


def _escape(text: str) -> str:
    return text.replace("\x01", "\x011").replace("\t", "\x01t").replace("\n", "\x01n")


def _unescape(text: str) -> str:
    return re.sub(
        "\x01(.)", lambda m: {"1": "\x01", "t": "\t", "n": "\n", "r": "\r"}[m.group(1)], text
    )


async def mailwarden_verdict(engine: Engine, user: str, password: str) -> str:
    outcome = await engine.authenticate(attempt(user, password, service="imap"))
    match outcome:
        case Accepted():
            return "ok"
        case Denied():
            return "failed"
        case Unavailable():
            return "tempfail"


async def mailwarden_userdb(engine: Engine, user: str) -> dict[str, str] | None:
    found = await engine.lookup(user, service="imap")
    match found:
        case UserRecord():
            return dict(found.fields)
        case NotFound():
            return None
        case Unavailable():
            raise AssertionError(f"unavailable: {found.detail}")


async def test_dovecot_and_mailwarden_give_the_same_verdicts_and_userdb_fields(
    setup: Setup,
) -> None:
    names = [(b.username, b.plaintext) for b in setup.boxes] + [("nobody@example.com", "x")]
    dovecot = DovecotAuth(setup.root)
    logins = [
        login for user, password in names for login in ((user, password), (user, password + "x"))
    ]
    verdicts_ = await asyncio.to_thread(dovecot.verdicts, logins)
    fields_ = await asyncio.to_thread(dovecot.userdb, [user for user, _ in names])
    theirs = [(verdicts_[2 * i], verdicts_[2 * i + 1], fields_[i]) for i in range(len(names))]
    differences = []
    for (user, password), (right, wrong, fields) in zip(names, theirs, strict=True):
        ours = (
            await mailwarden_verdict(setup.engine, user, password),
            await mailwarden_verdict(setup.engine, user, password + "x"),
            await mailwarden_userdb(setup.engine, user),
        )
        if ours != (right, wrong, fields):
            differences.append((user, "dovecot", (right, wrong, fields), "mailwarden", ours))
    assert differences == []
    verdicts = dict(zip([u for u, _ in names], theirs, strict=True))
    # The edge cases are what they should be (so the comparison compared something).
    assert verdicts["user001@example.com"][:2] == ("ok", "failed")
    assert verdicts["o'brien@example.com"][0] == "ok"
    assert verdicts["bare6@example.com"][0] == verdicts["bare1@example.com"][0] == "ok"
    for refused in (
        "inactive@example.com",
        "retired@old.example",
        "nullpw@example.com",
        "badscheme@example.com",
        "hexmd5@example.com",
        "nobody@example.com",
    ):
        assert verdicts[refused][0] == "failed", refused
    assert verdicts["inactive@example.com"][2] is None
    assert verdicts["user001@example.com"][2] == {
        "home": "/var/mail/vmail/example.com/user001/",
        "uid": "1001",
        "gid": "1001",
        "quota_rule": verdicts["user001@example.com"][2]["quota_rule"],  # type: ignore[index]
    }


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL this test may stop (not the session's)."""
    if not have_postgres():
        pytest.skip("PostgreSQL is not installed")
    with private_dir("pg-own") as root:
        server = PostgresServer(root)
        try:
            server.start()
            yield server
        finally:
            server.stop()


def test_serve_answers_doveadm_from_postfixadmin_tables(own_postgres: PostgresServer) -> None:
    """``mailwarden serve`` with the Dovecot-style SQL directory: doveadm against its
    client and userdb sockets, then the database stopped and started under it (no
    restart of ours)."""
    postgres_server = own_postgres
    database = postgres_server.create_database()
    examples = EXAMPLES
    postgres_server.run_sql((examples / "schema-pgsql.sql").read_text(), database)
    postgres_server.run_sql((examples / "sample-data.sql").read_text(), database)
    text = (
        (examples / "dovecot-sql.conf.ext")
        .read_text()
        .replace(
            "connect = host=localhost dbname=postfix user=postfix password=postfix",
            f"connect = host=127.0.0.1 port={postgres_server.port} dbname={database} "
            f"user={USER} password={PASSWORD}",
        )
    )
    sql = config_mod.loads(convert(text).toml).sql
    with private_dir("serve-sql") as root:
        (root / "run").mkdir()
        (root / "min.conf").write_text("ssl = no\n")
        (root / "sql.password").write_text(PASSWORD + "\n")
        cfg = root / "mailwarden.toml"
        cfg.write_text(
            daemon_toml(
                directory={"backend": "sql", "path": None},
                sql={
                    "mode": "dovecot",
                    "hosts": list(sql.hosts),
                    "port": sql.port,
                    "database": sql.database,
                    "user": sql.user,
                    "password_file": "sql.password",
                    "default_pass_scheme": sql.default_pass_scheme,
                    "password_query": sql.password_query,
                    "user_query": sql.user_query,
                    "iterate_query": sql.iterate_query,
                    "backoff_max": 0.2,
                },
            )
        )
        client, userdb = str(root / "run" / "auth-client"), str(root / "run" / "auth-userdb")

        def doveadm(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["doveadm", "-c", str(root / "min.conf"), *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        with running_serve(cfg, ready=(client, userdb)):
            assert (
                doveadm("auth", "test", "-a", client, "crypt6@example.com", "test123").returncode
                == 0
            )
            assert (
                doveadm("auth", "test", "-a", client, "away@example.com", "test123").returncode
                == 77
            )
            found = doveadm("user", "-u", "-a", userdb, "blf@example.com")
            assert found.returncode == 0
            assert "home      : /var/mail/vmail/example.com/blf/" in found.stdout
            postgres_server.stop()
            try:
                down = doveadm("auth", "test", "-a", client, "crypt6@example.com", "test123")
                assert down.returncode == 77
                assert "code=temp_fail" in down.stdout  # temporary, never a wrong password
            finally:
                postgres_server.start()
            wait_until(
                lambda: (
                    doveadm(
                        "auth", "test", "-a", client, "sha512@example.com", "test123"
                    ).returncode
                    == 0
                ),
                "mailwarden to answer again",
            )
