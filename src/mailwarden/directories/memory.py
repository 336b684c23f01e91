"""The in-memory directory: the reference semantics of the ``Directory`` protocol.

:class:`MemoryDirectory` keeps accounts in dicts. Tests use it instead of patching,
and every other backend must behave exactly as it does: the contract suite in
``tests/directories/test_directory_contract.py`` runs against each of them.

Every backend applies the same rules, so that all of them accept, refuse and
count the same things:

* :func:`mailwarden.accounts.rules.check_account` - what a storable account looks
  like (the one set of account rules, with what an administrator may set);
* :func:`apply_changes` (here) - how :meth:`Directory.update` turns field changes
  into a new account;
* bulk writes: :mod:`mailwarden.directories.bulk`.

Semantics that the protocol leaves open and this module fixes:

* Logins live in two name spaces, each unique case-insensitively: *uids*, and
  *addresses* (mail and alternate addresses together). An address may equal
  another account's uid; :meth:`find` then returns the uid's owner.
* One account may not list the same address twice (mail and alternates).
* :meth:`set_password` returns False for an unknown uid (nothing was written).
* :meth:`bulk_upsert` is all or nothing: an invalid account or an address clash
  raises and nothing is written (with ``skip_refused``, clashing accounts are left
  out and reported, the rest written: ``bulk.write_one_by_one``). A uid given twice
  in one batch is created and then replaced by the later account (or, without
  ``replace``, the later one is skipped); clashes are judged on the batch's outcome
  (``bulk.settle_existing``).
* Order is by lower-cased uid (``iterate``, ``search``).

No I/O happens here; the methods are async only to satisfy the protocol.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

from mailwarden.accounts.rules import (
    MAPPING_FIELDS,
    TUPLE_FIELDS,
    check_account,
    check_password,
)
from mailwarden.directories.base import (
    ALL_LOGIN_ATTRIBUTES,
    BulkReport,
    LoginAttribute,
    Modified,
    QueryContext,
    fingerprint_key,
    login_key,
)
from mailwarden.directories.bulk import (
    settle_batch,
    settle_existing,
    without_refused,
    write_one_by_one,
)
from mailwarden.errors import (
    AccountExists,
    AccountNotFound,
    DirectoryUnavailable,
    InvalidAccount,
)
from mailwarden.model import (
    PROFILE_FIELDS,
    Account,
    AccountStatus,
    AppPasswordUsed,
    Listed,
    Profile,
)

T = TypeVar("T")

_ACCOUNT_FIELDS = frozenset(f.name for f in dataclasses.fields(Account))


def frozen(account: Account) -> Account:
    """A checked ``account`` whose containers are tuples and read-only copies.

    What the memory directory stores and returns: the caller's dicts and lists
    can then change without changing the stored account.
    """
    return dataclasses.replace(
        account,
        alternate_addresses=tuple(account.alternate_addresses),
        allow_nets=tuple(account.allow_nets),
        ssh_keys=tuple(account.ssh_keys),
        dns_records=tuple(account.dns_records),
        app_passwords=tuple(
            dataclasses.replace(app, services=tuple(app.services))
            for app in sorted(account.app_passwords, key=lambda app: app.order)
        ),
        services=MappingProxyType(dict(account.services)),
        passdb_fields=MappingProxyType(dict(account.passdb_fields)),
        userdb_fields=MappingProxyType(dict(account.userdb_fields)),
    )


def apply_changes(account: Account, changes: Mapping[str, Any]) -> Account:
    """``account`` with ``changes`` applied (names as on :class:`Account`), checked.

    Values are taken in the forms an administrator's tool naturally has: a status
    may be its string value, sequences may be lists, ``profile`` may be a mapping
    of profile field names. Anything else is :class:`InvalidAccount`.
    """
    unknown = sorted(set(changes) - _ACCOUNT_FIELDS)
    if unknown:
        raise InvalidAccount(f"unknown account field(s): {', '.join(unknown)}")
    coerced: dict[str, Any] = {}
    for name, given in changes.items():
        value: Any = given
        if name == "status" and isinstance(given, str):
            try:
                value = AccountStatus(given)
            except ValueError:
                raise InvalidAccount(f"unknown status {given!r}") from None
        elif name == "profile" and isinstance(given, Mapping):
            extra = sorted(set(given) - set(PROFILE_FIELDS))
            if extra:
                raise InvalidAccount(f"unknown profile field(s): {', '.join(extra)}")
            value = Profile(**given)
        elif name in TUPLE_FIELDS and isinstance(given, list):
            value = tuple(given)
        elif name in MAPPING_FIELDS and isinstance(given, Mapping):
            value = MappingProxyType(dict(given))
        coerced[name] = value
    new = dataclasses.replace(account, **coerced)
    check_account(new)
    return frozen(new)


def address_logins(account: Account) -> list[tuple[str, LoginAttribute, str]]:
    """``(key, kind, name)`` for each address of a checked account: mail first."""
    out: list[tuple[str, LoginAttribute, str]] = []
    if account.mail is not None:
        out.append((login_key(account.mail), "mail", account.mail))
    out.extend((login_key(a), "alternate", a) for a in account.alternate_addresses)
    return out


def glob_regex(pattern: str) -> re.Pattern[str]:
    """The ``*``/``?`` wildcard ``pattern`` as a regex over lower-cased logins."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in login_key(pattern)]
    return re.compile("".join(parts), re.DOTALL)


def matches(regex: re.Pattern[str], account: Account) -> bool:
    """Whether the account's uid or an address matches ``regex`` (:func:`glob_regex`):
    what :meth:`Directory.search` selects."""
    return any(regex.fullmatch(login_key(name)) for name in account.logins())


@dataclasses.dataclass(slots=True)
class _State:
    """The directory's data; copied whole by bulk_upsert so a failed batch leaves no trace."""

    accounts: dict[str, Account] = dataclasses.field(default_factory=dict)
    # lower-cased address -> (uid key of its owner, mail or alternate)
    addresses: dict[str, tuple[str, LoginAttribute]] = dataclasses.field(default_factory=dict)

    def copy(self) -> _State:
        return _State(dict(self.accounts), dict(self.addresses))

    def insert(self, account: Account) -> None:
        """Add a checked account whose uid is free; AccountExists on an address clash."""
        key = login_key(account.uid)
        if key in self.accounts:
            raise AccountExists(f"uid {account.uid!r} already exists")
        logins = address_logins(account)
        for address_key, _kind, name in logins:
            owner = self.addresses.get(address_key)
            if owner is not None:
                raise AccountExists(
                    f"address {name!r} already belongs to {self.accounts[owner[0]].uid!r}"
                )
        self.accounts[key] = account
        for address_key, kind, _name in logins:
            self.addresses[address_key] = (key, kind)

    def remove(self, key: str) -> Account | None:
        account = self.accounts.pop(key, None)
        if account is not None:
            for address_key, _kind, _name in address_logins(account):
                del self.addresses[address_key]
        return account

    def overwrite(self, key: str, account: Account) -> None:
        """Replace the account under ``key`` by ``account``, atomically."""
        old = self.remove(key)
        try:
            self.insert(account)
        except AccountExists:
            if old is not None:
                self.insert(old)
            raise


class MemoryDirectory:
    """A :class:`~mailwarden.directories.base.Directory` held in dicts.

    ``accounts`` are stored at construction (AccountExists / InvalidAccount as
    :meth:`create` would raise). :meth:`set_unavailable` makes every call fail
    with DirectoryUnavailable, so tests can exercise outages without patching.
    """

    def __init__(self, accounts: Iterable[Account] = ()) -> None:
        self._state = _State()
        self._closed = False
        self._failure: str | None = None
        self._version = 0
        for account in accounts:
            check_account(account)
            self._state.insert(frozen(account))

    def set_unavailable(self, detail: str | None) -> None:
        """From now on every call raises DirectoryUnavailable(detail); None: work again."""
        self._failure = detail

    def data_version(self) -> int | None:
        """A number that changes with every write (the engine's negative cache
        drops its entries when it does; see SQLiteDirectory.data_version)."""
        return self._version

    def _check(self) -> _State:
        if self._closed:
            raise DirectoryUnavailable("memory directory: closed")
        if self._failure is not None:
            raise DirectoryUnavailable(self._failure)
        return self._state

    async def find(
        self,
        login: str,
        *,
        by: Sequence[LoginAttribute] = ALL_LOGIN_ATTRIBUTES,
        context: QueryContext | None = None,
    ) -> Account | None:
        state = self._check()
        key = login_key(login)
        if "uid" in by:
            account = state.accounts.get(key)
            if account is not None:
                return account
        owner = state.addresses.get(key)
        if owner is not None and owner[1] in by:
            return state.accounts[owner[0]]
        return None

    async def get(self, uid: str) -> Account | None:
        return self._check().accounts.get(login_key(uid))

    async def get_many(self, uids: Sequence[str]) -> list[Account]:
        accounts = self._check().accounts
        found = {key: accounts.get(key) for key in map(login_key, uids)}
        return [account for account in found.values() if account is not None]

    async def find_by_fingerprint(self, fingerprint: str) -> list[Account]:
        key = fingerprint_key(fingerprint)
        accounts = self._check().accounts
        return [
            accounts[uid]
            for uid in sorted(accounts)
            if accounts[uid].pgp_fingerprint is not None
            and fingerprint_key(accounts[uid].pgp_fingerprint or "") == key
        ]

    async def iterate(self) -> AsyncIterator[str]:
        accounts = self._check().accounts
        for key in sorted(accounts):
            account = accounts.get(key)
            if account is not None:
                yield account.uid

    async def search(self, pattern: str, *, limit: int = 1000) -> list[Account]:
        state = self._check()
        regex = glob_regex(pattern)
        matched = {key for key in state.accounts if regex.fullmatch(key)}
        matched.update(
            owner for address, (owner, _kind) in state.addresses.items() if regex.fullmatch(address)
        )
        return [state.accounts[key] for key in sorted(matched)[: max(limit, 0)]]

    async def sample(self, count: int) -> list[Account]:
        return list(itertools.islice(self._check().accounts.values(), max(count, 0)))

    async def listing(self, pattern: str = "*") -> AsyncIterator[Listed]:
        # Everything is in memory already: the search, unlimited.
        for account in await self.search(pattern, limit=len(self._check().accounts)):
            yield Listed.of(account)

    async def create(self, account: Account) -> None:
        state = self._check()
        check_account(account)
        state.insert(frozen(account))
        self._version += 1

    async def replace(self, account: Account) -> None:
        state = self._check()
        check_account(account)
        key = login_key(account.uid)
        if key not in state.accounts:
            raise AccountNotFound(f"no account with uid {account.uid!r}")
        state.overwrite(key, frozen(account))
        self._version += 1

    async def update(self, uid: str, changes: Mapping[str, Any]) -> Account:
        return (await self.modify(uid, lambda current: apply_changes(current, changes))).after

    async def modify(self, uid: str, change: Callable[[Account], Account]) -> Modified:
        # No await between the read and the write: nothing else runs in between.
        state = self._check()
        key = login_key(uid)
        current = state.accounts.get(key)
        if current is None:
            raise AccountNotFound(f"no account with uid {uid!r}")
        new = change(current)
        check_account(new)
        new = frozen(new)
        new_key = login_key(new.uid)
        if new_key != key and new_key in state.accounts:
            raise AccountExists(f"uid {new.uid!r} already exists")
        state.overwrite(key, new)
        self._version += 1
        return Modified(before=current, after=new)

    async def set_password(self, uid: str, new: str, *, expected: str | None = None) -> bool:
        state = self._check()
        check_password(new)
        key = login_key(uid)
        current = state.accounts.get(key)
        if current is None or (expected is not None and current.password != expected):
            return False
        state.accounts[key] = dataclasses.replace(current, password=new)
        self._version += 1
        return True

    async def record_app_password_uses(self, uses: Sequence[AppPasswordUsed]) -> None:
        accounts = self._check().accounts
        for used in uses:
            key = login_key(used.uid)
            current = accounts.get(key)
            if current is None:
                continue
            apps = tuple(
                dataclasses.replace(app, last_used=used.use) if app.id == used.app_password else app
                for app in current.app_passwords
            )
            # In place, like set_password: the logins, and so the address index, stay.
            accounts[key] = dataclasses.replace(current, app_passwords=apps)

    async def delete(self, uid: str) -> bool:
        removed = self._check().remove(login_key(uid)) is not None
        self._version += removed
        return removed

    async def bulk_upsert(
        self, accounts: Iterable[Account], *, replace: bool, skip_refused: bool = False
    ) -> BulkReport:
        original = self._check()
        state = original.copy()
        batch, report = settle_batch(
            accounts, replace=replace, check=check_account, skip_invalid=skip_refused
        )
        existing = {key: key for key in batch if key in state.accounts}
        report, obsolete = settle_existing(batch, existing, report, replace=replace)
        try:
            for key in obsolete:
                state.remove(key)
            for account in batch.values():
                state.insert(frozen(account))
        except AccountExists:
            if not skip_refused:
                raise
            state = original.copy()
            replacing = set(obsolete)

            def write_one(key: str, account: Account, replaces: bool) -> None:
                old = state.remove(key) if replaces else None
                try:
                    state.insert(frozen(account))
                except AccountExists:
                    if old is not None:
                        state.insert(old)  # its addresses were free a moment ago
                    raise

            refused = write_one_by_one(batch, replacing, write_one)
            report = without_refused(report, refused, replacing)
        self._state = state
        self._version += 1
        return report

    async def count(self) -> int:
        return len(self._check().accounts)

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        self._closed = True
