"""The login history's values, the :class:`HistoryStore` protocol and the mapping
from a login decision to an entry. Pure: no I/O, no asyncio.

What belongs here: what one entry says (:class:`LoginEvent`), which decisions make
one (:func:`event_of`) and how an entry is written as JSON (Redis, the admin API,
the command line). Where entries go is a store's (memory.py, redis.py, the state
stores); when they are written is recorder.py's.

Which logins are recorded, and why:

* **Only logins of an existing account.** A wrong password on an account is
  recorded on it; a name that matches no account is not (there is no one to show
  it to, and recording names would let the history grow with an attacker's list).
  The engine hands the uid it resolved over in a :class:`Trail`; the outcome the
  front ends answer with still does not say whether the account exists.
* **Blocked logins are refused before any directory read** (a banned network costs
  the site nothing). They carry the login name instead, and the recorder looks the
  name up later, off the login path, a bounded number per batch.
* **A backend failure is no login** (``Unavailable``): nothing is recorded.
* **Master logins** are recorded on the account whose credentials were proven.
"""

from __future__ import annotations

import datetime
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mailwarden.model import (
    Accepted,
    AuthAttempt,
    AuthOutcome,
    BearerToken,
    CredentialKind,
    CredentialUsed,
    Denied,
    DenyReason,
)
from mailwarden.records import record

#: Entries one read returns at most, whatever was asked.
MAX_ROWS = 1000
#: Longest service, front end, address and app password name kept (client words).
MAX_FIELD = 64


class LoginResult(enum.Enum):
    """What became of a login, as the history shows it."""

    ACCEPTED = "accepted"
    WRONG_PASSWORD = "wrong-password"  # noqa: S105 (an outcome, not a secret)
    BLOCKED = "blocked"  # refused unchecked: the client's network is banned
    DISABLED = "disabled"  # right password; the account or the service is off
    REFUSED = "refused"  # right password; network, master user or stored value refused


_RESULTS: dict[DenyReason, LoginResult] = {
    DenyReason.CREDENTIALS: LoginResult.WRONG_PASSWORD,
    DenyReason.BLOCKED: LoginResult.BLOCKED,
    DenyReason.DISABLED: LoginResult.DISABLED,
    DenyReason.SERVICE_DISABLED: LoginResult.DISABLED,
    DenyReason.NETWORK: LoginResult.REFUSED,
    DenyReason.AUTHZ: LoginResult.REFUSED,
    DenyReason.SCHEME: LoginResult.REFUSED,
}


@record  # made on every login: cheap to create (records.py)
class LoginEvent:
    """One login of account ``uid`` at ``at`` (Unix seconds): through ``frontend``
    for ``service``, from ``remote_ip`` (None: the front end knew none), its
    ``result`` and the ``credential`` presented (``app_password``: the name of the
    app password that matched)."""

    uid: str
    at: float
    frontend: str
    service: str
    remote_ip: str | None
    result: LoginResult
    credential: CredentialKind
    app_password: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unresolved:
    """An entry whose account is known only by the ``login`` name it was tried with
    (a blocked login): ``event.uid`` is empty until the recorder looks it up."""

    login: str
    event: LoginEvent


class Trail:
    """What the engine learnt of one login on the way to its outcome: the account's
    uid (None: no account matched, or none was read), the login name, and the
    credential that was proven. Filled in by the engine, read once by the recorder."""

    __slots__ = ("credential", "login", "uid")

    def __init__(self) -> None:
        self.uid: str | None = None
        self.login: str | None = None
        self.credential: CredentialUsed | None = None


def presented(attempt: AuthAttempt) -> CredentialKind:
    """The kind of credential ``attempt`` presented (for a refused login)."""
    creds = attempt.credentials
    if isinstance(creds, BearerToken):
        return CredentialKind.TOKEN
    if creds is not None:  # a password, or a challenge-response proof of one
        return CredentialKind.PASSWORD
    if attempt.mechanism.upper() == "ANONYMOUS":
        return CredentialKind.NONE
    return CredentialKind.CERTIFICATE


def event_of(
    attempt: AuthAttempt, outcome: AuthOutcome, trail: Trail, now: float
) -> LoginEvent | Unresolved | None:
    """The history entry of one decided login, or None when none is kept (module
    docstring: no account, a backend failure)."""
    if isinstance(outcome, Accepted):
        result = LoginResult.ACCEPTED
    elif isinstance(outcome, Denied):
        result = _RESULTS[outcome.reason]
    else:
        return None
    used = trail.credential
    event = LoginEvent(
        uid=trail.uid or "",
        at=now,
        frontend=attempt.frontend[:MAX_FIELD],
        service=attempt.service.lower()[:MAX_FIELD],
        remote_ip=attempt.remote_ip[:MAX_FIELD] if attempt.remote_ip else None,
        result=result,
        credential=used.kind if used is not None else presented(attempt),
        app_password=(
            used.app_password[:MAX_FIELD]
            if used is not None and used.app_password is not None
            else None
        ),
    )
    if trail.uid is not None:
        return event
    if result is LoginResult.BLOCKED and trail.login:
        return Unresolved(login=trail.login, event=event)
    return None


def columns(event: LoginEvent) -> tuple[str, float, str, str, str | None, str, str, str | None]:
    """The entry as the SQL stores write a row (their ``logins`` tables' column order:
    uid, time, frontend, service, remote_ip, result, credential, app_password)."""
    return (
        event.uid,
        event.at,
        event.frontend,
        event.service,
        event.remote_ip,
        event.result.value,
        event.credential.value,
        event.app_password,
    )


def event_to_json(event: LoginEvent) -> dict[str, Any]:
    """The entry as the admin API and ``--json`` show it (``time``: ISO 8601, UTC)."""
    return {
        "uid": event.uid,
        "at": event.at,
        "time": when(event.at),
        "frontend": event.frontend,
        "service": event.service,
        "remote_ip": event.remote_ip,
        "result": event.result.value,
        "credential": event.credential.value,
        "app_password": event.app_password,
    }


def event_from_json(data: Any) -> LoginEvent | None:
    """The entry ``data`` (as :func:`event_to_json` wrote it), or None if it is not one
    (a shared store may hold what an older or newer version wrote)."""
    try:
        ip, app = data["remote_ip"], data.get("app_password")
        return LoginEvent(
            uid=str(data["uid"]),
            at=float(data["at"]),
            frontend=str(data["frontend"]),
            service=str(data["service"]),
            remote_ip=None if ip is None else str(ip),
            result=LoginResult(data["result"]),
            credential=CredentialKind(data["credential"]),
            app_password=None if app is None else str(app),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def dumps(event: LoginEvent) -> str:
    return json.dumps(event_to_json(event), separators=(",", ":"))


def loads(text: str) -> LoginEvent | None:
    try:
        return event_from_json(json.loads(text))
    except ValueError:
        return None


def when(at: float) -> str:
    """``at`` as ``YYYY-MM-DD HH:MM:SSZ`` (UTC)."""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class HistoryStore(Protocol):
    """Where entries are kept: memory.py, redis.py, the SQLite and SQL state stores.

    Errors: StateUnavailable or StoreUnavailable (both TemporaryFailure) when the
    store cannot answer; the recorder counts them and logins never see them."""

    async def add_logins(self, events: Sequence[LoginEvent], *, keep: int, ttl: float) -> None:
        """Append ``events``. A store may cut each account to its newest ``keep`` here
        (memory, Redis) or in :meth:`prune_logins` (SQL stores), and may forget any
        older than ``ttl`` seconds (Redis expires whole lists so)."""
        ...

    async def logins(self, uid: str, *, limit: int, since: float) -> list[LoginEvent]:
        """``uid``'s entries from ``since`` on (Unix seconds), newest first, at most
        ``limit`` (and :data:`MAX_ROWS`)."""
        ...

    async def prune_logins(self, before: float, *, keep: int) -> int:
        """Forget every entry older than ``before`` and all but each account's newest
        ``keep``; how many (0 where the store does both when it writes)."""
        ...
