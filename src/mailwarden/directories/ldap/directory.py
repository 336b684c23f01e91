"""The :class:`LDAPDirectory` class: the pooled operations, reads, writes with
compare-and-swap, and password verification by bind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import ldap  # type: ignore[import-untyped]
import ldap.dn  # type: ignore[import-untyped]
import ldap.filter  # type: ignore[import-untyped]
from mailwarden.accounts.rules import check_password
from mailwarden.config import LdapConfig
from mailwarden.directories.base import (
    ALL_LOGIN_ATTRIBUTES,
    BulkReport,
    LoginAttribute,
    Modified,
    QueryContext,
    Refusal,
    fingerprint_key,
    login_key,
)
from mailwarden.directories.bulk import (
    judge_clashes,
    settle_batch,
    settle_existing,
    without_refused,
)
from mailwarden.directories.ldap.entries import LdapEntries
from mailwarden.directories.ldap.mapping import (
    Entry,
    app_password_of,
    app_password_value,
    encode_utf8,
)
from mailwarden.directories.ldap.pool import (
    CONNECTION_ERRORS,
    RETRYABLE,
    Servers,
    Slot,
    describe_error,
    quiet_unbind,
)
from mailwarden.directories.memory import apply_changes, glob_regex, matches
from mailwarden.directories.streams import listing_of
from mailwarden.errors import (
    AccountChanged,
    AccountExists,
    DirectoryUnavailable,
    InvalidAccount,
)
from mailwarden.model import Account, AppPasswordUsed, Listed

T = TypeVar("T")

#: How often :meth:`LDAPDirectory.modify` reads and tries again when another writer
#: changed the entry between its read and its write, before AccountChanged.
MODIFY_ATTEMPTS = 8
#: Entries a bulk write adds (or replaces) in one pooled operation, which must end
#: within ``[ldap] timeout`` like every other: 100 writes take well under a second.
WRITE_CHUNK = 100


class LDAPDirectory(LdapEntries):
    """A :class:`~mailwarden.directories.base.Directory` on an LDAP server pool."""

    def __init__(self, config: LdapConfig) -> None:
        if not config.base_dn:
            raise DirectoryUnavailable("ldap: [ldap] base_dn is not set")
        super().__init__(config)
        self._servers = Servers(config.servers, config.backoff_max)
        self._slots: asyncio.Queue[Slot] = asyncio.Queue()
        for _ in range(config.pool_size):
            self._slots.put_nowait(Slot())
        # Threads blocked on a hung server are abandoned until libldap's own timeout
        # frees them, so there are more threads than slots; still bounded.
        self._executor = ThreadPoolExecutor(
            max_workers=config.pool_size * 4, thread_name_prefix="mailwarden-ldap"
        )
        self._closed = False

    @classmethod
    async def open(cls, config: LdapConfig) -> LDAPDirectory:
        """A directory on ``config``'s servers; DirectoryUnavailable if none answers."""
        directory = cls(config)
        try:
            await directory.ping()
        except BaseException:
            await directory.close()
            raise
        return directory

    # ------------------------------------------------------------------ connections

    def _connect(self, url: str, bind: tuple[str, str] | None = None) -> Any:
        """A new connection to ``url`` bound as the service account, or as ``bind``."""
        c = self.config
        bind_dn, bind_password = bind if bind is not None else (c.bind_dn, c.bind_password)
        conn = ldap.initialize(url, bytes_mode=False)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, c.timeout)
        conn.set_option(ldap.OPT_TIMEOUT, c.timeout)
        conn.timeout = c.timeout
        if c.ca_file:
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, c.ca_file)
        if c.tls == "starttls" or url.startswith("ldaps://"):
            # Certificates are always verified: a login sent to an impostor is a leak.
            conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
            conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        if c.tls == "starttls" and url.startswith("ldap://"):
            conn.start_tls_s()
        conn.simple_bind_s(bind_dn, bind_password)
        return conn

    @property
    def closed(self) -> bool:
        return self._closed

    def _discard(self, slot: Slot) -> None:
        conn, slot.conn = slot.conn, None
        if conn is None:
            return
        # After close() the executor takes no more work; libldap then closes the
        # socket when the object is freed.
        with contextlib.suppress(RuntimeError):
            self._executor.submit(quiet_unbind, conn)

    async def _run(self, op: Callable[[Any], T], *, read: bool) -> T:
        """Run ``op(connection)`` in the pool within ``timeout``; failures as documented."""
        if self._closed:
            raise DirectoryUnavailable("ldap directory: closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout
        try:
            slot = await asyncio.wait_for(self._slots.get(), self.config.timeout)
        except TimeoutError:
            raise DirectoryUnavailable("ldap: no free connection within the timeout") from None
        try:
            last: str = "no server available"
            tried: set[str] = set()
            for _attempt in range(len(self._servers.urls) + 1):
                if slot.conn is None:
                    url = self._servers.next(tried)
                    if url is None:
                        break
                    tried.add(url)
                    slot.server = url
                    try:
                        slot.conn = await self._in_thread(
                            functools.partial(self._connect, url), deadline
                        )
                    except ldap.INVALID_CREDENTIALS:
                        raise DirectoryUnavailable(
                            f"ldap {slot.server}: the service account bind was refused"
                        ) from None
                    except RETRYABLE as exc:
                        self._servers.failed(slot.server)
                        last = f"{slot.server}: {describe_error(exc)}"
                        continue
                    except ldap.LDAPError as exc:
                        self._servers.failed(slot.server)
                        raise DirectoryUnavailable(
                            f"ldap {slot.server}: {describe_error(exc)}"
                        ) from None
                conn = slot.conn
                try:
                    result = await self._in_thread(functools.partial(op, conn), deadline)
                except RETRYABLE as exc:
                    self._servers.failed(slot.server)
                    self._discard(slot)
                    last = f"{slot.server}: {describe_error(exc)}"
                    if not read or isinstance(exc, (TimeoutError, ldap.TIMEOUT)):
                        break
                    continue
                except ldap.LDAPError as exc:
                    # A result op did not expect: the connection may be in any state.
                    self._discard(slot)
                    raise DirectoryUnavailable(
                        f"ldap {slot.server}: {describe_error(exc)}"
                    ) from None
                self._servers.worked(slot.server)
                return result
            raise DirectoryUnavailable(f"ldap: {last}")
        finally:
            if self.closed:
                self._discard(slot)  # an operation that outlived close()
            self._slots.put_nowait(slot)

    async def _in_thread(self, fn: Callable[[], T], deadline: float) -> T:
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError
        return await asyncio.wait_for(loop.run_in_executor(self._executor, fn), remaining)

    async def find(
        self,
        login: str,
        *,
        by: Sequence[LoginAttribute] = ALL_LOGIN_ATTRIBUTES,
        context: QueryContext | None = None,
    ) -> Account | None:
        terms = []
        if "uid" in by:
            terms.append(self._eq("uid", login))
        if "mail" in by:
            terms.append(self._eq("mail", login))
        if "alternate" in by:
            terms.append(self._eq("alternate", login))
        if not terms:
            return None
        found = await self._run(lambda conn: self._search(conn, f"(|{''.join(terms)})"), read=True)
        accounts = [self._account(entry) for _dn, entry in found]
        key = login_key(login)
        # The uid wins over another account's address (memory.py's rule).
        for kind in ("uid", "mail", "alternate"):
            if kind not in by:
                continue
            for account in accounts:
                names = {
                    "uid": [account.uid],
                    "mail": [account.mail] if account.mail else [],
                    "alternate": list(account.alternate_addresses),
                }[kind]
                if key in (login_key(n) for n in names):
                    return account
        return None

    async def get(self, uid: str) -> Account | None:
        found = await self._run(lambda conn: self._entry_by_uid(conn, uid), read=True)
        if found is None:
            return None
        account = self._account(found[1])
        return account if login_key(account.uid) == login_key(uid) else None

    async def get_many(self, uids: Sequence[str]) -> list[Account]:
        wanted: dict[str, str] = {}
        for uid in uids:
            wanted.setdefault(login_key(uid), uid)
        if not wanted:
            return []
        terms = [self._eq("uid", uid) for uid in wanted.values()]
        entries = await self._run(lambda conn: self._search_any(conn, terms), read=True)
        found: dict[str, Account] = {}
        for _dn, entry in entries:
            account = self._account(entry)
            found.setdefault(login_key(account.uid), account)
        return [found[key] for key in wanted if key in found]

    async def find_by_fingerprint(self, fingerprint: str) -> list[Account]:
        # caseIgnoreIA5Match in the schema; spaces are compared away afterwards.
        key = fingerprint_key(fingerprint)
        inner = self._eq("pgp_fingerprint", key)
        found = await self._run(lambda conn: self._search(conn, inner), read=True)
        accounts = [self._account(entry) for _dn, entry in found]
        matched = [a for a in accounts if fingerprint_key(a.pgp_fingerprint or "") == key]
        return sorted(matched, key=lambda a: login_key(a.uid))

    async def iterate(self) -> AsyncIterator[str]:
        # Sorted here (the uid attribute has no ordering rule to ask the server
        # for), so the uids are held; only the uids: the search is paged (_uids).
        uids = await self._run(self._uids, read=True)
        uids.sort(key=login_key)
        for uid in uids:
            yield uid

    async def search(self, pattern: str, *, limit: int = 1000) -> list[Account]:
        # LDAP substrings know "*" only: "?" widens to "*" and the exact glob is
        # applied to what comes back.
        parts = [ldap.filter.escape_filter_chars(p) for p in pattern.replace("?", "*").split("*")]
        value = "*".join(parts)
        a = self.attrs
        inner = f"(|({a['uid']}={value})({a['mail']}={value})({a['alternate']}={value}))"
        if "*" not in value:
            inner = "(|" + "".join(self._eq(f, pattern) for f in ("uid", "mail", "alternate")) + ")"
        found = await self._run(lambda conn: self._search(conn, inner), read=True)
        regex = glob_regex(pattern)
        matched = [
            account
            for account in (self._account(entry) for _dn, entry in found)
            if matches(regex, account)
        ]
        matched.sort(key=lambda acc: login_key(acc.uid))
        return matched[: max(limit, 0)]

    async def sample(self, count: int) -> list[Account]:
        if count <= 0:
            return []
        found = await self._run(lambda conn: self._some(conn, count), read=True)
        return [self._account(entry) for _dn, entry in found]

    def listing(self, pattern: str = "*") -> AsyncIterator[Listed]:
        # No order to ask the server for: uids, then batches of whole entries.
        return listing_of(self, pattern)

    async def count(self) -> int:
        return await self._run(self._count, read=True)

    def data_version(self) -> int | None:
        """None: another node or tool may write, and nothing tells us (docs/guard.md)."""
        return None

    async def ping(self) -> None:
        await self._run(
            lambda conn: conn.search_ext_s(
                self.config.base_dn,
                ldap.SCOPE_BASE,
                "(objectClass=*)",
                attrlist=["1.1"],
                timeout=self.config.timeout,
            ),
            read=True,
        )

    # ------------------------------------------------------------------ writes

    async def create(self, account: Account) -> None:
        self._values(account)  # InvalidAccount before any round trip

        def op(conn: Any) -> None:
            if (why := self._clash(conn, account, own_uid=None)) is not None:
                raise AccountExists(why)
            self._add(conn, account)

        await self._run(op, read=False)

    async def replace(self, account: Account) -> None:
        self._values(account)
        await self.modify(account.uid, lambda _current: account)

    async def update(self, uid: str, changes: Mapping[str, Any]) -> Account:
        return (await self.modify(uid, lambda current: apply_changes(current, changes))).after

    async def modify(self, uid: str, change: Callable[[Account], Account]) -> Modified:
        # LDAP has no multi-operation transaction: read, change, then write with a
        # compare-and-swap on what was read (_rewrite); if another writer got in
        # between, read again and apply ``change`` to what it stored.
        for _attempt in range(MODIFY_ATTEMPTS):
            done = await self._run(
                functools.partial(self._modify_once, uid=uid, change=change), read=False
            )
            if done is not None:
                return done
        raise AccountChanged(
            f"account {uid!r} changed meanwhile, {MODIFY_ATTEMPTS} times; nothing was "
            "written, retry"
        )

    async def set_password(self, uid: str, new: str, *, expected: str | None = None) -> bool:
        check_password(new)
        attr = self.attrs["password"]

        def op(conn: Any) -> bool:
            found = self._entry_by_uid(conn, uid)
            if found is None:
                return False
            dn = found[0]
            if expected is None:
                mods = [(ldap.MOD_REPLACE, attr, [encode_utf8(new)] if new else None)]
            elif expected == "":
                if self._first(found[1], "password"):
                    return False
                mods = [(ldap.MOD_ADD, attr, [encode_utf8(new)])] if new else []
            else:
                # Delete of the old value + add of the new in one modify: LDAP applies
                # a modify atomically, so this is a compare-and-swap.
                mods = [(ldap.MOD_DELETE, attr, [encode_utf8(expected)])]
                if new:
                    mods.append((ldap.MOD_ADD, attr, [encode_utf8(new)]))
            if not mods:
                return True
            try:
                conn.modify_s(dn, mods)
            except (ldap.NO_SUCH_ATTRIBUTE, ldap.TYPE_OR_VALUE_EXISTS, ldap.NO_SUCH_OBJECT):
                return False
            return True

        return await self._run(op, read=False)

    async def record_app_password_uses(self, uses: Sequence[AppPasswordUsed]) -> None:
        attr = self.attrs["app_passwords"]

        def op(conn: Any) -> None:
            for used in uses:
                found = self._entry_by_uid(conn, used.uid)
                if found is None:
                    continue
                dn, entry = found
                for raw in entry.get(attr.lower(), []):
                    app = app_password_of(raw.decode("utf-8", "replace"))
                    if app is None or app.id != used.app_password:
                        continue
                    new = app_password_value(dataclasses.replace(app, last_used=used.use))
                    # The old value out, the new in, in one modify: a revocation or
                    # another write meanwhile makes the delete fail, and nothing is lost.
                    mods = [
                        (ldap.MOD_DELETE, attr, [raw]),
                        (ldap.MOD_ADD, attr, [encode_utf8(new)]),
                    ]
                    with contextlib.suppress(
                        ldap.NO_SUCH_ATTRIBUTE, ldap.TYPE_OR_VALUE_EXISTS, ldap.NO_SUCH_OBJECT
                    ):
                        conn.modify_s(dn, mods)
                    break

        if uses:
            await self._run(op, read=False)

    async def delete(self, uid: str) -> bool:
        def op(conn: Any) -> bool:
            found = self._entry_by_uid(conn, uid)
            if found is None:
                return False
            try:
                conn.delete_s(found[0])
            except ldap.NO_SUCH_OBJECT:
                return False
            return True

        return await self._run(op, read=False)

    async def bulk_upsert(
        self, accounts: Iterable[Account], *, replace: bool, skip_refused: bool = False
    ) -> BulkReport:
        # _values: what check_account refuses, and what this schema cannot hold.
        batch, report = settle_batch(
            accounts, replace=replace, skip_invalid=skip_refused, check=self._values
        )
        if not batch:
            return report
        refused: dict[str, Refusal] = {}

        def check(conn: Any) -> tuple[BulkReport, dict[str, tuple[str, Entry]], set[str]]:
            existing: dict[str, tuple[str, Entry]] = {}
            stored: dict[str, set[str]] = {}  # address key -> uid keys of its owners
            for dn, entry in self._batch_entries(conn, batch.values()):
                acc = self._account(entry)
                key = login_key(acc.uid)
                if key in batch:
                    existing[key] = (dn, entry)
                for address in (acc.mail, *acc.alternate_addresses):
                    if address:
                        stored.setdefault(login_key(address), set()).add(key)
            final, _obsolete = settle_existing(batch, existing, report, replace=replace)
            replacing = set(existing) if replace else set()
            refused.update(judge_clashes(batch, stored, replacing, skip=skip_refused))
            return final, existing, replacing

        # Everything is checked before the first write: a clash without skip_refused
        # raises in judge_clashes and nothing is written. The writes then go in
        # chunks, each one operation with its own timeout: a large batch never
        # outlives the timeout while its thread goes on writing.
        final, existing, replacing = await self._run(check, read=True)
        writes = [
            (key, account, existing[key] if key in replacing else None)
            for key, account in batch.items()
            if key not in refused
        ]
        chunks = [writes[i : i + WRITE_CHUNK] for i in range(0, len(writes), WRITE_CHUNK)]
        wave = self.config.pool_size
        for first in range(0, len(chunks), wave):
            # One chunk per pooled connection at once (slapd writes in parallel what
            # one connection would send in turn); every chunk of a wave ends, written
            # or failed, before the first failure is raised: nothing goes on writing.
            done = await asyncio.gather(
                *(
                    self._run(
                        functools.partial(self._write_each, writes=chunk, skip=skip_refused),
                        read=False,
                    )
                    for chunk in chunks[first : first + wave]
                ),
                return_exceptions=True,
            )
            for result in done:
                if isinstance(result, BaseException):
                    raise result
                refused.update(result)
        return without_refused(final, refused, replacing)

    def _write_each(
        self,
        conn: Any,
        writes: list[tuple[str, Account, tuple[str, Entry] | None]],
        *,
        skip: bool,
    ) -> dict[str, Refusal]:
        """Write checked accounts of a bulk write, each replacing its old entry (if
        given); with ``skip``, one the server refuses (a value its schema cannot
        hold, a DN another entry has) is left out, its old entry put back."""
        refused: dict[str, Refusal] = {}
        for key, account, old in writes:
            if old is not None:
                with contextlib.suppress(ldap.NO_SUCH_OBJECT):
                    conn.delete_s(old[0])
            try:
                self._add(conn, account)
            except (AccountExists, InvalidAccount) as exc:
                if old is not None:
                    conn.add_s(old[0], list(old[1].items()))
                if not skip:
                    raise
                refused[key] = Refusal(uid=account.uid, message=str(exc))
        return refused

    # ------------------------------------------------------------------ rebind

    async def verify_password(self, account: Account | None, password: bytes) -> bool | None:
        """Rebind mode: whether ``password`` binds as ``account``'s entry.

        None in search mode (the engine verifies the stored value itself). For an
        unknown user (``account`` None) the same search and bind are made against
        an entry nobody has, and the answer is False: an existing account and a
        missing one cost the same round trips, so timing does not tell them apart.
        """
        if self.config.verify != "rebind":
            return None
        if not password:
            return False  # an empty simple bind is an anonymous bind: it would succeed
        uid = account.uid if account is not None else f"nobody-{secrets.token_hex(8)}"
        found = await self._run(lambda conn: self._entry_by_uid(conn, uid), read=True)
        nowhere = f"uid={uid},{self.config.base_dn}" if self.config.base_dn else f"uid={uid}"
        dn = found[0] if found is not None else nowhere
        real = account is not None and found is not None
        secret = password.decode("utf-8", "surrogateescape")

        def bind() -> bool:
            for url in self._servers.candidates() or list(self._servers.urls):
                try:
                    conn = self._connect(url, (dn, secret))
                except ldap.INVALID_CREDENTIALS:
                    return False
                except CONNECTION_ERRORS:
                    self._servers.failed(url)
                    continue
                quiet_unbind(conn)
                return real
            raise DirectoryUnavailable("ldap: no server answered the rebind")

        loop = asyncio.get_running_loop()
        try:
            return await self._in_thread(bind, loop.time() + self.config.timeout)
        except TimeoutError:
            raise DirectoryUnavailable("ldap: rebind timed out") from None
        except ldap.LDAPError as exc:
            raise DirectoryUnavailable(f"ldap rebind: {describe_error(exc)}") from None

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        while not self._slots.empty():
            slot = self._slots.get_nowait()
            self._discard(slot)
        self._executor.shutdown(wait=False)
