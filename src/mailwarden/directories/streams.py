"""Accounts streamed from any directory through the protocol alone.

:func:`matching_accounts` reads every account whose uid or an address matches a
``*``/``?`` pattern (the rule of :meth:`Directory.search`) in uid order, a batch at a
time: the uids come from :meth:`Directory.iterate`, the accounts from
:meth:`Directory.get_many`, so only two batches of accounts are held however many
there are: the next batch is read while the caller works through the current one
(an export of a million accounts formats on the event loop's thread while SQLite
reads on its reader thread). :func:`listing_of` is the same as :class:`~mailwarden.model.Listed`
values: the :meth:`Directory.listing` of a directory that has no faster way
(memory, LDAP); SQLite reads its listing with one statement per page instead.
"""

from __future__ import annotations

import asyncio
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
    reading: asyncio.Future[list[Account]] | None = None

    async def read_on(uids: list[str]) -> list[Account]:
        """The accounts of the batch being read; the read of ``uids`` starts."""
        nonlocal reading
        previous, reading = reading, asyncio.ensure_future(directory.get_many(uids))
        found = await previous if previous is not None else []
        return found if regex is None else [a for a in found if matches(regex, a)]

    try:
        async for uid in directory.iterate():
            uids.append(uid)
            if len(uids) >= batch:
                for account in await read_on(uids):
                    yield account
                uids = []
        if uids:
            for account in await read_on(uids):
                yield account
        for account in await read_on([]):
            yield account
    finally:
        if reading is not None and not reading.done():
            reading.cancel()


async def listing_of(directory: Directory, pattern: str = "*") -> AsyncIterator[Listed]:
    """:meth:`Directory.listing` through :func:`matching_accounts`."""
    async for account in matching_accounts(directory, pattern):
        yield Listed.of(account)
