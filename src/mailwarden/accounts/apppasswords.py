"""Making and revoking app passwords: pure functions over :class:`~mailwarden.model.Account`.

:class:`~mailwarden.accounts.edit.AccountAdmin` applies them through
:meth:`~mailwarden.directories.base.Directory.modify`, one call per change, so the
CLI, the admin API and the web page share every rule here:

* an app password is a random value from :func:`mailwarden.auth.tokens.issue`
  (``TokenKind.APP_PASSWORD``), shown once; only its digest is stored;
* a name of 1 to :data:`MAX_NAME` printable characters, unique within the account
  (case-insensitively), so that it can be revoked by name;
* services are lower-case service names (none: every mail service); ``web`` is
  refused, since no app password opens the web page;
* an expiry, when given, lies in the future;
* at most :data:`MAX_APP_PASSWORDS` per account.

Every refusal is :class:`~mailwarden.errors.InvalidAccount`; revoking one that does
not exist is :class:`~mailwarden.errors.AccountNotFound`.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import secrets
from collections.abc import Iterable

from mailwarden.auth import tokens
from mailwarden.auth.tokens import TokenKind
from mailwarden.errors import AccountNotFound, InvalidAccount
from mailwarden.model import WEB_SERVICE, Account, AppPassword, NewAppPassword

MAX_APP_PASSWORDS = 100
MAX_NAME = 64
MAX_SERVICES = 32
_SERVICE_RE = re.compile(r"[a-z0-9_-]{1,64}")


def services_of(names: Iterable[str]) -> tuple[str, ...]:
    """Service names as an app password stores them (lower case, each once, in order)."""
    out: list[str] = []
    for given in names:
        name = given.strip().lower()
        if not name:
            continue
        if not _SERVICE_RE.fullmatch(name):
            raise InvalidAccount(f"service {given!r}: lower-case letters, digits, - and _")
        if name == WEB_SERVICE:
            raise InvalidAccount("an app password cannot open the web page (service web)")
        if name not in out:
            out.append(name)
    if len(out) > MAX_SERVICES:
        raise InvalidAccount(f"an app password names at most {MAX_SERVICES} services")
    return tuple(out)


def parse_expiry(text: str) -> int:
    """``--expires``: a date (``2027-01-31``, the end of that day in UTC) or an ISO 8601
    time (``2027-01-31T12:00:00+01:00``; UTC when no offset is given), as Unix seconds."""
    try:
        if len(text) == 10:
            day = datetime.date.fromisoformat(text)
            moment = datetime.datetime.combine(
                day + datetime.timedelta(days=1), datetime.time(), datetime.UTC
            )
        else:
            moment = datetime.datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.UTC)
    except ValueError:
        raise InvalidAccount(f"expiry {text!r}: expected YYYY-MM-DD or an ISO 8601 time") from None
    return int(moment.timestamp())


def issue(
    *, name: str, services: Iterable[str] = (), expires: int | None = None, now: float
) -> NewAppPassword:
    """A new app password and its value (to show once). It is checked against the
    account's others when it is :func:`added`."""
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise InvalidAccount(f"app password name: 1 to {MAX_NAME} printable characters")
    if expires is not None and expires <= now:
        raise InvalidAccount("app password expiry: must lie in the future")
    issued = tokens.issue(TokenKind.APP_PASSWORD)
    app = AppPassword(
        id=secrets.token_hex(6),
        name=name,
        digest=issued.digest,
        services=services_of(services),
        expires=expires,
        created=int(now),
    )
    return NewAppPassword(app_password=app, value=issued.value)


def _check_room(account: Account, app: AppPassword) -> None:
    if len(account.app_passwords) >= MAX_APP_PASSWORDS:
        raise InvalidAccount(f"{account.uid}: at most {MAX_APP_PASSWORDS} app passwords")
    for other in account.app_passwords:
        if other.name.lower() == app.name.lower():
            raise InvalidAccount(f"{account.uid} already has an app password named {app.name!r}")


def added(account: Account, app: AppPassword) -> Account:
    """``account`` with ``app`` added (checked again: it may have changed meanwhile)."""
    if any(other.id == app.id for other in account.app_passwords):
        return account  # a retried write that already added it
    _check_room(account, app)
    return dataclasses.replace(account, app_passwords=(*account.app_passwords, app))


def find(account: Account, which: str) -> AppPassword:
    """The app password of ``account`` whose id or name (case-insensitively) is ``which``."""
    for app in account.app_passwords:
        if app.id == which.lower():
            return app
    for app in account.app_passwords:
        if app.name.lower() == which.strip().lower():
            return app
    raise AccountNotFound(f"{account.uid} has no app password {which!r}")


def revoked(account: Account, which: str) -> Account:
    """``account`` without the app password named ``which`` (id or name)."""
    gone = find(account, which)
    return dataclasses.replace(
        account, app_passwords=tuple(app for app in account.app_passwords if app.id != gone.id)
    )
