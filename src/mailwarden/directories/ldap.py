"""The LDAP directory: accounts in OpenLDAP (or any LDAPv3 server) with the qmail-ldap schema.

:class:`LDAPDirectory` implements the ``Directory`` protocol with the semantics of
:mod:`mailwarden.directories.memory` (the reference). Everything that touches
``python-ldap`` lives in this module; docs/ldap.md describes the mapping, the
schema files (``mailwarden/ldap/*.ldif``) and the failure rules.

Client library. ``python-ldap`` (the maintained binding of OpenLDAP's libldap)
in a bounded thread pool of our own. ``bonsai`` is asyncio-native, but
python-ldap is the binding every distribution ships, its timeouts
(``OPT_NETWORK_TIMEOUT``, ``LDAPObject.timeout``) are libldap's own, and an
operation abandoned by ``asyncio.wait_for`` cannot corrupt anything shared: the
connection it ran on is thrown away, never reused.

Pool and failover. ``pool_size`` slots, each holding at most one connection
bound as the service account (``bind_dn``). An operation takes a slot (waiting
at most ``timeout``), connects it if needed to the first server of ``servers``
that is not resting, and runs with the remaining time of its ``timeout``. When
a server is down or the connection breaks, the server rests for a backoff
(doubling from 0.1 s up to ``backoff_max``) and a *read* is retried at once on
the next server, so one server down out of two is invisible to clients. Writes
are never retried: the first attempt may have been applied. A server comes back
by itself: once its rest is over, the next connection tries it again.

Failure rule. Any outage, timeout or unexpected LDAP result is
:class:`~mailwarden.errors.DirectoryUnavailable`, which the engine turns into a
temporary failure: never into a wrong password. Only results that *mean*
something (no such entry, entry exists, no such value, a syntax the schema
refuses) are interpreted.

Uniqueness. LDAP has no unique constraint across attributes, so create,
replace, update and bulk_upsert search for taken uids and addresses before
writing. Two administrators creating the same address in the same instant can
both succeed; the daemon itself never creates accounts, so this is accepted and
documented. ``bulk_upsert`` checks the whole batch before its first write, so an
invalid or clashing batch writes nothing; an outage in the middle of the writes
can leave part of it written (LDAP has no multi-entry transaction everywhere).

Addresses. ``mail`` and ``mailAlternateAddress`` are IA5 strings in the
standard schemas, so non-ASCII addresses are refused with InvalidAccount.

Rebind. With ``verify = "rebind"`` (qmail-ldap's ``ldaprebind``)
:meth:`LDAPDirectory.verify_password` checks a password by binding as the
account's entry on a fresh connection; the engine calls it instead of the
scheme registry. An empty password is refused before any bind: LDAP treats a
simple bind with an empty password as an anonymous bind, which *succeeds*.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

import ldap  # type: ignore[import-untyped]
import ldap.dn  # type: ignore[import-untyped]
import ldap.filter  # type: ignore[import-untyped]

from mailwarden.config import LdapConfig
from mailwarden.directories.base import (
    ALL_LOGIN_ATTRIBUTES,
    BulkReport,
    LoginAttribute,
    Modified,
    fingerprint_key,
    login_key,
)
from mailwarden.directories.bulk import (
    judge_clashes,
    settle_batch,
    settle_existing,
    without_refused,
)
from mailwarden.directories.memory import (
    apply_changes,
    check_account,
    check_password,
    glob_regex,
)
from mailwarden.errors import (
    AccountChanged,
    AccountExists,
    AccountNotFound,
    DirectoryUnavailable,
    InvalidAccount,
)
from mailwarden.lograte import RateLimitedLog
from mailwarden.model import PROFILE_FIELDS, Account, AccountStatus, Profile

log = logging.getLogger("mailwarden.directory.ldap")

T = TypeVar("T")
Entry = dict[str, list[bytes]]

# Logical field -> LDAP attribute, the qmail-ldap schema plus mailwarden's
# auxiliary class. ``[ldap] attributes`` overrides single names.
DEFAULT_ATTRIBUTES: Mapping[str, str] = MappingProxyType(
    {
        "uid": "uid",
        "mail": "mail",
        "alternate": "mailAlternateAddress",
        "password": "userPassword",
        "status": "accountStatus",
        "mail_host": "mailHost",
        "home": "homeDirectory",
        "mail_location": "mailMessageStore",
        "uid_number": "qmailUID",
        "gid_number": "qmailGID",
        "quota_bytes": "mailQuotaSize",
        "quota_messages": "mailQuotaCount",
        "services": "mailwardenService",
        "master": "mailwardenMaster",
        "allow_nets": "mailwardenAllowNet",
        "passdb_fields": "mailwardenPassdbField",
        "userdb_fields": "mailwardenUserdbField",
        "pgp_fingerprint": "mailwardenPGPFingerprint",
        "ssh_keys": "mailwardenSSHKey",
        "dns_records": "mailwardenDNSEntry",
        "name": "mailwardenName",
        "c": "c",
        "l": "l",
        "telephone_number": "telephoneNumber",
        "facsimile_telephone_number": "facsimileTelephoneNumber",
        "postal_address": "postalAddress",
        "postal_code": "postalCode",
        "login_shell": "loginShell",
        "email_forward": "mailwardenEmailForward",
        "irc_nick": "mailwardenIrcNick",
        "on_vacation": "mailwardenOnVacation",
        "labeled_uri": "labeledURI",
        "latitude": "mailwardenLatitude",
        "longitude": "mailwardenLongitude",
    }
)

_TEXT_FIELDS = ("mail_host", "home", "mail_location", "pgp_fingerprint")
_INT_FIELDS = ("uid_number", "gid_number", "quota_bytes", "quota_messages")
_LIST_FIELDS = ("allow_nets", "ssh_keys", "dns_records")
_FIELD_MAPS = ("passdb_fields", "userdb_fields")

# qmail-ldap's accountStatus values (qmail-ldap QLDAPINSTALL): "nopop" and
# "noaccess" keep mail flowing but refuse the mailbox services; here they are
# per-service switches on an active account.
_QMAIL_SERVICE_STATUS: Mapping[str, Mapping[str, bool]] = MappingProxyType(
    {
        "nopop": MappingProxyType({"pop3": False}),
        "noaccess": MappingProxyType({"pop3": False, "imap": False}),
    }
)

# Results that mean "this server cannot answer now": drop the connection, rest the
# server, and (for reads) try the next one.
_CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    ldap.SERVER_DOWN,
    ldap.CONNECT_ERROR,
    ldap.TIMEOUT,
    ldap.BUSY,
    ldap.UNAVAILABLE,
)
_RETRYABLE: tuple[type[BaseException], ...] = (*_CONNECTION_ERRORS, TimeoutError)
# The schema refuses a value: the administrator's input, not an outage.
_VALUE_ERRORS: tuple[type[Exception], ...] = (
    ldap.INVALID_SYNTAX,
    ldap.CONSTRAINT_VIOLATION,
    ldap.OBJECT_CLASS_VIOLATION,
    ldap.UNDEFINED_TYPE,
    ldap.INVALID_DN_SYNTAX,
    ldap.TYPE_OR_VALUE_EXISTS,
)

_BACKOFF_START = 0.1

#: How often :meth:`LDAPDirectory.modify` reads and tries again when another writer
#: changed the entry between its read and its write, before AccountChanged.
MODIFY_ATTEMPTS = 8


# Attributes without an equality matching rule (RFC 4519 gives facsimileTelephoneNumber
# none): a value cannot be deleted by naming it, so _rewrite replaces them whole (the
# last writer wins on that attribute alone). Others are learnt from the server's
# "inappropriate matching" answer.
_NO_EQUALITY = frozenset({"facsimiletelephonenumber", "mailreplytext"})


class _Conflict(Exception):
    """A compare-and-swap modify found the entry changed since it was read."""


def _b(text: str) -> bytes:
    return text.encode("utf-8")


def _s(value: bytes) -> str:
    return value.decode("utf-8", "replace")


@dataclass(slots=True)
class _Slot:
    conn: Any = None  # an ldap.ldapobject.LDAPObject bound as the service account
    server: str = ""


class _Servers:
    """Which servers may be tried now, and how long each failed one rests."""

    def __init__(self, urls: Sequence[str], backoff_max: float) -> None:
        self.urls = tuple(urls)
        self.backoff_max = backoff_max
        self._rest_until: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        # An outage fails every request: one line per server every few seconds.
        self._log = RateLimitedLog(log)

    def candidates(self) -> list[str]:
        """Servers to try, in configured order, resting ones left out."""
        now = time.monotonic()
        return [u for u in self.urls if self._rest_until.get(u, 0.0) <= now]

    def next(self, tried: set[str]) -> str | None:
        """The server to connect to next within one operation, or None.

        Servers not resting come first, in configured order; a resting server is
        tried only when every other one already failed this operation (it may
        have come back before its rest is over).
        """
        fresh = [u for u in self.candidates() if u not in tried]
        if fresh:
            return fresh[0]
        resting = sorted(
            (u for u in self.urls if u not in tried), key=lambda u: self._rest_until.get(u, 0.0)
        )
        return resting[0] if resting else None

    def failed(self, url: str) -> None:
        backoff = min(self._backoff.get(url, _BACKOFF_START / 2) * 2, self.backoff_max)
        self._backoff[url] = backoff
        self._rest_until[url] = time.monotonic() + backoff
        self._log.warning(url, "ldap server %s failed; resting %.1f s", url, backoff)

    def worked(self, url: str) -> None:
        if self._backoff.pop(url, None) is not None:
            self._rest_until.pop(url, None)
            left_out = self._log.clear(url)
            log.info("ldap server %s is back (%d failure lines left out)", url, left_out)


class LdapMapping:
    """Accounts to LDAP entries and back, by ``[ldap]``'s attribute mapping.

    No I/O: the directory uses it, and so do ``mailwarden import/export ldif``.
    """

    def __init__(self, config: LdapConfig) -> None:
        self.config = config
        self.attrs: Mapping[str, str] = MappingProxyType(
            {**DEFAULT_ATTRIBUTES, **config.attributes}
        )

    def entry_of(self, account: Account, base_dn: str) -> tuple[str, dict[str, list[bytes]]]:
        """``(dn, attributes)`` of ``account`` as an LDIF record; InvalidAccount."""
        values = {k: v for k, v in self._values(account).items() if v}
        dn = f"{self.attrs['uid']}={ldap.dn.escape_dn_chars(account.uid)},{base_dn}"
        return dn, {"objectClass": self._object_classes(account), **values}

    def account_of(self, attributes: Mapping[str, list[bytes]]) -> Account | None:
        """The account an LDIF record describes; None if it has no uid (not an account)."""
        entry = {k.lower(): list(v) for k, v in attributes.items()}
        if not entry.get(self.attrs["uid"].lower()):
            return None
        return self._account(entry)

    def _first(self, entry: Entry, field: str) -> str | None:
        values = entry.get(self.attrs[field].lower())
        return _s(values[0]) if values else None

    def _all(self, entry: Entry, field: str) -> list[str]:
        return [_s(v) for v in entry.get(self.attrs[field].lower(), [])]

    def _account(self, entry: Entry) -> Account:
        c = self.config
        uid = self._first(entry, "uid") or ""
        services: dict[str, bool] = {}
        raw_status = (self._first(entry, "status") or "active").lower()
        services.update(_QMAIL_SERVICE_STATUS.get(raw_status, {}))
        try:
            status = AccountStatus(raw_status)
        except ValueError:
            # nopop/noaccess are active accounts with services off; anything unknown
            # is refused rather than guessed to be active.
            status = (
                AccountStatus.ACTIVE
                if raw_status in _QMAIL_SERVICE_STATUS
                else AccountStatus.DISABLED
            )
        for switch in self._all(entry, "services"):
            name, _, value = switch.partition("=")
            services[name.strip().lower()] = value.strip().lower() in ("on", "yes", "true", "1")
        numbers: dict[str, int | None] = {}
        defaults = {
            "uid_number": c.default_uid_number,
            "gid_number": c.default_gid_number,
            "quota_bytes": c.default_quota_bytes,
            "quota_messages": c.default_quota_messages,
        }
        for name in _INT_FIELDS:
            text = self._first(entry, name)
            try:
                numbers[name] = int(text) if text is not None else (defaults[name] or None)
            except ValueError:
                numbers[name] = defaults[name] or None
        profile = Profile(**{n: self._first(entry, n) for n in PROFILE_FIELDS})
        mail_location = self._first(entry, "mail_location") or c.default_mail_location or None
        return Account(
            uid=uid,
            mail=self._first(entry, "mail"),
            alternate_addresses=tuple(self._all(entry, "alternate")),
            password=self._first(entry, "password") or "",
            status=status,
            services=MappingProxyType(services),
            mail_host=self._first(entry, "mail_host"),
            home=self._first(entry, "home"),
            mail_location=mail_location,
            master=(self._first(entry, "master") or "").upper() == "TRUE",
            allow_nets=tuple(self._all(entry, "allow_nets")),
            passdb_fields=MappingProxyType(_fields(self._all(entry, "passdb_fields"))),
            userdb_fields=MappingProxyType(_fields(self._all(entry, "userdb_fields"))),
            pgp_fingerprint=self._first(entry, "pgp_fingerprint"),
            ssh_keys=tuple(self._all(entry, "ssh_keys")),
            dns_records=tuple(self._all(entry, "dns_records")),
            profile=profile,
            **numbers,
        )

    def _values(self, account: Account) -> dict[str, list[bytes]]:
        """Every mapped attribute of ``account``: an empty list means "absent"."""
        check_account(account)
        for address in (account.mail, *account.alternate_addresses):
            if address is not None and not address.isascii():
                raise InvalidAccount(
                    f"address {address!r}: LDAP mail attributes hold ASCII (IA5) only"
                )
        a = self.attrs
        out: dict[str, list[bytes]] = {}

        def put(field: str, values: Iterable[str]) -> None:
            out[a[field]] = [_b(v) for v in values]

        put("uid", [account.uid])
        put("mail", [account.mail] if account.mail else [])
        put("alternate", account.alternate_addresses)
        put("password", [account.password] if account.password else [])
        put("status", [account.status.value])
        for name in _TEXT_FIELDS:
            value = getattr(account, name)
            put(name, [value] if value is not None else [])
        for name in _INT_FIELDS:
            number = getattr(account, name)
            put(name, [str(number)] if number is not None else [])
        put(
            "services",
            [f"{k}={'on' if v else 'off'}" for k, v in sorted(account.services.items())],
        )
        put("master", ["TRUE"] if account.master else [])
        for name in _LIST_FIELDS:
            put(name, getattr(account, name))
        for name in _FIELD_MAPS:
            put(name, [f"{k}={v}" for k, v in getattr(account, name).items()])
        profile = account.profile.as_dict()
        for name in PROFILE_FIELDS:
            put(name, [profile[name]] if name in profile else [])
        return out

    def _object_classes(self, account: Account) -> list[bytes]:
        classes = list(self.config.object_classes)
        # qmailUser MUSTs mail: only entries with a primary address can carry it.
        if account.mail:
            classes.append("qmailUser")
        return [_b(c) for c in classes]


class LDAPDirectory(LdapMapping):
    """A :class:`~mailwarden.directories.base.Directory` on an LDAP server pool."""

    def __init__(self, config: LdapConfig) -> None:
        if not config.base_dn:
            raise DirectoryUnavailable("ldap: [ldap] base_dn is not set")
        super().__init__(config)
        self._servers = _Servers(config.servers, config.backoff_max)
        self._slots: asyncio.Queue[_Slot] = asyncio.Queue()
        for _ in range(config.pool_size):
            self._slots.put_nowait(_Slot())
        # Threads blocked on a hung server are abandoned until libldap's own timeout
        # frees them, so there are more threads than slots; still bounded.
        self._executor = ThreadPoolExecutor(
            max_workers=config.pool_size * 4, thread_name_prefix="mailwarden-ldap"
        )
        self._closed = False
        self._read_attrs = sorted({*self.attrs.values(), "objectClass"})
        self._replace_whole: set[str] = set(_NO_EQUALITY)

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

    def _discard(self, slot: _Slot) -> None:
        conn, slot.conn = slot.conn, None
        if conn is None:
            return
        # After close() the executor takes no more work; libldap then closes the
        # socket when the object is freed.
        with contextlib.suppress(RuntimeError):
            self._executor.submit(_quiet_unbind, conn)

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
                    except _RETRYABLE as exc:
                        self._servers.failed(slot.server)
                        last = f"{slot.server}: {_describe(exc)}"
                        continue
                    except ldap.LDAPError as exc:
                        self._servers.failed(slot.server)
                        raise DirectoryUnavailable(
                            f"ldap {slot.server}: {_describe(exc)}"
                        ) from None
                conn = slot.conn
                try:
                    result = await self._in_thread(functools.partial(op, conn), deadline)
                except _RETRYABLE as exc:
                    self._servers.failed(slot.server)
                    self._discard(slot)
                    last = f"{slot.server}: {_describe(exc)}"
                    if not read or isinstance(exc, (TimeoutError, ldap.TIMEOUT)):
                        break
                    continue
                except ldap.LDAPError as exc:
                    # A result op did not expect: the connection may be in any state.
                    self._discard(slot)
                    raise DirectoryUnavailable(f"ldap {slot.server}: {_describe(exc)}") from None
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

    # ------------------------------------------------------------------ mapping

    def _filter(self, inner: str) -> str:
        return f"(&{self.config.filter}{inner})"

    def _eq(self, field: str, value: str) -> str:
        return f"({self.attrs[field]}={ldap.filter.escape_filter_chars(value)})"

    def _search(
        self, conn: Any, inner: str, attrs: list[str] | None = None
    ) -> list[tuple[str, Entry]]:
        found = conn.search_ext_s(
            self.config.base_dn,
            ldap.SCOPE_SUBTREE,
            self._filter(inner),
            attrlist=attrs if attrs is not None else self._read_attrs,
            timeout=self.config.timeout,
        )
        return [(dn, {k.lower(): v for k, v in entry.items()}) for dn, entry in found if dn]

    def _dn(self, uid: str) -> str:
        return f"{self.attrs['uid']}={ldap.dn.escape_dn_chars(uid)},{self.config.base_dn}"

    # ------------------------------------------------------------------ blocking helpers

    def _entry_by_uid(self, conn: Any, uid: str) -> tuple[str, Entry] | None:
        found = self._search(conn, self._eq("uid", uid))
        return found[0] if found else None

    def _clash(self, conn: Any, account: Account, *, own_uid: str | None) -> str | None:
        """Why ``account`` cannot be stored (a taken uid or address), or None."""
        own = login_key(own_uid) if own_uid is not None else None
        if login_key(account.uid) != own and self._entry_by_uid(conn, account.uid) is not None:
            return f"uid {account.uid!r} already exists"
        addresses = [x for x in (account.mail, *account.alternate_addresses) if x]
        if not addresses:
            return None
        terms = "".join(self._eq("mail", x) + self._eq("alternate", x) for x in addresses)
        for _dn, entry in self._search(conn, f"(|{terms})"):
            owner = self._first(entry, "uid") or ""
            if own is not None and login_key(owner) == own:
                continue
            theirs = {
                login_key(x) for x in (*self._all(entry, "mail"), *self._all(entry, "alternate"))
            }
            for address in addresses:
                if login_key(address) in theirs:
                    return f"address {address!r} already belongs to {owner!r}"
        return None

    def _add(self, conn: Any, account: Account) -> None:
        values = self._values(account)
        record = [("objectClass", self._object_classes(account))]
        record.extend((k, v) for k, v in values.items() if v)
        try:
            conn.add_s(self._dn(account.uid), record)
        except ldap.ALREADY_EXISTS:
            raise AccountExists(f"uid {account.uid!r} already exists") from None
        except _VALUE_ERRORS as exc:
            raise InvalidAccount(f"the LDAP server refused the account: {_describe(exc)}") from None

    def _rewrite(self, conn: Any, found: tuple[str, Entry], old_uid: str, account: Account) -> None:
        """Make the entry ``found`` hold exactly ``account`` (renaming it if the uid
        changed), as a compare-and-swap on every attribute it writes: _Conflict if
        another writer changed one of them since ``found`` was read.

        Only attributes whose stored values differ from ``account``'s are written,
        each as a delete of exactly the values read plus an add of the new ones, in
        one modify (which LDAP applies atomically). A delete of a value that is no
        longer there fails the whole modify, so a concurrent change of the same
        attribute is never overwritten, and one of another attribute is left alone.

        The entry keeps its own object classes (its structural class cannot change:
        it may be an inetOrgPerson made by another tool); only the auxiliary classes
        the account needs are added, and ``qmailUser`` is dropped without a mail.
        """
        dn, entry = found
        stored_classes = list(entry.get("objectclass", []))
        classes = {_s(c).lower(): c for c in stored_classes}
        for wanted in self._object_classes(account)[1:]:  # [0] is the structural class
            classes.setdefault(_s(wanted).lower(), wanted)
        if not account.mail:
            classes.pop("qmailuser", None)
        if old_uid != account.uid:
            rdn = f"{self.attrs['uid']}={ldap.dn.escape_dn_chars(account.uid)}"
            try:
                conn.rename_s(dn, rdn, delold=1)
            except ldap.ALREADY_EXISTS:
                raise AccountExists(f"uid {account.uid!r} already exists") from None
            except ldap.NO_SUCH_OBJECT:
                raise _Conflict from None
            dn = ",".join([rdn, *ldap.dn.explode_dn(dn)[1:]])
        mods: list[tuple[int, str, list[bytes] | None]] = []
        stored_names = {_s(c).lower() for c in stored_classes}
        removed = [c for c in stored_classes if _s(c).lower() not in classes]
        added = [c for name, c in classes.items() if name not in stored_names]
        if removed:
            mods.append((ldap.MOD_DELETE, "objectClass", removed))
        if added:
            mods.append((ldap.MOD_ADD, "objectClass", added))
        for attr, vals in self._values(account).items():
            if attr == self.attrs["uid"]:
                continue
            stored = entry.get(attr.lower(), [])
            if stored == vals:
                continue
            if attr.lower() in self._replace_whole:
                mods.append((ldap.MOD_REPLACE, attr, vals or None))
                continue
            if stored:
                mods.append((ldap.MOD_DELETE, attr, list(stored)))
            if vals:
                mods.append((ldap.MOD_ADD, attr, vals))
        if not mods:
            return
        try:
            conn.modify_s(dn, mods)
        except (ldap.NO_SUCH_OBJECT, ldap.NO_SUCH_ATTRIBUTE):
            raise _Conflict from None
        except ldap.INAPPROPRIATE_MATCHING as exc:
            text = _describe(exc)
            named = {
                a.lower() for _op, a, _v in mods if re.search(rf"\b{re.escape(a)}\b", text, re.I)
            }
            if not named - self._replace_whole:
                raise
            self._replace_whole.update(named)  # and try again, replacing those whole
            raise _Conflict from None
        except _VALUE_ERRORS as exc:
            # Adding a value another writer added meanwhile (or a second value to a
            # single-valued attribute another writer filled) also lands here.
            now = self._entry_by_uid(conn, account.uid)
            if now is None or now[1] != entry:
                raise _Conflict from None
            raise InvalidAccount(f"the LDAP server refused the account: {_describe(exc)}") from None

    def _modify_once(
        self, conn: Any, uid: str, change: Callable[[Account], Account]
    ) -> Modified | None:
        """One read-change-write of :meth:`modify`; None if another writer got between."""
        found = self._entry_by_uid(conn, uid)
        if found is None:
            raise AccountNotFound(f"no account with uid {uid!r}")
        current = self._account(found[1])
        if login_key(current.uid) != login_key(uid):
            raise AccountNotFound(f"no account with uid {uid!r}")
        new = change(current)
        self._values(new)
        if (why := self._clash(conn, new, own_uid=current.uid)) is not None:
            raise AccountExists(why)
        try:
            self._rewrite(conn, found, current.uid, new)
        except _Conflict:
            return None
        return Modified(before=current, after=new)

    # ------------------------------------------------------------------ reads

    async def find(
        self, login: str, *, by: Sequence[LoginAttribute] = ALL_LOGIN_ATTRIBUTES
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

    async def find_by_fingerprint(self, fingerprint: str) -> list[Account]:
        # caseIgnoreIA5Match in the schema; spaces are compared away afterwards.
        key = fingerprint_key(fingerprint)
        inner = self._eq("pgp_fingerprint", key)
        found = await self._run(lambda conn: self._search(conn, inner), read=True)
        accounts = [self._account(entry) for _dn, entry in found]
        matched = [a for a in accounts if fingerprint_key(a.pgp_fingerprint or "") == key]
        return sorted(matched, key=lambda a: login_key(a.uid))

    async def iterate(self) -> AsyncIterator[str]:
        attr = self.attrs["uid"]
        found = await self._run(lambda conn: self._search(conn, "", [attr]), read=True)
        uids = [_s(entry[attr.lower()][0]) for _dn, entry in found if entry.get(attr.lower())]
        for uid in sorted(uids, key=login_key):
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
            if any(regex.fullmatch(login_key(n)) for n in account.logins())
        ]
        matched.sort(key=lambda acc: login_key(acc.uid))
        return matched[: max(limit, 0)]

    async def count(self) -> int:
        found = await self._run(lambda conn: self._search(conn, "", ["1.1"]), read=True)
        return len(found)

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
                mods = [(ldap.MOD_REPLACE, attr, [_b(new)] if new else None)]
            elif expected == "":
                if self._first(found[1], "password"):
                    return False
                mods = [(ldap.MOD_ADD, attr, [_b(new)])] if new else []
            else:
                # Delete of the old value + add of the new in one modify: LDAP applies
                # a modify atomically, so this is a compare-and-swap.
                mods = [(ldap.MOD_DELETE, attr, [_b(expected)])]
                if new:
                    mods.append((ldap.MOD_ADD, attr, [_b(new)]))
            if not mods:
                return True
            try:
                conn.modify_s(dn, mods)
            except (ldap.NO_SUCH_ATTRIBUTE, ldap.TYPE_OR_VALUE_EXISTS, ldap.NO_SUCH_OBJECT):
                return False
            return True

        return await self._run(op, read=False)

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

        def op(conn: Any) -> BulkReport:
            existing: dict[str, tuple[str, str]] = {}
            stored: dict[str, set[str]] = {}  # address key -> uid key of its owner
            for _dn, entry in self._search(conn, ""):
                acc = self._account(entry)
                key = login_key(acc.uid)
                if key in batch:
                    existing[key] = (_dn, acc.uid)
                for address in (acc.mail, *acc.alternate_addresses):
                    if address:
                        stored.setdefault(login_key(address), set()).add(key)
            final, obsolete = settle_existing(batch, existing, report, replace=replace)
            replacing = {login_key(uid) for _dn, uid in obsolete}
            refused = judge_clashes(batch, stored, replacing, skip=skip_refused)
            # Everything is checked before the first write: a clash without
            # skip_refused has raised in judge_clashes and nothing is written.
            for dn, uid in obsolete:
                if login_key(uid) not in refused:
                    conn.delete_s(dn)
            for key, account in batch.items():
                if key not in refused:
                    self._add(conn, account)
            return without_refused(final, refused, replacing)

        return await self._run(op, read=False)

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
                except _CONNECTION_ERRORS:
                    self._servers.failed(url)
                    continue
                _quiet_unbind(conn)
                return real
            raise DirectoryUnavailable("ldap: no server answered the rebind")

        loop = asyncio.get_running_loop()
        try:
            return await self._in_thread(bind, loop.time() + self.config.timeout)
        except TimeoutError:
            raise DirectoryUnavailable("ldap: rebind timed out") from None
        except ldap.LDAPError as exc:
            raise DirectoryUnavailable(f"ldap rebind: {_describe(exc)}") from None

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        while not self._slots.empty():
            slot = self._slots.get_nowait()
            self._discard(slot)
        self._executor.shutdown(wait=False)


def _quiet_unbind(conn: Any) -> None:
    with contextlib.suppress(ldap.LDAPError):
        conn.unbind_s()


def _fields(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, _, value = item.partition("=")
        out[name] = value
    return out


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ldap.LDAPError) and exc.args and isinstance(exc.args[0], dict):
        info = exc.args[0]
        return str(info.get("desc", type(exc).__name__)) + (
            f" ({info['info']})" if info.get("info") else ""
        )
    return str(exc) or type(exc).__name__
