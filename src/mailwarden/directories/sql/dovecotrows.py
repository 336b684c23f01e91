"""Result rows of Dovecot-style queries to Account values, as Dovecot 2.3 reads them.

Pure. The rules (docs/sql.md, "Result columns"; Dovecot's passdb-sql.c,
userdb-sql.c and auth-request.c):

- Every column of the (first) row is a field named by the column; a column with an
  empty name, or a NULL value, sets nothing. Values are text as the driver would
  give Dovecot: PostgreSQL booleans are ``t``/``f``, numbers their decimal text.
- ``password`` (or ``password_noscheme``) is the stored value; without a
  ``{SCHEME}`` prefix (``password_noscheme``: always) it is read as
  ``{default_pass_scheme}value``. A NULL password verifies nothing, unless the row
  sets ``nopassword`` (then any password is accepted: auth/passwords.py).
  ``nopassword`` beside a non-empty password is ignored, as Dovecot ignores it.
- ``user`` replaces the whole name; ``username`` replaces it when it holds an
  ``@``, else only the part before the ``@``; ``domain`` replaces (or adds) the
  ``@domain``. The result is the account's uid.
- ``userdb_<f>`` columns are userdb prefetch; ``allow_nets`` the account's
  networks; every other column a passdb field (``nologin``, ``proxy``, ``host``,
  ``reason`` ...). The mapping onto Account fields is
  :mod:`mailwarden.accounts.dovecotfields`, shared with the passwd-file reader.
- A ``name:protected`` column sets the field only if it is not set yet;
  ``name:remove`` removes it.
- User-query columns are userdb fields (``home``, ``mail``, ``uid``, ``gid``,
  ``quota_rule`` ...); ``tempfail`` makes the lookup a temporary failure.
- The iterate query's user is a first column named ``user``, else ``username``
  (with ``@`` and ``domain`` appended when that column exists).

Errors are :class:`RowError` (a ValueError): the directory turns them into
DirectoryUnavailable, as Dovecot turns them into an internal failure.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from mailwarden.accounts.dovecotfields import AccountFields, add_passdb_field, add_userdb_field
from mailwarden.model import Account

#: Resolves a ``uid``/``gid`` column that is a name (getpwnam / getgrnam); None: unknown.
NameResolver = Callable[[str, str], int | None]


class RowError(ValueError):
    """A row Dovecot would refuse (no password column, several rows, a bad value)."""


@dataclass(frozen=True, slots=True)
class Columns:
    """One result row as (name, text) pairs, NULLs kept as None."""

    names: tuple[str, ...]
    values: tuple[str | None, ...]


def as_text(value: Any) -> str | None:
    """A column value as the text Dovecot's SQL drivers hand it over."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, int | decimal.Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else str(value)
    return str(value)


def columns(names: Sequence[str], values: Sequence[Any]) -> Columns:
    return Columns(tuple(names), tuple(as_text(v) for v in values))


def with_scheme(value: str, default_scheme: str, *, noscheme: bool = False) -> str:
    """The stored value as ``{SCHEME}data`` (Dovecot's rule for SQL values)."""
    if not noscheme and value.startswith("{") and "}" in value:
        return value
    return f"{{{default_scheme.upper()}}}{value}"


def renamed(user: str, field: str, value: str) -> str:
    """``user`` after a ``user``/``username``/``domain`` field (Dovecot's rename rules)."""
    local, at, domain = user.partition("@")
    if field == "user":
        return value
    if field == "username":
        if "@" in value:
            return value
        return f"{value}@{domain}" if at else value
    return f"{local}@{value}"  # domain


def passdb_account(row: Columns, login: str, *, default_scheme: str) -> Account:
    """The account a password-query row describes (module docstring)."""
    if not {"password", "password_noscheme"} & {n.partition(":")[0] for n in row.names}:
        raise RowError("Password query must return a field named 'password'")
    user = login
    password: str | None = None
    fields = AccountFields()
    for raw_name, value in zip(row.names, row.values, strict=True):
        name, _, flag = raw_name.partition(":")
        if not name:
            continue
        if flag == "remove":
            _remove(name, fields)
            continue
        if value is None:
            continue
        if flag == "protected" and _is_set(name, fields):
            continue
        match name:
            case "password" | "password_noscheme":
                password = with_scheme(value, default_scheme, noscheme=name == "password_noscheme")
            case "user" | "username" | "domain":
                user = renamed(user, name, value)
            case _:
                try:
                    add_passdb_field(name, value, fields)
                except ValueError as exc:
                    raise RowError(str(exc)) from None
    if password and "nopassword" in fields.passdb:
        del fields.passdb["nopassword"]  # "nopassword set but password is non-empty"
    return _account(user, password or "", fields)


def has_prefetch(row: Columns) -> bool:
    """Whether the password query returns ``userdb_*`` columns (userdb prefetch: then
    the user query is not run, as with Dovecot's ``userdb prefetch``)."""
    return any(n.startswith("userdb_") for n in row.names)


def userdb_account(
    row: Columns, login: str, *, base: Account | None = None, resolve: NameResolver
) -> Account:
    """``base`` (the password query's account; None: a userdb-only lookup of ``login``)
    with the user-query row's fields added (module docstring)."""
    user = base.uid if base is not None else login
    known = dict(base.userdb_fields) if base is not None else {}
    fields = AccountFields()
    for raw_name, value in zip(row.names, row.values, strict=True):
        name, _, flag = raw_name.partition(":")
        if not name:
            continue
        if flag == "remove":
            fields.userdb.pop(name, None)
            known.pop(name, None)
            continue
        if value is None or (flag == "protected" and (name in fields.userdb or name in known)):
            continue
        match name:
            case "tempfail":
                raise RowError("user query returned tempfail")
            case "user" | "username" | "domain":
                user = renamed(user, name, value)
            case "uid" | "gid" if value and not value.isdigit():
                number = resolve(name, value)
                if number is None:
                    raise RowError(f"{name} {value!r} names no system user or group")
                fields.values[f"{name}_number"] = number
            case _:
                try:
                    add_userdb_field(name, value, fields)
                except ValueError as exc:
                    raise RowError(str(exc)) from None
    if base is None:
        return _account(user, "", fields)
    mail = user if "@" in user else None
    return dataclasses.replace(
        base,
        uid=user,
        mail=mail,
        userdb_fields=MappingProxyType({**known, **fields.userdb}),
        **fields.values,  # type: ignore[arg-type]
    )


def iterate_user(row: Columns) -> str:
    """The user an iterate-query row names (module docstring)."""
    if row.names and row.names[0] == "user":
        user = row.values[0]
    else:
        values = dict(zip(row.names, row.values, strict=True))
        if "username" not in values:
            raise RowError("Iterate query didn't return 'user' field")
        user = values["username"]
        if user is not None and values.get("domain"):
            user = f"{user}@{values['domain']}"
    if user is None:
        raise RowError("Iterate query returned NULL user")
    return user


def _account(user: str, password: str, fields: AccountFields) -> Account:
    values = dict(fields.values)
    return Account(
        uid=user,
        mail=user if "@" in user else None,
        password=password,
        passdb_fields=MappingProxyType(fields.passdb),
        userdb_fields=MappingProxyType(fields.userdb),
        **values,  # type: ignore[arg-type]
    )


def _is_set(name: str, fields: AccountFields) -> bool:
    if name.startswith("userdb_"):
        return name.removeprefix("userdb_") in fields.userdb
    return name in fields.passdb or (name == "allow_nets" and "allow_nets" in fields.values)


def _remove(name: str, fields: AccountFields) -> None:
    if name.startswith("userdb_"):
        fields.userdb.pop(name.removeprefix("userdb_"), None)
    elif name == "allow_nets":
        fields.values.pop("allow_nets", None)
    else:
        fields.passdb.pop(name, None)
