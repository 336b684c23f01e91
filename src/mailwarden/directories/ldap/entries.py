"""The blocking operations on one bound connection, run in the pool's threads:
search, the login-clash check, add, and the compare-and-swap rewrite of an entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ldap  # type: ignore[import-untyped]
import ldap.dn  # type: ignore[import-untyped]
import ldap.filter  # type: ignore[import-untyped]
from ldap.controls import SimplePagedResultsControl  # type: ignore[import-untyped]
from mailwarden.config import LdapConfig
from mailwarden.directories.base import (
    Modified,
    login_key,
)
from mailwarden.directories.ldap.mapping import (
    Entry,
    LdapMapping,
    decode_utf8,
)
from mailwarden.directories.ldap.pool import (
    VALUE_ERRORS,
    describe_error,
)
from mailwarden.errors import (
    AccountExists,
    AccountNotFound,
    EntryChanged,
    InvalidAccount,
)
from mailwarden.model import Account

# Attributes without an equality matching rule (RFC 4519 gives facsimileTelephoneNumber
# none): a value cannot be deleted by naming it, so _rewrite replaces them whole (the
# last writer wins on that attribute alone). Others are learnt from the server's
# "inappropriate matching" answer.
_NO_EQUALITY = frozenset({"facsimiletelephonenumber", "mailreplytext"})

#: Equality terms ORed into one search filter by :meth:`LdapEntries._search_any`: a
#: batch of hundreds of uids or addresses costs a few searches, each filter a few
#: dozen kB (slapd's default limit on a bound client's request is 4 MiB).
SEARCH_TERMS = 500
#: Entries per page of :meth:`LdapEntries._pages` (slapd's default size limit is 500
#: per answer; a page this size is asked for with the paged-results control).
PAGE_SIZE = 500


class LdapEntries(LdapMapping):
    """:class:`LdapMapping` plus the per-connection operations of :class:`LDAPDirectory`."""

    def __init__(self, config: LdapConfig) -> None:
        super().__init__(config)
        self._read_attrs = sorted({*self.attrs.values(), "objectClass"})
        self._replace_whole: set[str] = set(_NO_EQUALITY)

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

    def _search_any(self, conn: Any, terms: list[str]) -> list[tuple[str, Entry]]:
        """The entries that match any of the equality ``terms`` (:meth:`_eq`), each
        once, searched SEARCH_TERMS terms at a time."""
        found: dict[str, tuple[str, Entry]] = {}
        for start in range(0, len(terms), SEARCH_TERMS):
            inner = "(|" + "".join(terms[start : start + SEARCH_TERMS]) + ")"
            for dn, entry in self._search(conn, inner):
                found.setdefault(dn.lower(), (dn, entry))
        return list(found.values())

    def _batch_entries(self, conn: Any, batch: Iterable[Account]) -> list[tuple[str, Entry]]:
        """The stored entries a bulk write of ``batch`` must know of: those with one
        of its uids (replaced or skipped) or one of its addresses (a clash, or an
        address that moves): never the whole tree, whose size would make a
        migration's cost grow with the square of the accounts."""
        terms: list[str] = []
        for account in batch:
            terms.append(self._eq("uid", account.uid))
            for address in (account.mail, *account.alternate_addresses):
                if address:
                    terms += [self._eq("mail", address), self._eq("alternate", address)]
        return self._search_any(conn, terms)

    def _pages(self, conn: Any, attrs: list[str]) -> Iterator[list[tuple[str, Entry]]]:
        """Every account entry (``attrs`` only), a page at a time, read with the
        paged-results control (RFC 2696): only one page of entries is in memory (a
        million entries as python-ldap returns them take most of a gigabyte), and a
        server's size limit for one answer does not cut the list short."""
        # Not critical: a server without paging answers in one page, as before.
        page = SimplePagedResultsControl(False, size=PAGE_SIZE, cookie="")
        while True:
            msgid = conn.search_ext(
                self.config.base_dn,
                ldap.SCOPE_SUBTREE,
                self._filter(""),
                attrlist=attrs,
                serverctrls=[page],
                timeout=self.config.timeout,
            )
            _type, found, _msgid, controls = conn.result3(msgid, timeout=self.config.timeout)
            yield [(dn, {k.lower(): v for k, v in entry.items()}) for dn, entry in found if dn]
            cookie = next((c.cookie for c in controls if c.controlType == page.controlType), b"")
            if not cookie:
                return
            page.cookie = cookie

    def _some(self, conn: Any, size: int) -> list[tuple[str, Entry]]:
        """Up to ``size`` account entries: the first page of a paged search, which is
        then abandoned (RFC 2696: a request of size 0 with the cookie). A server
        without paging sends every entry; only ``size`` are kept."""
        page = SimplePagedResultsControl(False, size=size, cookie="")

        def ask() -> tuple[list[tuple[str, Entry]], bytes]:
            msgid = conn.search_ext(
                self.config.base_dn,
                ldap.SCOPE_SUBTREE,
                self._filter(""),
                attrlist=self._read_attrs,
                serverctrls=[page],
                timeout=self.config.timeout,
            )
            _type, found, _msgid, controls = conn.result3(msgid, timeout=self.config.timeout)
            cookie = next((c.cookie for c in controls if c.controlType == page.controlType), b"")
            return found, cookie

        found, cookie = ask()
        if cookie:
            page.size, page.cookie = 0, cookie
            ask()
        return [(dn, {k.lower(): v for k, v in entry.items()}) for dn, entry in found if dn][:size]

    def _uids(self, conn: Any) -> list[str]:
        """Every account's uid (only the uids are kept: :meth:`_pages`)."""
        attr = self.attrs["uid"].lower()
        return [
            decode_utf8(entry[attr][0])
            for found in self._pages(conn, [attr])
            for _dn, entry in found
            if entry.get(attr)
        ]

    def _count(self, conn: Any) -> int:
        return sum(len(found) for found in self._pages(conn, ["1.1"]))

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
        except VALUE_ERRORS as exc:
            raise InvalidAccount(
                f"the LDAP server refused the account: {describe_error(exc)}"
            ) from None

    def _rewrite(self, conn: Any, found: tuple[str, Entry], old_uid: str, account: Account) -> None:
        """Make the entry ``found`` hold exactly ``account`` (renaming it if the uid
        changed), as a compare-and-swap on every attribute it writes: EntryChanged if
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
        classes = {decode_utf8(c).lower(): c for c in stored_classes}
        for wanted in self._object_classes(account)[1:]:  # [0] is the structural class
            classes.setdefault(decode_utf8(wanted).lower(), wanted)
        if not account.mail:
            classes.pop("qmailuser", None)
        if old_uid != account.uid:
            rdn = f"{self.attrs['uid']}={ldap.dn.escape_dn_chars(account.uid)}"
            try:
                conn.rename_s(dn, rdn, delold=1)
            except ldap.ALREADY_EXISTS:
                raise AccountExists(f"uid {account.uid!r} already exists") from None
            except ldap.NO_SUCH_OBJECT:
                raise EntryChanged from None
            dn = ",".join([rdn, *ldap.dn.explode_dn(dn)[1:]])
        mods: list[tuple[int, str, list[bytes] | None]] = []
        stored_names = {decode_utf8(c).lower() for c in stored_classes}
        removed = [c for c in stored_classes if decode_utf8(c).lower() not in classes]
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
            raise EntryChanged from None
        except ldap.INAPPROPRIATE_MATCHING as exc:
            text = describe_error(exc)
            named = {
                a.lower() for _op, a, _v in mods if re.search(rf"\b{re.escape(a)}\b", text, re.I)
            }
            if not named - self._replace_whole:
                raise
            self._replace_whole.update(named)  # and try again, replacing those whole
            raise EntryChanged from None
        except VALUE_ERRORS as exc:
            # Adding a value another writer added meanwhile (or a second value to a
            # single-valued attribute another writer filled) also lands here.
            now = self._entry_by_uid(conn, account.uid)
            if now is None or now[1] != entry:
                raise EntryChanged from None
            raise InvalidAccount(
                f"the LDAP server refused the account: {describe_error(exc)}"
            ) from None

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
        except EntryChanged:
            return None
        return Modified(before=current, after=new)

    # ------------------------------------------------------------------ reads
