"""Which state store the configuration names, and where its file is (``[state]``)."""

from __future__ import annotations

from pathlib import Path

from mailwarden.config import Config, config_relative
from mailwarden.state.base import StateStore
from mailwarden.state.lazy import LazyStateStore
from mailwarden.state.memory import MemoryStateStore

#: Where the file goes when neither ``state.path`` nor an SQLite directory says.
DEFAULT_FOLDER = Path("/var/lib/mailwarden")


def state_path(config: Config) -> Path:
    """``state.path``, or ``state.db`` in the folder of the SQLite directory's file
    (so ``make run`` and tests need nothing); relative paths are relative to the
    config file's folder."""
    if config.state.path:
        return Path(config_relative(config.source, config.state.path))
    if config.directory.backend == "sqlite":
        return Path(config_relative(config.source, config.directory.path)).parent / "state.db"
    return DEFAULT_FOLDER / "state.db"


def open_state(config: Config) -> StateStore:
    """The configured state store, opened on first use (state/lazy.py)."""
    if config.state.backend == "memory":
        return MemoryStateStore()

    async def opener() -> StateStore:
        if config.state.backend == "sql":
            from mailwarden.state.sql import open_sql_state  # noqa: PLC0415 - lean start

            return await open_sql_state(config)
        from mailwarden.state.sqlite import SQLiteStateStore  # noqa: PLC0415 - lean start

        return await SQLiteStateStore.open(state_path(config), timeout=config.state.timeout)

    return LazyStateStore(opener)


async def prepare_state(config: Config) -> str | None:
    """``mailwarden init``'s part: make or upgrade the SQL state tables (safe to run
    again); what was done, or None for the stores that need nothing (the SQLite
    file is made on first use, memory is nothing to make). StateUnavailable if the
    database cannot be reached."""
    if config.state.backend != "sql":
        return None
    from mailwarden.state.sql import open_sql_state  # noqa: PLC0415 - lean start
    from mailwarden.state.sqlschema import SCHEMA_VERSION  # noqa: PLC0415

    store = await open_sql_state(config, create=True)
    await store.close()
    return f"state store ready (sql, {config.sql.database}, schema version {SCHEMA_VERSION})"
