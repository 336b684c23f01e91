"""Which store keeps the login history (``[history]``, docs/history.md): the guard's
Redis when the guard keeps its state there (every node then sees every login),
else the state store (memory, SQLite, SQL)."""

from __future__ import annotations

from mailwarden.config import Config
from mailwarden.guard.policy import Guard
from mailwarden.history.base import HistoryStore
from mailwarden.history.recorder import HistoryRecorder, Resolver
from mailwarden.state.base import StateStore


def history_store(config: Config, guard: Guard, state: StateStore) -> HistoryStore:
    """The store the configuration names for the login history."""
    if config.guard.store != "redis":
        return state
    # Imported only here: a site without Redis never loads its client (lean start).
    from mailwarden.guard.stores.redis import RedisStore  # noqa: PLC0415
    from mailwarden.history.redis import RedisHistory  # noqa: PLC0415

    store = guard.store
    if isinstance(store, RedisStore):
        return RedisHistory(store.client, key_prefix=store.prefix, timeout=store.timeout)
    return state


def open_history(
    config: Config, guard: Guard, state: StateStore, resolve: Resolver
) -> HistoryRecorder | None:
    """The recorder of ``[history]``, or None when it is off."""
    if not config.history.enabled:
        return None
    return HistoryRecorder(history_store(config, guard, state), config.history, resolve=resolve)
