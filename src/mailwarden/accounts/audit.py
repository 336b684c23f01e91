"""The audit log: who changed what, when and from where. One call records a change.

What belongs here: the :class:`Actor` of a change, how a front end says who acts
(:func:`acting`, around its request), and :class:`AuditLog`, which writes an entry
to the state store and the ``mailwarden.audit`` log. Every writer of accounts,
app passwords, tokens, administrators, second factors and bans calls
:meth:`AuditLog.record` once per change (AccountAdmin for accounts, accounts/staff.py
for the rest, the front ends for bans).

Why a context variable for the actor: the same account change is reached from the
CLI, the admin API, the web page (an administrator, or the user themself) and the
mail gateway, through :class:`~mailwarden.accounts.edit.AccountAdmin` and the
:class:`~mailwarden.ports.AccountEditor` protocol. Passing "who" through every
signature would touch every caller and every implementation; the front end that
knows who is asking sets it once around the request instead, and asyncio copies
it into the tasks the request starts. A change made outside any :func:`acting`
block is recorded as ``system`` (never lost).

Entries carry field *names*, never values: a password, a token or a code never
reaches the log (tests/accounts/test_audit.py looks for them).

A store that cannot take an entry does not undo the change that was already
made: the entry is logged at error level, whole, so it is not lost either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from mailwarden.errors import TemporaryFailure
from mailwarden.model import Account
from mailwarden.state.base import AuditEntry, AuditQuery, StateStore

log = logging.getLogger("mailwarden.audit")


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who makes a change: ``name`` as the log shows it (``admin:alice``,
    ``token:deploy``, ``bootstrap token``, ``user:bob@example.com``, ``cli:root``,
    ``system``) and ``source``: the client address, ``cli`` or ``mail``."""

    name: str
    source: str = ""


SYSTEM = Actor(name="system")
_ACTOR: ContextVar[Actor] = ContextVar("mailwarden_actor", default=SYSTEM)


def current() -> Actor:
    """Who acts in this request (``system`` outside any :func:`acting`)."""
    return _ACTOR.get()


@contextlib.contextmanager
def acting(actor: Actor) -> Iterator[Actor]:
    """Make ``actor`` the author of every change recorded inside the block."""
    token = _ACTOR.set(actor)
    try:
        yield actor
    finally:
        _ACTOR.reset(token)


def cli_actor() -> Actor:
    """The person at this command line: ``cli:<unix user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return Actor(name=f"cli:{user}", source="cli")


def changed_fields(before: Account, after: Account) -> tuple[str, ...]:
    """The names of the account fields that differ (the values never leave here)."""
    return tuple(
        f.name
        for f in dataclasses.fields(after)
        if getattr(before, f.name) != getattr(after, f.name)
    )


class AuditLog:
    """Writes entries to the state store (None: to the log only) and lists them."""

    def __init__(self, store: StateStore | None, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    async def record(
        self, action: str, target: str, fields: Iterable[str] = (), *, actor: Actor | None = None
    ) -> AuditEntry:
        """Write that ``actor`` (default: :func:`current`) did ``action`` to ``target``,
        changing ``fields`` (names only)."""
        who = actor or current()
        entry = AuditEntry(
            time=self.clock(),
            actor=who.name,
            action=action,
            target=target,
            fields=tuple(fields),
            source=who.source,
        )
        log.info(
            "audit: %s %s %s [%s] from %s",
            entry.actor,
            entry.action,
            entry.target,
            ",".join(entry.fields),
            entry.source or "-",
        )
        if self.store is not None:
            try:
                await self.store.record(entry)
            except TemporaryFailure as exc:
                log.error("audit: could not store the entry above (%s): %r", exc, entry)
        return entry

    async def entries(self, query: AuditQuery) -> list[AuditEntry]:
        if self.store is None:
            return []
        return await self.store.audit(query)
