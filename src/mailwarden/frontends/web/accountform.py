"""The administrator's account form: an account as form values, and a posted form as changes.

What belongs here: :func:`form_values` (what the boxes of the edit page show: the
quota in human units, lists comma separated, extra fields one ``key=value`` a line),
:func:`read_form` (a posted form as the JSON merge patch that
:func:`~mailwarden.accounts.rules.apply_json` reads, the one set of rules the CLI's
``user set`` and the admin API's ``PATCH`` use) and :func:`field_errors` (which box a
refusal belongs to, so the page shows it next to that box and keeps what was typed).
No rule of what an account may hold is decided here. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from mailwarden.accounts.rules import apply_json
from mailwarden.accounts.sizes import format_size
from mailwarden.errors import InvalidAccount
from mailwarden.model import Account

#: Text boxes whose empty value clears the field (names as in ``user set``).
TEXT_BOXES = ("mail", "home", "mail_location", "mail_host", "quota_bytes", "quota_messages")
NUMBER_BOXES = ("uid_number", "gid_number")
LIST_BOXES = ("alternate_addresses", "allow_nets")
FIELD_BOXES = ("passdb_fields", "userdb_fields")
CHECKBOXES = ("master", "app_passwords_only")
_LIST_SEPARATOR = re.compile(r"[\s,]+")


def _number(value: int | None) -> str:
    return "" if value is None else str(value)


def _fields_text(fields: Mapping[str, str]) -> str:
    return "\n".join(f"{key}={value}" if value else key for key, value in fields.items())


def form_values(account: Account, services: Iterable[str]) -> dict[str, str]:
    """What each box of the edit form shows for ``account`` (checkboxes: ``on`` or
    ``''``; ``service.NAME`` for each of ``services``)."""
    values = {
        "mail": account.mail or "",
        "home": account.home or "",
        "mail_location": account.mail_location or "",
        "mail_host": account.mail_host or "",
        "quota_bytes": "" if account.quota_bytes is None else format_size(account.quota_bytes),
        "quota_messages": _number(account.quota_messages),
        "uid_number": _number(account.uid_number),
        "gid_number": _number(account.gid_number),
        "alternate_addresses": ", ".join(account.alternate_addresses),
        "allow_nets": ", ".join(account.allow_nets),
        "passdb_fields": _fields_text(account.passdb_fields),
        "userdb_fields": _fields_text(account.userdb_fields),
        "status": account.status.value,
        "master": "on" if account.master else "",
        "app_passwords_only": "on" if account.app_passwords_only else "",
    }
    for name in services:
        values[f"service.{name}"] = "on" if account.service_enabled(name) else ""
    return values


@dataclass(frozen=True, slots=True, kw_only=True)
class PostedForm:
    """A posted edit form: what was typed (to show again), the changes it asks for
    (a JSON merge patch for :func:`apply_json`) and the boxes it could not read."""

    values: dict[str, str]
    changes: dict[str, object]
    errors: dict[str, str] = field(default_factory=dict)


def read_form(
    get: Callable[[str], str | None], account: Account, services: Iterable[str]
) -> PostedForm:
    """The changes of a posted edit form. ``get(name)``: the box's value, None when
    the form has no such box. A text box the form lacks changes nothing; a checkbox
    left unticked is absent, and means off."""
    values: dict[str, str] = {}
    changes: dict[str, object] = {}
    errors: dict[str, str] = {}
    for name in (*TEXT_BOXES, *NUMBER_BOXES, *LIST_BOXES, *FIELD_BOXES, "status"):
        typed = get(name)
        if typed is None:
            continue
        values[name] = typed
        if name in LIST_BOXES:
            changes[name] = [item for item in _LIST_SEPARATOR.split(typed) if item]
        elif name in FIELD_BOXES:
            try:
                old = account.passdb_fields if name == "passdb_fields" else account.userdb_fields
                changes[name] = _extra_fields(typed, old, name)
            except InvalidAccount as exc:
                errors[name] = str(exc)
        else:
            changes[name] = typed.strip() or None
    for name in CHECKBOXES:
        values[name] = "on" if get(name) is not None else ""
        changes[name] = get(name) is not None
    switches = {}
    for name in services:
        on = get(f"service.{name}") is not None
        values[f"service.{name}"] = "on" if on else ""
        switches[name] = on
    changes["services"] = switches
    return PostedForm(values=values, changes=changes, errors=errors)


def _extra_fields(text: str, old: Mapping[str, str], box: str) -> dict[str, str | None]:
    """A box of ``key=value`` lines (a bare ``key``: Dovecot's valueless flag, such as
    ``nologin``) as a merge patch of ``old``: every key not in the box is removed."""
    fields: dict[str, str | None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if not key:
            raise InvalidAccount(f"{box}: line {number} has no field name")
        if key in fields:
            raise InvalidAccount(f"{box}: {key} is given twice")
        fields[key] = value
    return {**dict.fromkeys(old), **fields}


def field_errors(account: Account, changes: Mapping[str, object]) -> dict[str, str]:
    """The box each refused change belongs to, with the rules' own message: each
    change is applied alone to ``account`` by :func:`apply_json`. Empty when the
    account as stored is itself refused (then no box is to blame) or when only the
    changes together are refused (the caller shows that above the form)."""
    try:
        apply_json(account, {})
    except InvalidAccount:
        return {}
    errors: dict[str, str] = {}
    for name, change in changes.items():
        try:
            apply_json(account, {name: change})
        except InvalidAccount as exc:
            errors[name] = str(exc)
    return errors
