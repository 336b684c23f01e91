"""The admin API's requests and replies (``/api/v1/accounts...``): pure functions.

Routing, the bearer-token check and the calls into
:class:`~mailwarden.accounts.edit.AccountAdmin` live in frontends/http.py; what a request
body must contain and what a reply looks like lives here, so both can be tested
without a server.

``GET /api/v1/accounts?search=PATTERN&limit=N``  → ``{"accounts": [...], "count": N}``
``POST /api/v1/accounts``                         → 201 + the account
``GET|PATCH|DELETE /api/v1/accounts/{uid}``       → the account / the account / 204
``PUT /api/v1/accounts/{uid}/password``           → 200 (``{"password": ...}`` if generated)
``GET|POST /api/v1/accounts/{uid}/app-passwords``  → the app passwords / 201 + the new one,
                                                    its value once
``DELETE /api/v1/accounts/{uid}/app-passwords/{id}`` → 204 (``{id}``: its id or name)
``GET /api/v1/accounts/{uid}/history?limit=N``      → the account's recent logins, newest first
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from mailwarden.accounts.apppasswords import parse_expiry
from mailwarden.accounts.rules import account_to_json, app_password_to_json
from mailwarden.errors import InvalidAccount, ProtocolError
from mailwarden.history.base import MAX_ROWS, LoginEvent, event_to_json
from mailwarden.model import Account, NewAppPassword
from mailwarden.protocols.http_api import Reply, json_reply
from mailwarden.schemes.common import check_password

PREFIX = "/api/v1/accounts"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10000
MAX_PASSWORD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Route:
    """Which admin operation a path names: ``uid`` None for the collection;
    ``app_passwords``: the account's app passwords, ``app_password`` one of them."""

    uid: str | None
    password: bool = False
    app_passwords: bool = False
    app_password: str | None = None
    history: bool = False


_APP_PASSWORDS = "app-passwords"
_HISTORY = "history"


def route(path: str) -> Route | None:
    """The admin route of ``path`` (already percent-decoded), or None if it is not one."""
    if path == PREFIX or path == PREFIX + "/":
        return Route(uid=None)
    if not path.startswith(PREFIX + "/"):
        return None
    rest = path[len(PREFIX) + 1 :]
    uid, slash, tail = rest.partition("/")
    if not uid:
        return None
    if not slash:
        return Route(uid=uid)
    if tail == "password":
        return Route(uid=uid, password=True)
    if tail == _HISTORY:
        return Route(uid=uid, history=True)
    collection, slash, which = tail.partition("/")
    if collection != _APP_PASSWORDS or "/" in which:
        return None
    return Route(uid=uid, app_passwords=True, app_password=which or None)


#: The admin routes as OpenAPI path templates, with their methods.
TEMPLATES: dict[str, tuple[str, ...]] = {
    PREFIX: ("GET", "POST"),
    PREFIX + "/{uid}": ("GET", "PATCH", "DELETE"),
    PREFIX + "/{uid}/password": ("PUT",),
    PREFIX + "/{uid}/" + _APP_PASSWORDS: ("GET", "POST"),
    PREFIX + "/{uid}/" + _APP_PASSWORDS + "/{id}": ("DELETE",),
    PREFIX + "/{uid}/" + _HISTORY: ("GET",),
}


def allowed_methods(r: Route) -> tuple[str, ...]:
    if r.uid is None:
        return ("GET", "POST")
    if r.password:
        return ("PUT",)
    if r.history:
        return ("GET",)
    if r.app_password is not None:
        return ("DELETE",)
    if r.app_passwords:
        return ("GET", "POST")
    return ("GET", "PATCH", "DELETE")


@dataclass(frozen=True, slots=True)
class Search:
    pattern: str
    limit: int


def parse_search(query_string: str) -> Search:
    query = parse_qs(query_string)
    pattern = query.get("search", ["*"])[0] or "*"
    raw = query.get("limit", [str(DEFAULT_LIMIT)])[0]
    try:
        limit = int(raw)
    except ValueError:
        raise ProtocolError(f"limit: expected an integer, got {raw!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ProtocolError(f"limit: must be between 1 and {MAX_LIMIT}")
    return Search(pattern=pattern, limit=limit)


def parse_history_limit(query_string: str) -> int:
    """``?limit=N`` of a history request (1 to MAX_ROWS; default DEFAULT_LIMIT)."""
    raw = parse_qs(query_string).get("limit", [str(DEFAULT_LIMIT)])[0]
    try:
        limit = int(raw)
    except ValueError:
        raise ProtocolError(f"limit: expected an integer, got {raw!r}") from None
    if not 1 <= limit <= MAX_ROWS:
        raise ProtocolError(f"limit: must be between 1 and {MAX_ROWS}")
    return limit


def history_reply(uid: str, events: Sequence[LoginEvent]) -> Reply:
    return json_reply({"uid": uid, "logins": [event_to_json(e) for e in events]})


@dataclass(frozen=True, slots=True)
class PasswordChange:
    """A new password (None: generate one) and the scheme (None: the configured one)."""

    password: bytes | None
    scheme: str | None


def _optional_text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{name}: expected a string")
    return value


def parse_password(data: Mapping[str, Any]) -> PasswordChange:
    """``{"password": "..."}`` or ``{"generate": true}``, optionally with ``"scheme"``."""
    password = _optional_text(data, "password")
    generate = data.get("generate", False)
    if not isinstance(generate, bool):
        raise ProtocolError("generate: expected true or false")
    if (password is None) == (not generate):
        raise ProtocolError("give either 'password' or 'generate': true")
    if password is not None:
        if not password:
            raise ProtocolError("password: must not be empty")
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise ProtocolError(f"password: longer than {MAX_PASSWORD_BYTES} bytes")
        try:
            check_password(password.encode())
        except ValueError as exc:
            raise ProtocolError(f"password: {exc}") from None
    return PasswordChange(
        password=None if password is None else password.encode(),
        scheme=_optional_text(data, "scheme"),
    )


@dataclass(frozen=True, slots=True)
class Create:
    """A new account: its uid, the optional password change, and other fields."""

    account: Account
    password: PasswordChange | None
    changes: Mapping[str, Any]


_CREATE_KEYS = ("uid", "password", "generate", "scheme")


def parse_create(data: Mapping[str, Any]) -> Create:
    """``{"uid": ..., "password"|"generate": ..., "scheme": ..., <fields as for PATCH>}``."""
    uid = _optional_text(data, "uid")
    if not uid:
        raise ProtocolError("uid: required")
    password = None
    if "password" in data or data.get("generate"):
        password = parse_password(data)
    elif "scheme" in data:
        raise ProtocolError("scheme: only with 'password' or 'generate'")
    fields = {k: v for k, v in data.items() if k not in _CREATE_KEYS}
    if "mail" not in fields and "@" in uid:
        fields["mail"] = uid
    return Create(
        account=Account(uid=uid),
        password=password,
        changes=fields,
    )


#: Fields ``GET`` returns that cannot be written through PATCH (uid renames are
#: a delete and a create; passwords have their own endpoint).
READ_ONLY = frozenset({"uid", "password", "ssh_keys", "dns_records", "app_passwords"})


def parse_update(data: Mapping[str, Any], *, uid: str) -> dict[str, Any]:
    """The changes of a PATCH body, for accounts.apply_json (which checks them).

    Sending back what ``GET`` returned is fine: ``uid`` equal to the account's,
    ``password`` as ``"<set>"``, ``ssh_keys``, ``dns_records`` and ``app_passwords``
    (their own endpoint) are skipped; anything else read-only is refused.
    """
    changes = {k: v for k, v in data.items() if k not in READ_ONLY}
    given_uid = data.get("uid")
    if given_uid is not None and (
        not isinstance(given_uid, str) or given_uid.lower() != uid.lower()
    ):
        raise ProtocolError("uid: cannot be changed (delete and create instead)")
    if data.get("password") not in (None, "", "<set>"):
        raise ProtocolError("password: use PUT /api/v1/accounts/{uid}/password")
    if not changes:
        raise ProtocolError("no fields to change")
    return changes


def account_reply(account: Account, *, status: int = 200, generated: bytes | None = None) -> Reply:
    """The account as JSON; a password generated for a new account is added once."""
    body = account_to_json(account)
    if generated is not None:
        body["generated_password"] = generated.decode()
    return json_reply(body, status)


def list_reply(found: Sequence[Account]) -> Reply:
    return json_reply({"accounts": [account_to_json(a) for a in found], "count": len(found)})


def deleted_reply() -> Reply:
    return Reply(status=204, headers=(), body=b"")


def password_reply(uid: str, generated: bytes | None) -> Reply:
    body: dict[str, Any] = {"uid": uid, "changed": True}
    if generated is not None:
        # Returned once, to the administrator who asked; never stored or logged.
        body["password"] = generated.decode()
    return json_reply(body)


@dataclass(frozen=True, slots=True)
class AppPasswordRequest:
    """What ``POST .../app-passwords`` asks for (AccountAdmin checks the rest)."""

    name: str
    services: tuple[str, ...]
    expires: int | None


def parse_app_password(data: Mapping[str, Any]) -> AppPasswordRequest:
    """``{"name": ..., "services": [...], "expires": Unix seconds | "YYYY-MM-DD" | ISO time}``;
    only ``name`` is required."""
    unknown = sorted(set(data) - {"name", "services", "expires"})
    if unknown:
        raise ProtocolError(f"unknown field(s): {', '.join(unknown)}")
    name = _optional_text(data, "name")
    if name is None:
        raise ProtocolError("name: required")
    services = data.get("services", [])
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        raise ProtocolError("services: expected a list of strings")
    raw = data.get("expires")
    if raw is None or (isinstance(raw, int) and not isinstance(raw, bool)):
        expires = raw
    elif isinstance(raw, str):
        try:
            expires = parse_expiry(raw)
        except InvalidAccount as exc:
            raise ProtocolError(str(exc)) from None
    else:
        raise ProtocolError("expires: expected Unix seconds, a date or an ISO 8601 time")
    return AppPasswordRequest(name=name, services=tuple(services), expires=expires)


def app_passwords_reply(account: Account) -> Reply:
    return json_reply(
        {
            "uid": account.uid,
            "app_passwords_only": account.app_passwords_only,
            "app_passwords": [app_password_to_json(a) for a in account.app_passwords],
        }
    )


def new_app_password_reply(uid: str, new: NewAppPassword) -> Reply:
    # The value is returned once, to the administrator who asked; never stored or logged.
    body = {"uid": uid, "app_password": app_password_to_json(new.app_password), "value": new.value}
    return json_reply(body, 201)
