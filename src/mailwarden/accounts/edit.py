"""Account administration: the one place that changes accounts on an administrator's behalf.

The CLI (``mailwarden user ...``) and the HTTP admin API both call :class:`AccountAdmin`;
neither talks to the directory for writes itself. That keeps three rules in one place:

* every field is checked by :func:`mailwarden.accounts.rules.validate` before it is stored;
* new passwords are hashed on the hashing pool with the configured scheme, and a
  password is never returned or logged (only generated ones are returned, once);
* every change that can alter a login decision (password, status, service switches,
  addresses...) flushes the engine's caches for that account at once;
* every change is written to the audit log (:meth:`AccountAdmin.record`, one call:
  who acts is the request's :func:`~mailwarden.accounts.audit.current` actor), with
  the names of the fields it changed and never a value;
* nothing another writer stored meanwhile is lost: an edit is applied by the
  directory to the account as stored at the moment of writing
  (:meth:`~mailwarden.directories.base.Directory.modify`), and a password change
  writes the password alone. Where the backend cannot guarantee that (LDAP after
  repeated interference) the write fails with
  :class:`~mailwarden.errors.AccountChanged` ("changed meanwhile, retry").

Errors are the :class:`~mailwarden.errors.AccountError` tree (shown to the
administrator) and :class:`~mailwarden.errors.TemporaryFailure` (backend down, or
``AccountChanged``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

from mailwarden import schemes
from mailwarden.accounts import apppasswords
from mailwarden.accounts import rules as accounts
from mailwarden.accounts.audit import AuditLog, changed_fields
from mailwarden.auth.engine import Engine
from mailwarden.directories.base import Directory
from mailwarden.directories.streams import matching_accounts
from mailwarden.errors import AccountNotFound, InvalidAccount, WriteRefused
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account, AccountStatus, AppPassword, Listed, NewAppPassword


class AccountAdmin:
    """Create, change and delete accounts (see the module docstring for the rules)."""

    def __init__(
        self,
        *,
        directory: Directory,
        hasher: Hasher,
        engine: Engine,
        default_scheme: str,
        audit: AuditLog | None = None,
    ) -> None:
        self.directory = directory
        self.hasher = hasher
        self.engine = engine
        self.default_scheme = default_scheme.upper()
        self.audit = audit or AuditLog(None)

    async def record(self, action: str, uid: str, fields: Iterable[str] = ()) -> None:
        """Write one change to the audit log: ``action`` (``account.update``,
        ``app-password.add`` ...) on account ``uid``, changing ``fields`` (names only,
        never values). Every change made here calls it once; so must every change to
        an account's other credentials (app passwords) added beside these methods."""
        await self.audit.record(action, uid, fields)

    async def _record_change(self, uid: str, fields: tuple[str, ...]) -> None:
        if fields:  # a form saved unchanged is no change
            await self.record("account.update", uid, fields)

    def scheme_name(self, scheme: str | None) -> str:
        """The scheme to hash with; InvalidAccount if it is not one we can generate."""
        name = (scheme or self.default_scheme).upper()
        if name not in schemes.SCHEMES:
            raise InvalidAccount(f"unknown password scheme {name}")
        return name

    async def _hash(self, uid: str, password: bytes, scheme: str | None) -> str:
        if not password:
            raise InvalidAccount("empty password")
        return await self.hasher.generate(
            password, self.scheme_name(scheme), user=uid, policy=self.engine.policy
        )

    async def search(self, pattern: str = "*", *, limit: int = 1000) -> list[Account]:
        return await self.directory.search(pattern, limit=limit)

    def listing(self, pattern: str = "*") -> AsyncIterator[Listed]:
        """Every matching account's list columns, streamed in uid order (no limit)."""
        return self.directory.listing(pattern)

    def accounts(self, pattern: str = "*") -> AsyncIterator[Account]:
        """Every matching account, whole, streamed in uid order a batch at a time."""
        return matching_accounts(self.directory, pattern)

    async def show(self, name: str) -> Account:
        """The account with uid ``name`` or, failing that, the one ``name`` logs in as."""
        account = await self.directory.get(name) or await self.directory.find(name)
        if account is None:
            raise AccountNotFound(f"no account {name}")
        return account

    async def create(
        self,
        account: Account,
        *,
        password: bytes | None = None,
        scheme: str | None = None,
        assignments: Iterable[str] = (),
        changes: Mapping[str, object] | None = None,
    ) -> Account:
        """Store a new account, with ``FIELD=VALUE`` assignments (as for :meth:`update`)
        or JSON ``changes`` (as for :meth:`patch`) applied; AccountExists if taken."""
        new = accounts.apply_assignments(account, assignments)
        if changes:
            new = accounts.apply_json(new, changes)
        if password is not None:
            new = dataclasses.replace(new, password=await self._hash(new.uid, password, scheme))
        await self.directory.create(new)
        # A negative cache entry ("no such user") must not outlive the creation.
        await self.engine.flush_cache(list(new.logins()))
        await self.record("account.create", new.uid, changed_fields(Account(uid=new.uid), new))
        return new

    async def update(self, uid: str, assignments: Iterable[str]) -> Account:
        """Apply ``FIELD=VALUE`` assignments (see :func:`accounts.apply_assignments`)."""
        items = list(assignments)
        return await self._replace(uid, lambda a: accounts.apply_assignments(a, items))

    async def patch(self, uid: str, changes: Mapping[str, object]) -> Account:
        """Apply a JSON merge patch (see :func:`accounts.apply_json`)."""
        return await self._replace(uid, lambda a: accounts.apply_json(a, changes))

    async def apply(self, uid: str, change: Callable[[Account], Account]) -> Account:
        """Store ``change(current)``, checked (the mail gateway's writes): ``change`` runs
        on the account as stored when the directory writes (:meth:`Directory.modify`),
        possibly more than once (LDAP retries), so it must be pure."""

        def checked(old: Account) -> Account:
            new = change(old)
            accounts.validate(new)
            return new

        return await self._replace(uid, checked)

    async def set_status(self, uid: str, status: AccountStatus) -> Account:
        return await self._replace(uid, lambda a: dataclasses.replace(a, status=status))

    # ------------------------------------------------------------------ app passwords

    async def add_app_password(
        self, uid: str, *, name: str, services: Iterable[str] = (), expires: int | None = None
    ) -> NewAppPassword:
        """Make an app password for ``uid`` (or the account it logs in as;
        accounts/apppasswords.py has the rules); its value is in the answer and
        nowhere else."""
        new = apppasswords.issue(name=name, services=services, expires=expires, now=time.time())
        account = await self.show(uid)
        await self._app_password_change(
            account.uid, lambda a: apppasswords.added(a, new.app_password)
        )
        return new

    async def revoke_app_password(self, uid: str, which: str) -> AppPassword:
        """Delete ``uid``'s app password ``which`` (its id or name); from the next login
        on, on every node, it opens nothing (nothing about it is cached)."""
        account = await self.show(uid)
        gone = apppasswords.find(account, which)
        await self._app_password_change(account.uid, lambda a: apppasswords.revoked(a, gone.id))
        return gone

    async def set_app_passwords_only(self, uid: str, only: bool) -> Account:
        """Whether mail services accept only ``uid``'s app passwords (the main password
        then opens the web page alone)."""
        account = await self.show(uid)
        return await self._app_password_change(
            account.uid, lambda a: dataclasses.replace(a, app_passwords_only=only)
        )

    async def _app_password_change(self, uid: str, change: Callable[[Account], Account]) -> Account:
        try:
            return await self._replace(uid, change)
        except WriteRefused as exc:
            raise WriteRefused(f"this directory cannot store app passwords ({exc})") from None

    async def _replace(self, uid: str, change: Callable[[Account], Account]) -> Account:
        # The directory applies ``change`` to the account as stored when it writes
        # (Directory.modify), never to a copy read earlier: a password change or
        # another edit made meanwhile is kept, not reverted.
        try:
            done = await self.directory.modify(uid, change)
        except AccountNotFound:
            raise AccountNotFound(f"no account {uid}") from None
        await self.engine.flush_cache(sorted({*done.before.logins(), *done.after.logins()}))
        await self._record_change(done.after.uid, changed_fields(done.before, done.after))
        return done.after

    async def set_password(
        self, uid: str, password: bytes | None = None, *, scheme: str | None = None
    ) -> bytes | None:
        """Store a new password; with ``password`` None, generate one and return it."""
        generated = password is None
        value = accounts.generate_password() if password is None else password
        account = await self.directory.get(uid)
        if account is None:
            raise AccountNotFound(f"no account {uid}")
        stored = await self._hash(account.uid, value, scheme)
        if not await self.directory.set_password(account.uid, stored):
            raise AccountNotFound(f"no account {uid}")
        await self.engine.flush_cache(list(account.logins()))
        await self.record("account.password", account.uid, ("password",))
        return value if generated else None

    async def secure_account(
        self, uid: str, password: bytes, *, revoke_app_passwords: bool = False
    ) -> Account:
        """The owner reports a login that was not theirs ("This wasn't me" on their
        page, docs/history.md): store the new ``password`` (every web session made
        with the old one ends, on every node: sessions are bound to the stored value),
        with ``revoke_app_passwords`` delete every app password too, forget the
        account's verified logins in every process (the guard's flush fan-out), and
        record it all as one ``account.secured`` entry. Brute-force protection is
        left as it is: a report of a stranger's login is no reason to lift it."""
        account = await self.show(uid)
        stored = await self._hash(account.uid, password, None)
        if not await self.directory.set_password(account.uid, stored):
            raise AccountNotFound(f"no account {uid}")
        fields = ["password"]
        if revoke_app_passwords and account.app_passwords:
            try:
                await self.directory.modify(
                    account.uid, lambda a: dataclasses.replace(a, app_passwords=())
                )
            except WriteRefused:
                pass  # a directory that stores no app passwords has none to revoke
            else:
                fields.append("app_passwords")
        await self.engine.flush_cache(list(account.logins()))
        await self.record("account.secured", account.uid, fields)
        return await self.show(account.uid)

    async def delete(self, uid: str) -> None:
        account = await self.directory.get(uid)
        if account is None or not await self.directory.delete(account.uid):
            raise AccountNotFound(f"no account {uid}")
        await self.engine.flush_cache(list(account.logins()))
        await self.record("account.delete", account.uid)
