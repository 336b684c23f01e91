"""Shared fixtures: an engine over an in-memory directory holding a hashed account."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mailwarden.app import build_engine
from mailwarden.auth.engine import Engine
from mailwarden.config import Config
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account
from tests.helpers import FAST, hashed


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
    yield
    assert existed or not machine.exists(), "a test created /run/mailwarden"
