"""Opening the configured SQL directory: the server password, the pool, the mode.

The one place that turns ``[sql]`` into a directory (app.py's ``open_backend``
calls :func:`open_sql_backend`, which also returns the own mode's change feed):
``mode = "own"`` is mailwarden's own schema, ``mode = "dovecot"`` a site's
existing schema read with Dovecot-style queries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from mailwarden.config import SqlConfig
from mailwarden.config.secrets import read_secret
from mailwarden.directories.base import ChangeFeed, Directory
from mailwarden.directories.sql.cache import FindCache
from mailwarden.directories.sql.database import Database
from mailwarden.directories.sql.dovecot import DovecotSqlDirectory
from mailwarden.directories.sql.queries import parse_queries

log = logging.getLogger("mailwarden.directory.sql")


def read_password(config: SqlConfig, resolve: Callable[[str], Path] = Path) -> str:
    """``sql.password``, or the secret in ``sql.password_file`` (``resolve`` makes the
    config-relative path; the one reader: config/secrets.py). ConfigError if that file
    cannot be read. A config from ``confignames.load`` has it read already."""
    if not config.password_file:
        return config.password
    return read_secret(config.password_file, key="sql.password_file", resolve=resolve)


async def open_database(config: SqlConfig, resolve: Callable[[str], Path] = Path) -> Database:
    """The connection pool; DirectoryUnavailable if no server answers."""
    return await Database.open(config, password=read_password(config, resolve))


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlBackend:
    """An opened SQL directory, and its change feed when it has one (own mode)."""

    directory: Directory
    changes: ChangeFeed | None = None
    #: Drops the directory's cache of looked-up accounts (cache.py) for these names.
    forget: Callable[[Iterable[str] | None], object] | None = None


async def open_sql_backend(
    config: SqlConfig,
    resolve: Callable[[str], Path] = Path,
    *,
    create: bool = False,
    cache_size: int = 0,
) -> SqlBackend:
    """The directory ``config.mode`` names, with its change feed (app.py's entry);
    ``create``: ``mailwarden init`` (own mode: create or upgrade the schema);
    ``cache_size``: ``directory.cache_size``, the looked-up accounts it remembers
    (cache.py: exact in own mode, for ``sql.cache_ttl`` in dovecot mode)."""
    match config.mode:
        case "own":
            from mailwarden.directories.sql.own import OwnDirectory  # noqa: PLC0415 - lean start

            cache = FindCache(cache_size) if cache_size > 0 else None
            own = await OwnDirectory.open(
                config, password=read_password(config, resolve), create=create, cache=cache
            )
            forget = cache.drop if cache is not None else None
            return SqlBackend(directory=own, changes=own.changes, forget=forget)
        case "dovecot":
            queries = parse_queries(config)  # a bad query stops here, before connecting
            if queries.update is None:
                log.info(
                    "sql: no update_query: password changes and rehash-on-login are not stored"
                )
            database = await open_database(config, resolve)
            cache = None
            if cache_size > 0 and config.cache_ttl > 0:
                cache = FindCache(cache_size, ttl=config.cache_ttl)
            return SqlBackend(
                directory=DovecotSqlDirectory(database, config, cache=cache),
                forget=cache.drop if cache is not None else None,
            )
        case never:
            assert_never(never)
