"""Shared fixtures: an engine over an in-memory directory holding a hashed account, and
the session's PostgreSQL and MariaDB servers."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mailwarden.app import build_engine
from mailwarden.auth.engine import Engine
from mailwarden.config import Config, SqlConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account
from tests.helpers import FAST, hashed
from tests.sqlservers import PASSWORD as SQL_PASSWORD
from tests.sqlservers import USER as SQL_USER
from tests.sqlservers import (
    MariaDBServer,
    PostgresServer,
    SqlServer,
    have_mariadb,
    have_postgres,
)


@pytest_asyncio.fixture
async def directory() -> AsyncIterator[MemoryDirectory]:
    d = MemoryDirectory()
    await d.create(
        Account(
            uid="alice",
            mail="alice@example.com",
            alternate_addresses=("a.liddell@example.com",),
            password=hashed("secret"),
            home="/var/mail/alice",
            mail_location="maildir:~/Maildir",
            uid_number=5000,
            gid_number=5000,
            quota_bytes=1_000_000,
            passdb_fields={"nologin": "", "reason": "moved", "allow_nets": "10.0.0.0/8"},
            userdb_fields={"sieve": "~/.dovecot.sieve"},
        )
    )
    yield d
    await d.close()


EngineFactory = Callable[..., Engine]


@pytest.fixture
def make_engine(directory: MemoryDirectory) -> Iterator[EngineFactory]:
    hashers: list[Hasher] = []

    def factory(config: Config = FAST, d: Any = None) -> Engine:
        hasher = Hasher(workers=2)
        hashers.append(hasher)
        return build_engine(config, directory=d if d is not None else directory, hasher=hasher)

    yield factory
    for h in hashers:
        h.close()


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    return make_engine()


@pytest.fixture(scope="session", autouse=True)
def _no_machine_sockets() -> Iterator[None]:
    """No test may create the machine's own socket folder (every test config puts its
    sockets under a temporary directory)."""
    machine = Path("/run/mailwarden")
    existed = machine.exists()
    # Nor the machine's state folder (the state store's default for directories
    # that are not SQLite files: /var/lib/mailwarden/state.db).
    state = Path("/var/lib/mailwarden")
    state_existed = state.exists()
    yield
    assert existed or not machine.exists(), "a test created /run/mailwarden"
    assert state_existed or not state.exists(), "a test created /var/lib/mailwarden"


# --------------------------------------------------------------------- SQL servers
# One private PostgreSQL and one MariaDB per test session (started on first use), a
# fresh database per test (tests/sqlservers.py). The data dirs live under a 0711
# directory of their own: PostgreSQL runs as the postgres user, which cannot
# traverse pytest's 0700 temp dirs.


@contextlib.contextmanager
def _sql_server(cls: type[SqlServer], available: bool, what: str) -> Iterator[SqlServer]:
    if not available:
        pytest.skip(f"{what} is not installed (scripts/bootstrap.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix=f"mailwarden-{cls.name}-"))
    root.chmod(0o711)
    server = cls(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with _sql_server(PostgresServer, have_postgres(), "PostgreSQL 15") as server:
        assert isinstance(server, PostgresServer)
        yield server


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    with _sql_server(MariaDBServer, have_mariadb(), "MariaDB") as server:
        assert isinstance(server, MariaDBServer)
        yield server


@pytest.fixture(params=["postgresql", "mariadb"])
def sql_server(request: pytest.FixtureRequest) -> SqlServer:
    """Each SQL engine in turn (the test runs once per engine)."""
    fixture = {"postgresql": "postgres_server", "mariadb": "mariadb_server"}[request.param]
    server: SqlServer = request.getfixturevalue(fixture)
    return server


@pytest.fixture(params=["postgresql", "mariadb"])
def killable_sql_server(request: pytest.FixtureRequest) -> Iterator[SqlServer]:
    """A server of each engine for this test alone (the test may kill and restart it)."""
    cls: type[SqlServer] = PostgresServer if request.param == "postgresql" else MariaDBServer
    available = have_postgres() if request.param == "postgresql" else have_mariadb()
    with _sql_server(cls, available, request.param) as server:
        yield server


def sql_config_for(server: SqlServer, database: str, **overrides: Any) -> SqlConfig:
    """An ``[sql]`` section for ``database`` on ``server`` (TCP, the test user)."""
    values: dict[str, Any] = {
        "driver": server.name,
        "hosts": (f"{server.host}:{server.port}",),
        "database": database,
        "user": SQL_USER,
        "password": SQL_PASSWORD,
        "timeout": 5.0,
        "connect_timeout": 2.0,
        "backoff_max": 0.2,
        "pool_size": 4,
    }
    values.update(overrides)
    return SqlConfig(**values)


@pytest.fixture
def sql_database(sql_server: SqlServer) -> str:
    """A fresh, empty database on the engine of this run."""
    return sql_server.create_database()


@pytest.fixture
def sql_config(sql_server: SqlServer, sql_database: str) -> SqlConfig:
    return sql_config_for(sql_server, sql_database)
