"""Account editing rules shared by the CLI and the admin API: pure functions.

``apply_assignments`` turns ``FIELD=VALUE`` strings into a new Account;
``validate`` checks every field an administrator can set. Both raise
:class:`~mailwarden.errors.InvalidAccount` with a message that names the field.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from mailwarden.errors import InvalidAccount
from mailwarden.model import PROFILE_FIELDS, Account, AccountStatus, Profile

_UID_RE = re.compile(r"^[A-Za-z0-9._@+-]{1,255}$")
_ADDRESS_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
_SERVICE_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
_FIELD_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

_TEXT_FIELDS = ("mail", "mail_host", "home", "mail_location", "pgp_fingerprint")
_INT_FIELDS = ("uid_number", "gid_number", "quota_bytes", "quota_messages")
_TRUE = {"yes", "y", "true", "1", "on"}
_FALSE = {"no", "n", "false", "0", "off"}

ASSIGNABLE = (
    *_TEXT_FIELDS,
    *_INT_FIELDS,
    "status",
    "master",
    "alternate_addresses",
    "allow_nets",
    "service.NAME",
    "passdb.KEY",
    "userdb.KEY",
    "profile.FIELD",
)


def parse_bool(value: str, field: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise InvalidAccount(f"{field}: expected yes/no, got {value!r}")


def _list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def apply_assignments(account: Account, assignments: Iterable[str]) -> Account:
    """A copy of ``account`` with each ``FIELD=VALUE`` applied (empty VALUE clears)."""
    changes: dict[str, Any] = {}
    services = dict(account.services)
    passdb = dict(account.passdb_fields)
    userdb = dict(account.userdb_fields)
    profile = account.profile.as_dict()
    for item in assignments:
        field, sep, value = item.partition("=")
        field = field.strip()
        if not sep:
            raise InvalidAccount(f"{item!r}: expected FIELD=VALUE")
        group, dot, key = field.partition(".")
        if dot and group == "service":
            services[key.lower()] = parse_bool(value, field)
        elif dot and group in ("passdb", "userdb"):
            target = passdb if group == "passdb" else userdb
            if value == "":
                target.pop(key, None)
            else:
                target[key] = value
        elif dot and group == "profile":
            if key not in PROFILE_FIELDS:
                raise InvalidAccount(
                    f"{field}: no such profile field ({', '.join(PROFILE_FIELDS)})"
                )
            if value == "":
                profile.pop(key, None)
            else:
                profile[key] = value
        elif field in _TEXT_FIELDS:
            changes[field] = value or None
        elif field in _INT_FIELDS:
            try:
                changes[field] = int(value) if value else None
            except ValueError:
                raise InvalidAccount(f"{field}: expected an integer, got {value!r}") from None
        elif field == "status":
            try:
                changes["status"] = AccountStatus(value.strip().lower())
            except ValueError:
                allowed = ", ".join(s.value for s in AccountStatus)
                raise InvalidAccount(f"status: expected one of {allowed}") from None
        elif field == "master":
            changes["master"] = parse_bool(value, field)
        elif field in ("alternate_addresses", "allow_nets"):
            changes[field] = _list(value)
        else:
            raise InvalidAccount(f"{field}: not a field that can be set ({', '.join(ASSIGNABLE)})")
    changes["services"] = {k: v for k, v in services.items() if not v}
    changes["passdb_fields"] = passdb
    changes["userdb_fields"] = userdb
    changes["profile"] = Profile(**profile)
    new = dataclasses.replace(account, **changes)
    validate(new)
    return new


def validate(account: Account) -> None:
    """Raise InvalidAccount for the first field that breaks a rule."""
    if not _UID_RE.match(account.uid):
        raise InvalidAccount(
            f"uid {account.uid!r}: 1-255 characters from letters, digits and . _ @ + -"
        )
    for addr in ((account.mail,) if account.mail else ()) + account.alternate_addresses:
        if not _ADDRESS_RE.match(addr):
            raise InvalidAccount(f"address {addr!r} is not of the form local@domain")
    for name in _INT_FIELDS:
        value = getattr(account, name)
        if value is not None and value < 0:
            raise InvalidAccount(f"{name}: must not be negative")
    for net in account.allow_nets:
        if net == "local":
            continue
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise InvalidAccount(f"allow_nets: {net!r} is not a network") from None
    for service in account.services:
        if not _SERVICE_RE.match(service):
            raise InvalidAccount(f"service {service!r}: lower-case letters, digits, - and _")
    for kind, mapping in (("passdb", account.passdb_fields), ("userdb", account.userdb_fields)):
        for key, value in mapping.items():
            if not _FIELD_KEY_RE.match(key):
                raise InvalidAccount(f"{kind}.{key}: field names are letters, digits and _ . : -")
            if any(c in value for c in "\t\n\r\0"):
                raise InvalidAccount(f"{kind}.{key}: value must not contain TAB, CR, LF or NUL")
    for name, value in account.profile.as_dict().items():
        if any(ord(c) < 32 for c in value):
            raise InvalidAccount(f"profile.{name}: control characters are not allowed")
