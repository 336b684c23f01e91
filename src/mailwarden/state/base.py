"""mailwarden's own state: administrators, API tokens, second factors, the audit log
and, without Redis, the login history.

What belongs here: the value types of those records and the :class:`StateStore`
protocol every store implements (:mod:`.memory`, :mod:`.sqlite`, :mod:`.sql`). No rule lives
here: who may do what is :mod:`mailwarden.auth.roles`', how a code is checked is
:mod:`mailwarden.accounts.totp`'s, and :mod:`mailwarden.accounts.staff` decides
with both.

Why not in the account directory: a site's directory may be read-only to us (LDAP
under its own schema, SQL in Dovecot mode), and these records must be the same on
every node, whatever the directory is (docs/architecture.md, "The state store").

Errors: a store that cannot answer raises
:class:`~mailwarden.errors.StateUnavailable` (a TemporaryFailure); adding a name
that is taken raises :class:`~mailwarden.errors.AccountExists`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mailwarden.history.base import LoginEvent

#: Entries :meth:`StateStore.audit` returns at most, whatever was asked.
MAX_AUDIT_ROWS = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One change: who (``actor``), what (``action`` and the ``fields`` it changed, names
    only, never a value), to what (``target``), when (``time``) and from where
    (``source``: a client address, ``cli`` or ``mail``). ``id`` is set by the store."""

    time: float
    actor: str
    action: str
    target: str
    fields: tuple[str, ...] = ()
    source: str = ""
    id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditQuery:
    """Which entries to list: newest first, at most ``limit``."""

    target: str | None = None
    actor: str | None = None
    since: float | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Administrator:
    """A person who administers: ``password`` is a ``{SCHEME}`` hash, ``role`` a
    :class:`~mailwarden.auth.roles.Grant` value (``admin`` or ``helpdesk``)."""

    name: str
    password: str
    role: str
    created: float

    def __repr__(self) -> str:
        return f"Administrator(name={self.name!r}, role={self.role!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    """A named token for automation: only its digest (:mod:`mailwarden.auth.tokens`) is
    kept. ``scope`` is a :class:`~mailwarden.auth.roles.Grant` value; ``expires`` None
    means never."""

    name: str
    digest: str
    scope: str
    created: float
    created_by: str
    expires: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SecondFactor:
    """The TOTP state of ``owner`` (``admin:<name>`` or ``user:<uid>``).

    ``confirmed`` once a code proved the enrolment; ``last_step`` is the newest time
    step accepted (a code of that step or an older one is never accepted again);
    ``recovery`` the digests of the unused recovery codes; ``failures`` wrong codes
    since ``failed_since`` (the rate limit). ``version`` grows with every write:
    :meth:`StateStore.swap_factor` writes only over the version it read, so two
    nodes cannot both accept the same code.
    """

    owner: str
    secret: str
    confirmed: bool = False
    last_step: int = 0
    recovery: tuple[str, ...] = ()
    failures: int = 0
    failed_since: float = 0.0
    version: int = 0

    def __repr__(self) -> str:
        return f"SecondFactor(owner={self.owner!r}, confirmed={self.confirmed})"


class StateStore(Protocol):
    """Where the records above live (memory, SQLite, SQL; see the package docstring)."""

    async def record(self, entry: AuditEntry) -> None:
        """Append ``entry`` to the audit log (its ``id`` is assigned)."""
        ...

    async def audit(self, query: AuditQuery) -> list[AuditEntry]:
        """Entries matching ``query`` (``target``/``actor`` exact), newest first."""
        ...

    async def admin(self, name: str) -> Administrator | None: ...

    async def admins(self) -> list[Administrator]:
        """Every administrator, by name."""
        ...

    async def add_admin(self, admin: Administrator, *, first: bool = False) -> bool:
        """Store a new administrator (AccountExists if the name is taken). With
        ``first``, only while there is none at all (False otherwise), decided in one
        step so that two nodes cannot both create "the first" administrator."""
        ...

    async def replace_admin(self, admin: Administrator) -> bool:
        """Overwrite the administrator of that name; False if there is none."""
        ...

    async def remove_admin(self, name: str) -> bool: ...

    async def token(self, digest: str) -> ApiToken | None: ...

    async def tokens(self) -> list[ApiToken]:
        """Every API token, by name."""
        ...

    async def add_token(self, token: ApiToken) -> None:
        """Store a new token (AccountExists if the name is taken)."""
        ...

    async def remove_token(self, name: str) -> bool: ...

    async def factor(self, owner: str) -> SecondFactor | None: ...

    async def swap_factor(self, owner: str, expected: int | None, new: SecondFactor | None) -> bool:
        """Replace ``owner``'s factor (``new`` None: delete it) if its version is still
        ``expected`` (None: there is none); ``new`` is stored with version
        ``expected + 1``. False when another writer came first."""
        ...

    # The login history (mailwarden.history.base.HistoryStore), where no Redis keeps it.

    async def add_logins(self, events: Sequence[LoginEvent], *, keep: int, ttl: float) -> None: ...

    async def logins(self, uid: str, *, limit: int, since: float) -> list[LoginEvent]: ...

    async def prune_logins(self, before: float, *, keep: int) -> int: ...

    async def close(self) -> None: ...
