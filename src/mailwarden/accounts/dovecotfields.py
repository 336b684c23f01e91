"""Dovecot's passdb/userdb extra fields onto :class:`~mailwarden.model.Account` values.

One mapping for every reader of Dovecot data: passwd-file lines
(:mod:`mailwarden.accounts.passwdfile`) and the SQL directory's rows in Dovecot-style
mode (:mod:`mailwarden.directories.sql.dovecot`). Pure.

- ``userdb_<f>`` (a passdb field for userdb prefetch) and a userdb field ``<f>``:
  ``home``, ``mail`` (the mail location), ``uid``/``gid`` (numbers) and a default
  quota rule with absolute limits (``quota_rule=*:storage=1G``, see
  :func:`quota_limits`) fill the Account's own fields; every other one is kept in
  ``userdb_fields``.
- ``allow_nets``: the account's networks (entries split at commas or spaces,
  as Dovecot reads them; an empty entry is an error).
- Anything else is a passdb field (``nologin``, ``proxy``, ``host``, ``reason``,
  ``nodelay``, ``nopassword`` ...), kept in ``passdb_fields`` for the engine and
  the front ends: their meaning is decided there (auth/access.py,
  auth/passwords.py), not here.

Errors are ValueError with a message that names the field; the caller adds where
it was (a line number, an SQL row).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailwarden.accounts.sizes import UNITS

_QUOTA_RULE_KEY = re.compile(r"quota_rule[0-9]*")
_LIMIT = re.compile(r"(storage|bytes|messages)=([0-9]{1,19})(?:([kKmMgGtT])[bB]?|([bB]))?")
_UNITS = UNITS  # the units of every size (accounts/sizes.py)
_NETS_SEPARATOR = re.compile(r" *, *| +")  # Dovecot splits at ", " only
# Integers longer than this are refused before int() sees them (int() itself
# refuses beyond 4300 digits with an error that names nothing).
_MAX_DIGITS = 19


@dataclass(slots=True)
class AccountFields:
    """Account values collected from extra fields (``Account(**values, ...)``)."""

    values: dict[str, object] = field(default_factory=dict)
    passdb: dict[str, str] = field(default_factory=dict)
    userdb: dict[str, str] = field(default_factory=dict)


def is_quota_rule_name(name: str) -> bool:
    """``quota_rule``, ``quota_rule2``, ...: Dovecot's quota rule field names."""
    return _QUOTA_RULE_KEY.fullmatch(name) is not None


def add_passdb_field(key: str, value: str, into: AccountFields) -> None:
    """One passdb extra field (``userdb_*`` prefetch, ``allow_nets``, or a passdb field)."""
    if key.startswith("userdb_"):
        add_userdb_field(key.removeprefix("userdb_"), value, into, prefix="userdb_")
    elif key == "allow_nets":
        into.values["allow_nets"] = networks(value)
    else:
        into.passdb[key] = value


def add_userdb_field(name: str, value: str, into: AccountFields, *, prefix: str = "") -> None:
    """One userdb field (``prefix``: how the field was spelt, for messages)."""
    if not name:
        raise ValueError(f"extra field {prefix!r} has no name")
    match name:
        case "mail" | "home":
            if not value:
                raise ValueError(f"{prefix}{name} needs a value")
            into.values["mail_location" if name == "mail" else "home"] = value
        case "uid" | "gid":
            into.values[f"{name}_number"] = number(f"{prefix}{name}", value)
        case _ if is_quota_rule_name(name) and (limits := quota_limits(value)):
            for key, limit in limits.items():
                if into.values.get(key) is not None:
                    raise ValueError(f"two quota rules set {key}")
                into.values[key] = limit
        case _:
            into.userdb[name] = value


def networks(value: str) -> tuple[str, ...]:
    """An ``allow_nets`` value as its entries."""
    nets = tuple(_NETS_SEPARATOR.split(value.strip(" ")))
    if not all(nets):
        raise ValueError(f"allow_nets has an empty entry: {value!r}")
    return nets


def number(what: str, text: str) -> int:
    """A decimal number (uid, gid), or ValueError naming ``what``."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{what} {text!r} is not a number")
    if len(text) > _MAX_DIGITS:
        raise ValueError(f"{what} {text!r} is too large")
    return int(text)


def quota_limits(rule: str) -> dict[str, int] | None:
    """``{"quota_bytes": ..., "quota_messages": ...}`` from a default quota rule.

    Only absolute limits of the ``*`` rule map to the account's quota fields
    (``*:storage=1G``, ``*:bytes=500000``, ``*:messages=1000``, combined with
    ``:``); units as Dovecot reads them (``storage`` counts kilobytes unless a
    B/K/M/G/T suffix says otherwise). None for any other rule, which then stays a
    plain userdb field.
    """
    mailbox, _, limits = rule.partition(":")
    if mailbox != "*" or not limits:
        return None
    out: dict[str, int] = {}
    for limit in limits.split(":"):
        match = _LIMIT.fullmatch(limit)
        if match is None:
            return None
        name, digits, unit, byte_suffix = match.groups()
        key = "quota_messages" if name == "messages" else "quota_bytes"
        if key in out or (name == "messages" and (unit or byte_suffix)):
            return None
        multiplier = 1024 if name == "storage" else 1
        if unit:
            multiplier = _UNITS[unit.lower()]
        elif byte_suffix:
            multiplier = 1
        out[key] = int(digits) * multiplier
    return out
