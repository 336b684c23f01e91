"""The one set of account rules: pure functions, at two levels.

* :func:`check_account` (and :func:`check_password`): what *every* directory can
  store and read back; every backend calls it on each write, and the passwd-file
  import on each line, so that they all accept and refuse the same accounts.
* :func:`validate`: what an administrator may set (the CLI, the admin API, the
  web page and the mail gateway), stricter than storable: uid characters, one
  address per field, networks, lengths of the gateway's lists.

``apply_assignments`` turns ``FIELD=VALUE`` strings into a new Account (a quota in
bytes or human units, ``quota_bytes=2G``: :mod:`mailwarden.accounts.sizes`);
``account_to_json`` and ``apply_json`` are the JSON form the admin API and
``mailwarden user show --json`` use. Every refusal is
:class:`~mailwarden.errors.InvalidAccount` with a message that names the field.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import operator
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from mailwarden.accounts.sizes import parse_size
from mailwarden.errors import InvalidAccount
from mailwarden.model import (
    PROFILE_FIELDS,
    Account,
    AccountStatus,
    AppPassword,
    LastUse,
    Profile,
    login_key,
)

# Every pattern is used with fullmatch: "$" would also match before a final newline.
_UID_RE = re.compile(r"[A-Za-z0-9._@+-]{1,255}")
# An address is one mailbox, local@domain: the local part a dot-atom of RFC 5322's
# atext (with \w: letters and digits of any script, for SMTPUTF8), the domain dot-
# separated labels. No list separators (',' ';'), no spaces, angle brackets, quotes,
# comments or control characters: "root,carl@example.com" is two recipients to an
# MTA, and the mail gateway's reply would go to local root too.
_ATEXT = r"[\w!#$%&'*+/=?^`{|}~-]+"
_ADDRESS_RE = re.compile(rf"(?P<local>{_ATEXT}(?:\.{_ATEXT})*)@(?P<domain>[\w-]+(?:\.[\w-]+)*)")
_SERVICE_RE = re.compile(r"[a-z0-9_-]{1,64}")
# Field names travel as "name=value" in Dovecot's protocol, LDAP values and
# passwd-file extra fields: no '=', space, TAB or line break may be part of one.
_FIELD_KEY_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

TEXT_FIELDS = ("mail", "mail_host", "home", "mail_location", "pgp_fingerprint")
INT_FIELDS = ("uid_number", "gid_number", "quota_bytes", "quota_messages")
TUPLE_FIELDS = ("alternate_addresses", "allow_nets", "ssh_keys", "dns_records")
MAPPING_FIELDS = ("services", "passdb_fields", "userdb_fields")
# Each reads its fields in one call: check_account runs once per account of an
# import or an export of a million (issue #18).
_text_values = operator.attrgetter(*TEXT_FIELDS)
_int_values = operator.attrgetter(*INT_FIELDS)
_tuple_values = operator.attrgetter(*TUPLE_FIELDS)
_mapping_values = operator.attrgetter(*MAPPING_FIELDS)
_profile_values = operator.attrgetter(*PROFILE_FIELDS)
# Bounds of the lists the mail gateway writes (a 16384-bit RSA key line is ~2800
# characters; a TXT record line stays far below 1024).
MAX_LIST_ENTRIES = 100
MAX_SSH_KEY_LENGTH = 8192
MAX_DNS_RECORD_LENGTH = 1024
_TRUE = {"yes", "y", "true", "1", "on"}
_FALSE = {"no", "n", "false", "0", "off"}
#: Length in bytes of the entropy of a generated password (24 URL-safe characters).
GENERATED_PASSWORD_BYTES = 18

ASSIGNABLE = (
    *TEXT_FIELDS,
    *INT_FIELDS,
    "status",
    "master",
    "app_passwords_only",
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
        elif field in TEXT_FIELDS:
            changes[field] = value or None
        elif field == "quota_bytes":
            # Human units (2G, 500M), the same reading on the CLI, the API and the web.
            changes[field] = parse_size(value, field) if value.strip() else None
        elif field in INT_FIELDS:
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
        elif field in ("master", "app_passwords_only"):
            changes[field] = parse_bool(value, field)
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


def check_address(address: str, what: str = "address") -> None:
    """InvalidAccount unless ``address`` is one mailbox ``local@domain`` (see _ADDRESS_RE)."""
    found = _ADDRESS_RE.fullmatch(address)
    if found is None:
        raise InvalidAccount(
            f"{what} {address!r} is not one address of the form local@domain "
            "(no spaces, commas, quotes, brackets or control characters)"
        )
    if len(found["local"]) > 64 or len(found["domain"]) > 255:
        raise InvalidAccount(f"{what} {address!r}: local part over 64 or domain over 255")
    if address.startswith("-"):
        # Handed to sendmail as an argument it would be read as an option.
        raise InvalidAccount(f"{what} {address!r} must not start with '-'")


def validate(account: Account) -> None:
    """Raise InvalidAccount for the first field that breaks a rule."""
    if not _UID_RE.fullmatch(account.uid):
        raise InvalidAccount(
            f"uid {account.uid!r}: 1-255 characters from letters, digits and . _ @ + -"
        )
    for addr in ((account.mail,) if account.mail else ()) + account.alternate_addresses:
        check_address(addr)
    if account.profile.email_forward is not None:
        check_address(account.profile.email_forward, "profile.email_forward")
    for name in INT_FIELDS:
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
        if not _SERVICE_RE.fullmatch(service):
            raise InvalidAccount(f"service {service!r}: lower-case letters, digits, - and _")
    for kind, mapping in (("passdb", account.passdb_fields), ("userdb", account.userdb_fields)):
        for key, value in mapping.items():
            if not _FIELD_KEY_RE.fullmatch(key):
                raise InvalidAccount(f"{kind}.{key}: field names are letters, digits and _ . : -")
            if any(c in value for c in "\t\n\r\0"):
                raise InvalidAccount(f"{kind}.{key}: value must not contain TAB, CR, LF or NUL")
    for name, value in account.profile.as_dict().items():
        if any(ord(c) < 32 for c in value):
            raise InvalidAccount(f"profile.{name}: control characters are not allowed")
    for name, values, longest in (
        ("ssh_keys", account.ssh_keys, MAX_SSH_KEY_LENGTH),
        ("dns_records", account.dns_records, MAX_DNS_RECORD_LENGTH),
    ):
        if len(values) > MAX_LIST_ENTRIES:
            raise InvalidAccount(f"{name}: at most {MAX_LIST_ENTRIES} entries")
        for value in values:
            if not value or len(value) > longest:
                raise InvalidAccount(f"{name}: each entry is 1 to {longest} characters")
            if any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise InvalidAccount(f"{name}: control characters are not allowed")


# --------------------------------------------------------------------------- storable

# SQLite stores signed 64-bit integers; every backend refuses what one of them cannot hold.
MAX_INTEGER = 2**63 - 1


def _text(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidAccount(f"{what} must be a string, not {type(value).__name__}")
    if not value.isascii():
        # Lone surrogates (from surrogateescape decoding) cannot be stored as UTF-8.
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidAccount(f"{what} is not valid Unicode text") from None
    return value


def check_password(value: object) -> str:
    """A password value as a backend may store it, or InvalidAccount."""
    return _text("password", value)


def _login(what: str, value: object) -> str:
    name = _text(what, value)
    # A space or control character in a login name is never intended, breaks the
    # line-based formats (passwd-file, Dovecot's protocol) and makes logs ambiguous.
    if not name or " " in name or not name.isprintable():
        raise InvalidAccount(_login_problem(what, name))
    return name


def check_account(account: Account, *, uid_called: str = "uid") -> None:
    """Raise :class:`InvalidAccount` saying why a backend may not store ``account``.

    Sequences may be lists and mappings any Mapping: backends store copies.
    This runs once per account of a bulk import, so the common case (every value
    a valid str) is checked in one pass over all of them. ``uid_called``: what the
    caller's format calls the uid in a message (a passwd-file's "user name").
    """
    if not isinstance(account, Account):
        raise InvalidAccount(f"expected an Account, not {type(account).__name__}")
    texts = _texts(account)
    if not all(type(text) is str for text in texts) or not _valid_unicode("".join(texts)):
        for what, value in _named_texts(account):
            _text(what, value)
    _login(uid_called, account.uid)
    seen: set[str] = set()
    for address in addresses(account):
        _login("address", address)
        key = login_key(address)
        if key in seen:
            raise InvalidAccount(f"address {address!r} is listed twice")
        seen.add(key)
    if not isinstance(account.status, AccountStatus):
        raise InvalidAccount(f"status must be an AccountStatus, not {account.status!r}")
    if not isinstance(account.master, bool):
        raise InvalidAccount("master must be a bool")
    for name, number in zip(INT_FIELDS, _int_values(account), strict=True):
        if number is None:
            continue
        if isinstance(number, bool) or not isinstance(number, int):
            raise InvalidAccount(f"{name} must be an integer, not {number!r}")
        if not 0 <= number <= MAX_INTEGER:
            raise InvalidAccount(f"{name} {number} is out of range (0 to 2**63-1)")
    for service, enabled in account.services.items():
        if not service or service != service.lower():
            raise InvalidAccount(f"service name {service!r} must be non-empty and lower case")
        if not isinstance(enabled, bool):
            raise InvalidAccount(f"service {service!r} must be switched by a bool")
    for kind, fields in (("passdb", account.passdb_fields), ("userdb", account.userdb_fields)):
        for key in fields:
            if not field_name_storable(key):
                raise InvalidAccount(_field_name_problem(f"{kind} field name", key))
    if not isinstance(account.app_passwords_only, bool):
        raise InvalidAccount("app_passwords_only must be a bool")
    if account.app_passwords:
        check_app_passwords(account.app_passwords)


_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
# An app password's id travels in LDAP values and CLI arguments: a short token.
APP_PASSWORD_ID_RE = re.compile(r"[a-z0-9]{1,32}")


def check_app_passwords(apps: object) -> None:
    """InvalidAccount unless ``apps`` is a tuple of storable :class:`AppPassword`
    values with distinct ids (what every directory can store and read back)."""
    if not isinstance(apps, (tuple, list)):
        raise InvalidAccount("app_passwords must be a tuple of AppPassword")
    seen: set[str] = set()
    for app in apps:
        if not isinstance(app, AppPassword):
            raise InvalidAccount(
                f"app_passwords: expected an AppPassword, not {type(app).__name__}"
            )
        if not isinstance(app.id, str) or not APP_PASSWORD_ID_RE.fullmatch(app.id):
            raise InvalidAccount(f"app password id {app.id!r}: 1-32 lower-case letters and digits")
        if app.id in seen:
            raise InvalidAccount(f"app password id {app.id!r} is listed twice")
        seen.add(app.id)
        name = _text("app password name", app.name)
        if not name or not name.isprintable():
            raise InvalidAccount(f"app password {app.id}: the name must be printable, non-empty")
        if not isinstance(app.digest, str) or not _DIGEST_RE.fullmatch(app.digest):
            raise InvalidAccount(f"app password {app.id}: the digest must be 64 hex digits")
        if not isinstance(app.services, tuple) or not all(
            isinstance(s, str) and _SERVICE_RE.fullmatch(s) for s in app.services
        ):
            raise InvalidAccount(f"app password {app.id}: services are lower-case names")
        for what, number in (("expires", app.expires), ("created", app.created)):
            if number is not None and (
                isinstance(number, bool) or not isinstance(number, int) or number < 0
            ):
                raise InvalidAccount(f"app password {app.id}: {what} must be Unix seconds")
        use = app.last_used
        if use is not None and not (
            isinstance(use, LastUse)
            and isinstance(use.at, int)
            and isinstance(use.service, str)
            and (use.remote_ip is None or isinstance(use.remote_ip, str))
        ):
            raise InvalidAccount(f"app password {app.id}: malformed last use")


def field_name_storable(key: str) -> bool:
    """Whether a passdb/userdb field name can be stored and read back everywhere:
    Dovecot's protocol, LDAP values and passwd-file extra fields all carry fields
    as ``name=value`` separated by TAB or space, one per line."""
    return bool(key) and "=" not in key and " " not in key and key.isprintable()


def _login_problem(what: str, name: str) -> str:
    if not name:
        return f"{what} must be non-empty"
    return f"{what} {name!r} contains a space or a control character"


def _field_name_problem(what: str, key: str) -> str:
    if not key:
        return f"{what} must be non-empty"
    if "=" in key:
        return f"{what} {key!r} contains '='"
    return f"{what} {key!r} contains a space or a control character"


def _valid_unicode(text: str) -> bool:
    if text.isascii():
        return True
    # Lone surrogates (from surrogateescape decoding) cannot be stored as UTF-8.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _texts(account: Account) -> list[Any]:
    """Every value of ``account`` that must be a str; checks the containers' types."""
    texts: list[Any] = [account.uid, account.password]
    texts.extend(v for v in _text_values(account) if v is not None)
    for name, value in zip(TUPLE_FIELDS, _tuple_values(account), strict=True):
        # A str is a sequence too; accepting it would store one entry per character.
        if type(value) is not tuple and not isinstance(value, (tuple, list)):
            raise InvalidAccount(f"{name} must be a tuple of strings")
        texts.extend(value)
    for name, mapping in zip(MAPPING_FIELDS, _mapping_values(account), strict=True):
        # The abstract-class check is slow; the usual types answer first.
        if type(mapping) is not MappingProxyType and not isinstance(mapping, Mapping):
            raise InvalidAccount(f"{name} must be a mapping")
        if mapping:
            texts.extend(mapping)
            if name != "services":
                texts.extend(mapping.values())
    profile = account.profile
    if type(profile) is not Profile and not isinstance(profile, Profile):
        raise InvalidAccount("profile must be a Profile")
    texts.extend(v for v in _profile_values(profile) if v is not None)
    return texts


def _named_texts(account: Account) -> Iterator[tuple[str, object]]:
    """The values :func:`_texts` collects, each named for an error message."""
    yield "uid", account.uid
    yield "password", account.password
    for name in TEXT_FIELDS:
        value = getattr(account, name)
        if value is not None:
            yield name, value
    for name in TUPLE_FIELDS:
        for item in getattr(account, name):
            yield name, item
    for service in account.services:
        yield "service name", service
    for what, fields in (("passdb", account.passdb_fields), ("userdb", account.userdb_fields)):
        for key, value in fields.items():
            yield f"{what} field name", key
            yield f"{what} field {key!r}", value
    for name, value in account.profile.as_dict().items():
        yield f"profile.{name}", value


def addresses(account: Account) -> list[str]:
    mail = [account.mail] if account.mail is not None else []
    return mail + list(account.alternate_addresses)


# Nested objects of the JSON form that expand into ``group.key`` assignments.
_NESTED = {"services": "service", "passdb_fields": "passdb", "userdb_fields": "userdb"}


def account_to_json(account: Account) -> dict[str, Any]:
    """The account as plain JSON-able values; the password hash is never included."""
    d: dict[str, Any] = {}
    for f in dataclasses.fields(account):
        value = getattr(account, f.name)
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        d[f.name] = value
    d["status"] = account.status.value
    d["password"] = "<set>" if account.password else ""
    d["profile"] = account.profile.as_dict()
    d["app_passwords"] = [app_password_to_json(app) for app in account.app_passwords]
    return d


def app_password_to_json(app: AppPassword) -> dict[str, Any]:
    """An app password as plain JSON-able values; the digest is never included."""
    use = app.last_used
    return {
        "id": app.id,
        "name": app.name,
        "services": list(app.services),
        "expires": app.expires,
        "created": app.created,
        "last_used": (
            None
            if use is None
            else {"at": use.at, "service": use.service, "remote_ip": use.remote_ip}
        ),
    }


def _assignment_value(field: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        if any("," in v for v in value):
            raise InvalidAccount(f"{field}: list items must not contain a comma")
        return ",".join(value)
    raise InvalidAccount(f"{field}: expected a string, number, boolean, list of strings or null")


def apply_json(account: Account, changes: Mapping[str, object]) -> Account:
    """A copy of ``account`` with a JSON merge patch (RFC 7396 style) applied.

    Keys are those of ``mailwarden user set`` (``mail``, ``service.imap``,
    ``profile.c``...) or the nested objects of :func:`account_to_json`
    (``services``, ``passdb_fields``, ``userdb_fields``, ``profile``), so what
    ``GET`` returns can be edited and sent back. ``null`` clears a field; nested
    objects are merged key by key. Unlike ``FIELD=VALUE`` strings, an empty string
    is a value: ``{"passdb_fields": {"nologin": ""}}`` sets Dovecot's valueless flag.
    """
    assignments: list[str] = []
    extra: dict[str, dict[str, str | None]] = {"passdb": {}, "userdb": {}}
    for key, value in changes.items():
        group, dot, sub = key.partition(".")
        if key in _NESTED or key == "profile":
            if not isinstance(value, Mapping):
                raise InvalidAccount(f"{key}: expected an object")
            group = _NESTED.get(key, "profile")
            items = [(f"{group}.{k}", v) for k, v in value.items()]
        elif "=" in key:
            raise InvalidAccount(f"{key!r}: field names cannot contain '='")
        else:
            items = [(key, value)]
        for name, v in items:
            group, dot, sub = name.partition(".")
            if dot and group in extra:
                if v is not None and not isinstance(v, str):
                    raise InvalidAccount(f"{name}: expected a string or null")
                extra[group][sub] = v
            else:
                assignments.append(f"{name}={_assignment_value(name, v)}")
    new = apply_assignments(account, assignments)
    fields = {"passdb": dict(new.passdb_fields), "userdb": dict(new.userdb_fields)}
    for group, updates in extra.items():
        for sub, v in updates.items():
            if v is None:
                fields[group].pop(sub, None)
            else:
                fields[group][sub] = v
    new = dataclasses.replace(new, passdb_fields=fields["passdb"], userdb_fields=fields["userdb"])
    validate(new)
    return new


def generate_password() -> bytes:
    """A random password for an account (URL-safe, 144 bits)."""
    # Never with a leading "-": typed after a command (doveadm auth test USER PASS,
    # mailwarden auth test) it would be read as an option.
    while (password := secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)).startswith("-"):
        pass
    return password.encode()
