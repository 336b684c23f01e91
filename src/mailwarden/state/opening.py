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
        from mailwarden.state.sqlite import SQLiteStateStore  # noqa: PLC0415 - lean start

        return await SQLiteStateStore.open(state_path(config), timeout=config.state.timeout)

    return LazyStateStore(opener)
