"""The ``Directory`` protocol: where accounts live.

Every backend (embedded SQLite, in-memory, LDAP) implements this small async
interface. Reads must never block the event loop. Any backend failure (file
unreadable, database locked past its timeout, server down) raises
:class:`~mailwarden.errors.DirectoryUnavailable`; refused writes raise an
:class:`~mailwarden.errors.AccountError` subclass.

Logins are matched case-insensitively: directories store uid and addresses as
given but look them up lower-cased (the engine has already applied
``auth_username_format``).

A directory that verifies passwords itself (LDAP in rebind mode) is also a
:class:`PasswordChecker`; app.py hands it to the engine as such, explicitly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from mailwarden.model import Account, AppPasswordUsed, AuthAttempt, Listed
from mailwarden.model import login_key as login_key  # noqa: PLC0414 - re-exported

LoginAttribute = Literal["uid", "mail", "alternate"]
ALL_LOGIN_ATTRIBUTES: tuple[LoginAttribute, ...] = ("uid", "mail", "alternate")


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """An account a bulk write left out: an address it needs is taken, or a value
    is one the directory cannot store."""

    uid: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkReport:
    """What a bulk write did (``refused``: only with ``skip_refused``)."""

    created: int = 0
    replaced: int = 0
    skipped: int = 0
    refused: tuple[Refusal, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Modified:
    """What :meth:`Directory.modify` did: the account as it was read and as stored."""

    before: Account
    after: Account


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryContext:
    """The request a :meth:`Directory.find` serves, for a directory whose lookups
    depend on it: the SQL directory's Dovecot-style queries read ``%{service}``,
    ``%{rip}``, ``%{lip}`` (and the ports) from it. Every other directory ignores it.

    ``userdb``: the lookup only describes the account (Dovecot's ``USER``,
    ``mailwarden user``), no login depends on it: a directory with separate passdb
    and userdb queries then runs only the userdb one (the returned account's
    ``password`` may be empty). The engine builds it (:meth:`of` for a login); None
    means no request (a command, an admin edit).
    """

    service: str = ""
    local_ip: str | None = None
    remote_ip: str | None = None
    local_port: int | None = None
    remote_port: int | None = None
    userdb: bool = False

    @classmethod
    def of(cls, attempt: AuthAttempt) -> QueryContext:
        """What a directory may know of the login ``attempt`` looks up."""
        return cls(
            service=attempt.service,
            local_ip=attempt.local_ip,
            remote_ip=attempt.remote_ip,
            local_port=attempt.local_port,
            remote_port=attempt.remote_port,
        )


def fingerprint_key(fingerprint: str) -> str:
    """The form OpenPGP fingerprints are compared under: no spaces, upper case."""
    return fingerprint.replace(" ", "").upper()


class Directory(Protocol):
    """Accounts by login name; the only way the engine reaches stored data."""

    async def find(
        self,
        login: str,
        *,
        by: Sequence[LoginAttribute] = ALL_LOGIN_ATTRIBUTES,
        context: QueryContext | None = None,
    ) -> Account | None:
        """The account whose uid, mail or alternate address is ``login`` (as ``by`` allows).

        When ``login`` matches one account's uid and another's address, the uid wins.
        ``context``: the request this lookup serves (:class:`QueryContext`); only
        directories whose answer depends on it read it.
        """
        ...

    async def get(self, uid: str) -> Account | None:
        """The account with exactly this uid (case-insensitive)."""
        ...

    async def get_many(self, uids: Sequence[str]) -> list[Account]:
        """The accounts with these uids (case-insensitive), in the order asked, each
        once; a uid with no account is left out.

        One round trip for the lot where the backend allows (one SQL statement, one
        LDAP search per few hundred uids): ``migrate`` reads a directory in batches of
        :meth:`iterate`'s uids, which costs a twelfth of a :meth:`get` per uid on
        SQLite (docs/directories.md, "Migrating between directories").
        """
        ...

    async def find_by_fingerprint(self, fingerprint: str) -> list[Account]:
        """The accounts whose ``pgp_fingerprint`` is ``fingerprint``.

        Compared without spaces and case-insensitively (:func:`fingerprint_key`);
        the mail gateway refuses a key that selects more than one account.
        """
        ...

    def iterate(self) -> AsyncIterator[str]:
        """Every uid, in a stable order (uid ascending)."""
        ...

    async def search(self, pattern: str, *, limit: int = 1000) -> list[Account]:
        """Accounts whose uid or an address matches ``pattern`` (``*`` and ``?`` wildcards)."""
        ...

    async def sample(self, count: int) -> list[Account]:
        """Up to ``count`` accounts, whichever the backend reads first (no order, no
        pattern): what the dummy hash learns this site's stored values from
        (auth/dummies.py). It costs ``count`` accounts' reads whatever the size of
        the directory; :meth:`search` for ``*`` would read every account to sort them.
        """
        ...

    def listing(self, pattern: str = "*") -> AsyncIterator[Listed]:
        """Every account :meth:`search` would match, as a :class:`Listed`, streamed in
        uid order without a limit: only a page is held at a time (a million accounts
        list in seconds, in flat memory). Directories without a faster way use
        :func:`mailwarden.directories.streams.listing_of`."""
        ...

    async def create(self, account: Account) -> None:
        """Store a new account; AccountExists if the uid or an address is taken."""
        ...

    async def replace(self, account: Account) -> None:
        """Overwrite the account with ``account.uid``; AccountNotFound if there is none.

        A blind overwrite: whatever another writer stored since ``account`` was read
        is lost. Edits use :meth:`modify`."""
        ...

    async def update(self, uid: str, changes: Mapping[str, Any]) -> Account:
        """Change some fields (names as on :class:`Account`) on the account as stored
        now (as :meth:`modify` does); returns the new account."""
        ...

    async def modify(self, uid: str, change: Callable[[Account], Account]) -> Modified:
        """Store ``change(current)``, where ``current`` is the account as stored when the
        write is made: no other writer's change can fall between the read and the write.

        This is how every edit of an existing account is made (``AccountAdmin``), so
        that two edits at once, or an edit and a password change, both survive.
        ``change`` must be pure: it may run more than once (LDAP retries a
        compare-and-swap) and, on SQLite, runs inside the write transaction. Its
        exceptions propagate and nothing is written. AccountNotFound if there is no
        such uid; AccountChanged if the account kept changing under every attempt.
        """
        ...

    async def set_password(self, uid: str, new: str, *, expected: str | None = None) -> bool:
        """Store a new password value.

        With ``expected`` this is compare-and-swap: the write happens only if the
        stored value is still ``expected`` (used by rehash-on-login, so that a
        password changed meanwhile is never overwritten). Returns whether it wrote.
        """
        ...

    async def delete(self, uid: str) -> bool:
        """Remove the account; False if there was none."""
        ...

    async def record_app_password_uses(self, uses: Sequence[AppPasswordUsed]) -> None:
        """Store each use as its app password's ``last_used``, and nothing else.

        The batched write of the engine's last-use recorder (auth/apppasswords.py):
        a use of an app password (or account) that is gone meanwhile is skipped, and
        no other field of the account, nor a change made meanwhile, is touched. It is
        not an account change: it need not end cached logins. A directory that
        stores no app passwords raises WriteRefused."""
        ...

    async def bulk_upsert(
        self, accounts: Iterable[Account], *, replace: bool, skip_refused: bool = False
    ) -> BulkReport:
        """Write many accounts in one transaction (imports). With ``replace`` False,
        existing uids are skipped; with True they are overwritten.

        An address clash (AccountExists) or an invalid account (InvalidAccount)
        raises and writes nothing; with ``skip_refused`` such accounts are left out
        instead (an account one would replace stays as it was), listed in the
        report's ``refused``, and the rest is still written in the same
        transaction. LDAP has no multi-entry transaction: there an interrupted
        bulk write can leave part of it written, and running it again completes it
        (docs/directories.md)."""
        ...

    async def count(self) -> int: ...

    def data_version(self) -> int | None:
        """A cheap, non-blocking number that changes whenever anyone writes to the
        directory, or None when the directory cannot tell (LDAP: another node or tool
        may write). The engine keeps its negative cache of unknown names only while
        it is unchanged (docs/guard.md, "The negative cache")."""
        ...

    async def ping(self) -> None:
        """Raise DirectoryUnavailable if the backend cannot answer now."""
        ...

    async def close(self) -> None: ...


class ChangeFeed(Protocol):
    """Account writes made by anyone (this node, another node, a CLI command), as
    they happen: a shared directory's way to keep every node's caches fresh.
    app.py subscribes the engine, which drops its cached logins of the names.

    ``on_change(names)`` gets the lower-cased logins (uids and addresses) a write
    touched, or None when anything may have changed (a notification may have been
    missed: drop everything). It runs on the event loop and must not block.
    """

    def subscribe(self, on_change: Callable[[Sequence[str] | None], object]) -> None: ...


class PasswordChecker(Protocol):
    """Verifies a password without the stored value (LDAP rebind: a bind as the
    user's entry); handed to the engine by app.py when the directory is configured so.

    ``account`` is None for a name that matches no account: the checker then does
    the same work against an entry nobody has and answers False, so an unknown name
    costs what a known one does. None means "verify the stored value as usual".
    A failure to reach the backend raises DirectoryUnavailable (never False).
    """

    async def verify_password(self, account: Account | None, password: bytes) -> bool | None: ...
