"""Dovecot passwd-file lines to :class:`~mailwarden.model.Account` values and back.

Pure: :func:`parse_line` and :func:`read_accounts` take lines the caller read
(the second keeps the names it has seen in a :class:`LineBook` the caller may give),
:func:`format_account` returns a line for the caller to write. The only I/O is
:func:`bounded_lines`, which reads a text stream the caller opened, so that a
file with one enormous line costs at most ``MAX_LINE_LENGTH`` characters of
memory ("every reader takes a maximum size").

The format (Dovecot 2.3 ``db-passwd-file.c``)::

    user:password:uid:gid:gecos:home:shell:extra fields

Columns after the password are optional. Everything after the seventh colon is
the extra-field list (it may itself contain colons), split on spaces - there is
no escape for a space. A bare field ``nologin`` means the same as ``nologin=``
to Dovecot, so both are read as the value ``""`` and a ``""`` value is written
back bare. ``userdb_X`` fields describe the user, all others the login (the
mapping onto Account fields is :mod:`mailwarden.accounts.dovecotfields`, shared
with the SQL directory's Dovecot-style mode); fields
named ``mailwarden_*`` are our extensions, which carry the Account fields Dovecot
has no field for, so that export then import gives back the same accounts.
docs/passwd-file.md has the full mapping.

Errors are :class:`PasswdFileError` with the line number; :func:`read_accounts`
yields them in place of the account so an import can report every bad line and
keep going. :func:`format_account` raises :class:`~mailwarden.errors.InvalidAccount`
for an account the format cannot carry (a colon in a column, a space in an
extra-field value, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Protocol, TextIO
from urllib.parse import unquote

from mailwarden.accounts import rules
from mailwarden.accounts.dovecotfields import (
    AccountFields,
    add_passdb_field,
    is_quota_rule_name,
    number,
    quota_limits,
)
from mailwarden.accounts.rules import check_account
from mailwarden.errors import ImportError_, InvalidAccount
from mailwarden.model import PROFILE_FIELDS, Account, AccountStatus, Profile

MAX_LINE_LENGTH = 64 * 1024
"""Longest line accepted, in characters (line ending excluded)."""
BATCH = 1000
"""Lines :func:`read_accounts` parses before it looks their names up in its book."""

# Dovecot's quota_rule2, quota_rule3 ... follow quota_rule; it stops at the first gap.
_RULE_NAMES = ("quota_rule", *(f"quota_rule{n}" for n in range(2, 100)))
_USERDB_MAPPED = frozenset({"mail", "home", "uid", "gid"})
# Profile fields with a column of their own; the others travel as mailwarden_profile_*.
_PROFILE_COLUMNS = frozenset({"name", "login_shell"})
# Everything str.splitlines() breaks at: a value containing one would split the line
# for some reader.
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


_Refuse = Callable[[str], InvalidAccount]


class PasswdFileError(ImportError_):
    """Line ``lineno`` of a passwd-file cannot be read as an account."""

    def __init__(self, lineno: int, message: str) -> None:
        self.lineno = lineno
        self.message = message
        super().__init__(f"line {lineno}: {message}")


# --------------------------------------------------------------------------- reading


def bounded_lines(stream: TextIO, *, max_length: int = MAX_LINE_LENGTH) -> Iterator[str]:
    """The lines of ``stream``, never holding more than ``max_length + 1`` characters.

    A longer line is cut to ``max_length + 1`` characters (the rest is read and
    dropped), which :func:`parse_line` reports as too long: line numbers stay
    right and memory stays bounded. Open the stream in text mode with the default
    newline handling, and ``errors="surrogateescape"`` so that a line that is not
    UTF-8 becomes a reported error rather than an exception.
    """
    while line := stream.readline(max_length + 1):
        if len(line) > max_length and not line.endswith("\n"):
            while (rest := stream.readline(max_length + 1)) and not rest.endswith("\n"):
                pass
        yield line


class LineBook(Protocol):
    """Where :func:`read_accounts` keeps the line that gave each name it accepted, by
    key (:func:`uid_key`, :func:`address_key`).

    Asked a batch of lines at a time, so that a book on disk
    (:class:`mailwarden.accounts.linebook.DiskLineBook`, which keeps an import of a
    million lines in flat memory) pays one query per batch, not one per name.
    """

    def lines_of(self, keys: Collection[str]) -> Mapping[str, int]:
        """The line kept for each of ``keys`` that has one."""
        ...

    def keep(self, lines: Mapping[str, int]) -> None:
        """Remember the line of each key (none of them is kept yet)."""
        ...


class MemoryLineBook:
    """A :class:`LineBook` in a dict: every name in memory (the default)."""

    def __init__(self) -> None:
        self._lines: dict[str, int] = {}

    def lines_of(self, keys: Collection[str]) -> Mapping[str, int]:
        lines = self._lines
        return {key: lines[key] for key in keys if key in lines}

    def keep(self, lines: Mapping[str, int]) -> None:
        self._lines.update(lines)


def uid_key(uid: str) -> str:
    """A user name's key in a :class:`LineBook` (case-insensitive, as directories compare)."""
    return "u:" + uid.lower()


def address_key(address: str) -> str:
    """An address's key in a :class:`LineBook`: addresses are a name space of their own."""
    return "a:" + address.lower()


def read_accounts(
    lines: Iterable[str], *, book: LineBook | None = None, batch: int = BATCH
) -> Iterator[tuple[int, Account | PasswdFileError]]:
    """``(line number, account or error)`` for every line that is not blank or a comment.

    A line whose user name or address an earlier line already has is an error
    (case-insensitively, as directories compare them): Dovecot, too, keeps the
    first of two entries for one user. The names of the accepted lines are kept in
    ``book`` (by default in memory); results come ``batch`` lines at a time.
    """
    book = MemoryLineBook() if book is None else book
    parsed: list[tuple[int, Account | PasswdFileError]] = []
    for lineno, raw in enumerate(lines, 1):
        line = raw.removeprefix("\ufeff") if lineno == 1 else raw
        try:
            account = parse_line(line, lineno)
        except PasswdFileError as exc:
            parsed.append((lineno, exc))
        else:
            if account is not None:
                parsed.append((lineno, account))
        if len(parsed) >= batch:
            yield from _first_uses(parsed, book)
            parsed = []
    yield from _first_uses(parsed, book)


def _first_uses(
    parsed: list[tuple[int, Account | PasswdFileError]], book: LineBook
) -> Iterator[tuple[int, Account | PasswdFileError]]:
    """``parsed``, each account whose user name or an address an earlier line has
    turned into that error; the names of the others are then kept in ``book``."""
    names: list[tuple[str, list[str]] | None] = []
    asked: list[str] = []
    for _lineno, item in parsed:
        if isinstance(item, PasswdFileError):
            names.append(None)
            continue
        uid = uid_key(item.uid)
        addresses = [address_key(address) for address in rules.addresses(item)]
        names.append((uid, addresses))
        asked.append(uid)
        asked += addresses
    earlier = book.lines_of(asked) if asked else {}
    kept: dict[str, int] = {}
    for (lineno, item), found in zip(parsed, names, strict=True):
        if found is not None and isinstance(item, Account):
            uid, addresses = found
            clash = _clash(item, uid, addresses, earlier, kept)
            if clash is not None:
                yield lineno, PasswdFileError(lineno, clash)
                continue
            kept[uid] = lineno
            for address in addresses:
                kept[address] = lineno
        yield lineno, item
    if kept:
        book.keep(kept)


def _clash(
    account: Account,
    uid: str,
    addresses: list[str],
    earlier: Mapping[str, int],
    kept: Mapping[str, int],
) -> str | None:
    """Why ``account`` (its keys ``uid`` and ``addresses``) repeats a name of the
    lines before it (in the book before this batch, ``kept`` in it), or None."""
    line = kept.get(uid) or earlier.get(uid)
    if line is not None:
        return f"user {account.uid!r} is already defined on line {line}"
    for index, key in enumerate(addresses):
        line = kept.get(key) or earlier.get(key)
        if line is not None:
            address = rules.addresses(account)[index]
            return f"address {address!r} is already used on line {line}"
    return None


def parse_line(line: str, lineno: int) -> Account | None:
    """The account on one passwd-file line; None for a blank or ``#`` comment line.

    ``line`` may end in ``\\n`` or ``\\r\\n``. Raises :class:`PasswdFileError`.
    """
    text = line.removesuffix("\n").removesuffix("\r")
    if len(text) > MAX_LINE_LENGTH:
        raise PasswdFileError(lineno, f"line is longer than {MAX_LINE_LENGTH} characters")
    if not text.strip() or text.startswith("#"):
        return None
    if _LINE_BREAK.search(text):
        raise PasswdFileError(lineno, "line break inside the line")
    if not text.isascii():
        # Lone surrogates come from decoding a non-UTF-8 file with surrogateescape.
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise PasswdFileError(lineno, "line is not valid UTF-8") from None
    try:
        return _parse(text)
    except ValueError as exc:
        raise PasswdFileError(lineno, str(exc)) from None


def _parse(text: str) -> Account:
    user, password, uid, gid, gecos, home, shell, extra = (text.split(":", 7) + [""] * 7)[:8]
    if not user:
        raise ValueError("empty user name")
    values: dict[str, object] = {
        "uid": user,
        "mail": user if "@" in user else None,
        "password": password,
        "uid_number": number("uid column", uid) if uid else None,
        "gid_number": number("gid column", gid) if gid else None,
        "home": home or None,
    }
    profile: dict[str, str] = {}
    if gecos:
        profile["name"] = gecos
    if shell:
        profile["login_shell"] = shell
    fields = AccountFields(values=values)
    seen: set[str] = set()
    for field in extra.split(" "):
        if not field:
            continue
        key, _, value = field.partition("=")
        if not key:
            raise ValueError(f"extra field {field!r} has no name")
        if key in seen:
            raise ValueError(f"extra field {key!r} is given twice")
        seen.add(key)
        if key.startswith("mailwarden_"):
            _our_field(key.removeprefix("mailwarden_"), value, values, profile)
        else:
            add_passdb_field(key, value, fields)
    account = Account(
        **values,  # type: ignore[arg-type]
        passdb_fields=MappingProxyType(fields.passdb),
        userdb_fields=MappingProxyType(fields.userdb),
        profile=Profile(**profile),
    )
    _check_storable(account)
    return account


def _check_storable(account: Account) -> None:
    """Refuse what a directory would refuse, so that one bad line cannot abort an
    import: the directories' own rules (:func:`~mailwarden.accounts.rules.check_account`)."""
    try:
        check_account(account, uid_called="user name")
    except InvalidAccount as exc:
        raise ValueError(str(exc)) from None


def _our_field(name: str, value: str, values: dict[str, object], profile: dict[str, str]) -> None:
    match name:
        case "status":
            try:
                values["status"] = AccountStatus(value)
            except ValueError:
                raise ValueError(f"unknown mailwarden_status {value!r}") from None
        case "master":
            if value not in ("yes", "no"):
                raise ValueError(f"mailwarden_master must be yes or no, not {value!r}")
            values["master"] = value == "yes"
        case "services":
            services: dict[str, bool] = {}
            for item in value.split(","):
                if item[:1] not in ("+", "-") or len(item) < 2:
                    raise ValueError(f"mailwarden_services entry {item!r} is not +name or -name")
                services[_decode(item[1:])] = item[0] == "+"
            values["services"] = MappingProxyType(services)
        case "mail":
            values["mail"] = _decode(value) or None
        case "alt":
            values["alternate_addresses"] = tuple(_decode(a) for a in value.split(","))
        case "ssh_keys" | "dns_records":
            values[name] = tuple(_decode(k) for k in value.split(","))
        case "mail_host" | "pgp_fingerprint":
            values[name] = _decode(value)
        case _ if name.startswith("profile_"):
            field = name.removeprefix("profile_")
            if field not in PROFILE_FIELDS or field in _PROFILE_COLUMNS:
                raise ValueError(f"unknown extra field 'mailwarden_{name}'")
            profile[field] = _decode(value)
        case _:
            raise ValueError(f"unknown extra field 'mailwarden_{name}'")


def _decode(text: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"{text!r} has a %-escape that is not UTF-8") from None


# --------------------------------------------------------------------------- writing


def _encode(text: str) -> str:
    """Percent-encode what would end or split a ``mailwarden_*`` value (and ``%``)."""
    if text.isalnum():
        return text
    return "".join(
        "".join(f"%{b:02X}" for b in c.encode()) if c in "%, " or not c.isprintable() else c
        for c in text
    )


def format_account(account: Account) -> str:
    """One passwd-file line (without line ending) that :func:`parse_line` reads back as ``account``.

    Raises :class:`~mailwarden.errors.InvalidAccount` when the account is invalid
    or the format cannot carry one of its values.
    """
    try:
        _check_storable(account)
    except ValueError as exc:
        raise InvalidAccount(str(exc)) from None

    def refuse(why: str) -> InvalidAccount:
        return InvalidAccount(f"account {account.uid!r} cannot be written to a passwd-file: {why}")

    profile = account.profile
    columns = [
        account.uid,
        account.password,
        "" if account.uid_number is None else str(account.uid_number),
        "" if account.gid_number is None else str(account.gid_number),
        profile.name or "",
        account.home or "",
        profile.login_shell or "",
    ]
    if account.uid.startswith("#"):
        raise refuse("the user name starts with '#' (a comment)")
    for what, value in (
        ("user name", account.uid),
        ("password", account.password),
        ("gecos (profile name)", profile.name),
        ("home", account.home),
        ("login shell", profile.login_shell),
    ):
        if value is not None and ":" in value:
            raise refuse(f"the {what} contains ':'")
    for what, optional in (
        ("home", account.home),
        ("profile name", profile.name),
        ("login shell", profile.login_shell),
        ("mail location", account.mail_location),
    ):
        if optional == "":
            raise refuse(f"the {what} is empty (an empty column means none)")

    extras: list[str] = []
    if account.mail_location is not None:
        extras.append(_extra("userdb_mail", account.mail_location, refuse))
    extras.extend(_quota_fields(account, refuse))
    for key, value in account.userdb_fields.items():
        if key in _USERDB_MAPPED:
            raise refuse(f"userdb field {key!r} is an account field in this format")
        if is_quota_rule_name(key) and quota_limits(value):
            raise refuse(f"userdb field {key!r} would be read back as the account's quota")
        extras.append(_extra(f"userdb_{key}", value, refuse))
    if account.allow_nets:
        if any(not net or "," in net for net in account.allow_nets):
            raise refuse("an allow_nets entry is empty or contains ','")
        extras.append(_extra("allow_nets", ",".join(account.allow_nets), refuse))
    for key, value in account.passdb_fields.items():
        if key == "allow_nets" or key.startswith(("userdb_", "mailwarden_")):
            raise refuse(f"passdb field {key!r} would be read back as something else")
        extras.append(_extra(key, value, refuse))
    extras.extend(_our_fields(account))

    if extras:
        line = ":".join(columns) + ":" + " ".join(extras)
    else:
        while len(columns) > 2 and not columns[-1]:
            columns.pop()
        line = ":".join(columns)
    if _LINE_BREAK.search(line):
        raise refuse("a value contains a line break")
    if len(line) > MAX_LINE_LENGTH:
        raise refuse(f"the line would be longer than {MAX_LINE_LENGTH} characters")
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            raise refuse("a value is not valid Unicode text") from None
    return line


def _extra(key: str, value: str, refuse: _Refuse) -> str:
    if not key or "=" in key or " " in key:
        raise refuse(f"extra field name {key!r} is empty or contains '=' or a space")
    if " " in value:
        raise refuse(f"the value of {key!r} contains a space (passwd-file has no escape for it)")
    return f"{key}={value}" if value else key


def _quota_fields(account: Account, refuse: _Refuse) -> list[str]:
    rules: list[str] = []
    if account.quota_bytes is not None:
        rules.append("*:" + _size_limit(account.quota_bytes))
    if account.quota_messages is not None:
        rules.append(f"*:messages={account.quota_messages}")
    if not rules:
        return rules
    # One rule per limit, in the first free names: this fills the gaps an import
    # of quota_rule/quota_rule2/quota_rule3 left, and Dovecot stops at a gap.
    free = [name for name in _RULE_NAMES if name not in account.userdb_fields]
    if len(free) < len(rules):
        raise refuse("no free quota_rule name for the account's quota")
    return [f"userdb_{name}={rule}" for name, rule in zip(free, rules, strict=False)]


def _size_limit(size: int) -> str:
    for unit, multiplier in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size and size % multiplier == 0:
            return f"storage={size // multiplier}{unit}"
    return f"bytes={size}"


def _our_fields(account: Account) -> list[str]:
    fields: list[str] = []
    default_mail = account.uid if "@" in account.uid else None
    if account.mail != default_mail:
        fields.append(f"mailwarden_mail={_encode(account.mail or '')}")
    if account.alternate_addresses:
        fields.append("mailwarden_alt=" + ",".join(map(_encode, account.alternate_addresses)))
    if account.status is not AccountStatus.ACTIVE:
        fields.append(f"mailwarden_status={account.status.value}")
    if account.services:
        switches = (("+" if on else "-") + _encode(name) for name, on in account.services.items())
        fields.append("mailwarden_services=" + ",".join(switches))
    if account.master:
        fields.append("mailwarden_master=yes")
    if account.mail_host is not None:
        fields.append(f"mailwarden_mail_host={_encode(account.mail_host)}")
    if account.pgp_fingerprint is not None:
        fields.append(f"mailwarden_pgp_fingerprint={_encode(account.pgp_fingerprint)}")
    if account.ssh_keys:
        fields.append("mailwarden_ssh_keys=" + ",".join(map(_encode, account.ssh_keys)))
    if account.dns_records:
        fields.append("mailwarden_dns_records=" + ",".join(map(_encode, account.dns_records)))
    for name, value in account.profile.as_dict().items():
        if name not in _PROFILE_COLUMNS:
            fields.append(f"mailwarden_profile_{name}={_encode(value)}")
    return fields


def format_line(account: Account) -> str:
    """:func:`format_account` and its line end: what an export writes for ``account``."""
    return format_account(account) + "\n"


def format_accounts(accounts: Iterable[Account]) -> Iterator[str]:
    """Lines (each ending in ``\\n``) for ``accounts``; InvalidAccount as :func:`format_account`."""
    for account in accounts:
        yield format_line(account)


__all__ = [
    "BATCH",
    "MAX_LINE_LENGTH",
    "LineBook",
    "MemoryLineBook",
    "PasswdFileError",
    "address_key",
    "bounded_lines",
    "format_account",
    "format_accounts",
    "format_line",
    "parse_line",
    "quota_limits",
    "read_accounts",
    "uid_key",
]
