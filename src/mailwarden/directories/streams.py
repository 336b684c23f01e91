"""Accounts streamed from any directory through the protocol alone.

:func:`matching_accounts` reads every account whose uid or an address matches a
``*``/``?`` pattern (the rule of :meth:`Directory.search`) in uid order, a batch at a
time: the uids come from :meth:`Directory.iterate`, the accounts from
:meth:`Directory.get_many`, so only one batch of accounts is held however many
there are. :func:`listing_of` is the same as :class:`~mailwarden.model.Listed`
values: the :meth:`Directory.listing` of a directory that has no faster way
(memory, LDAP); SQLite reads its listing with one statement per page instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from mailwarden.directories.base import Directory
from mailwarden.directories.memory import glob_regex, matches
from mailwarden.model import Account, Listed

#: Accounts read per get_many call.
BATCH = 500


async def matching_accounts(
    directory: Directory, pattern: str = "*", *, batch: int = BATCH
) -> AsyncIterator[Account]:
    """Every account that matches ``pattern``, in uid order (see the module docstring)."""
    regex = None if pattern == "*" else glob_regex(pattern)
    uids: list[str] = []

    async def flush() -> list[Account]:
        found = await directory.get_many(uids)
        uids.clear()
        if regex is None:
            return found
        return [a for a in found if matches(regex, a)]

    async for uid in directory.iterate():
        uids.append(uid)
        if len(uids) >= batch:
            for account in await flush():
                yield account
    if uids:
        for account in await flush():
            yield account


async def listing_of(directory: Directory, pattern: str = "*") -> AsyncIterator[Listed]:
    """:meth:`Directory.listing` through :func:`matching_accounts`."""
    async for account in matching_accounts(directory, pattern):
        yield Listed.of(account)
