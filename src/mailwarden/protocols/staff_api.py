"""The admin API's routes for administrators, API tokens and the audit log: pure.

``GET /api/v1/audit?user=UID&actor=NAME&since=WHEN&limit=N`` → ``{"entries": [...], "count": N}``
``GET|POST /api/v1/admins``                      → the administrators / 201 + the new one
``PATCH|DELETE /api/v1/admins/{name}``           → ``{"role": ...}`` / 204
``GET|POST /api/v1/tokens``                      → the tokens / 201 + the token, its value once
``DELETE /api/v1/tokens/{name}``                 → 204

frontends/http_admin.py authorises (auth/roles.py), calls accounts/staff.py and
sends what is built here. ``since`` is read by :func:`parse_since`, which the
CLI's ``mailwarden audit --since`` uses as well.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from mailwarden.errors import ProtocolError
from mailwarden.protocols.http_api import Reply, json_reply
from mailwarden.state.base import MAX_AUDIT_ROWS, Administrator, ApiToken, AuditEntry, AuditQuery

AUDIT = "/api/v1/audit"
ADMINS = "/api/v1/admins"
TOKENS = "/api/v1/tokens"
MAX_PASSWORD_BYTES = 4096

#: The routes as OpenAPI path templates, with their methods.
TEMPLATES: dict[str, tuple[str, ...]] = {
    AUDIT: ("GET",),
    ADMINS: ("GET", "POST"),
    ADMINS + "/{name}": ("PATCH", "DELETE"),
    TOKENS: ("GET", "POST"),
    TOKENS + "/{name}": ("DELETE",),
}


@dataclass(frozen=True, slots=True)
class StaffRoute:
    """``kind`` is ``audit``, ``admins`` or ``tokens``; ``name`` None for the collection."""

    kind: str
    name: str | None = None


def route(path: str) -> StaffRoute | None:
    """The route of ``path`` (already percent-decoded), or None if it is not one."""
    if path in (AUDIT, AUDIT + "/"):
        return StaffRoute("audit")
    for base, kind in ((ADMINS, "admins"), (TOKENS, "tokens")):
        if path in (base, base + "/"):
            return StaffRoute(kind)
        if path.startswith(base + "/"):
            name = path[len(base) + 1 :]
            return StaffRoute(kind, name) if name and "/" not in name else None
    return None


def allowed_methods(r: StaffRoute) -> tuple[str, ...]:
    if r.kind == "audit":
        return TEMPLATES[AUDIT]
    base = ADMINS if r.kind == "admins" else TOKENS
    return TEMPLATES[base if r.name is None else base + "/{name}"]


_RELATIVE = re.compile(r"(\d{1,6})([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float) -> float:
    """A point in time: ``30m``, ``12h``, ``7d``, ``2w`` ago; an ISO 8601 date or
    time (UTC unless it says otherwise); or seconds since the epoch."""
    text = text.strip()
    m = _RELATIVE.fullmatch(text)
    if m:
        return now - int(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ProtocolError(
            f"since: {text!r} is not 7d, 12h, 30m, an ISO 8601 date or epoch seconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def parse_expiry(text: str, now: float) -> float:
    """When something stops working: ``30d``, ``12h`` ... from now, or an absolute
    time as :func:`parse_since` reads it."""
    m = _RELATIVE.fullmatch(text.strip())
    if m:
        return now + int(m.group(1)) * _UNITS[m.group(2)]
    return parse_since(text, now)


def parse_limit(raw: str) -> int:
    try:
        limit = int(raw)
    except ValueError:
        raise ProtocolError(f"limit: expected an integer, got {raw!r}") from None
    if not 1 <= limit <= MAX_AUDIT_ROWS:
        raise ProtocolError(f"limit: must be between 1 and {MAX_AUDIT_ROWS}")
    return limit


def parse_audit_query(query_string: str, now: float) -> AuditQuery:
    query = parse_qs(query_string)

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values and values[0] else None

    since = one("since")
    return AuditQuery(
        target=one("user"),
        actor=one("actor"),
        since=None if since is None else parse_since(since, now),
        limit=parse_limit(one("limit") or "100"),
    )


def _text(data: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{name}: a non-empty string is required")
    return value


@dataclass(frozen=True, slots=True)
class NewAdmin:
    name: str
    password: bytes
    role: str

    def __repr__(self) -> str:
        return f"NewAdmin(name={self.name!r}, role={self.role!r})"


def parse_new_admin(data: Mapping[str, Any]) -> NewAdmin:
    """``{"name": ..., "password": ..., "role": "admin"|"helpdesk"}`` (role: admin)."""
    name = _text(data, "name") or ""
    password = (_text(data, "password") or "").encode()
    if len(password) > MAX_PASSWORD_BYTES:
        raise ProtocolError(f"password: longer than {MAX_PASSWORD_BYTES} bytes")
    role = _text(data, "role", required=False) or "admin"
    return NewAdmin(name=name, password=password, role=role)


def parse_role(data: Mapping[str, Any]) -> str:
    """A PATCH of an administrator: ``{"role": ...}``."""
    extra = set(data) - {"role", "name"}
    if extra:
        raise ProtocolError(f"only 'role' can be changed here, not {', '.join(sorted(extra))}")
    return _text(data, "role") or ""


@dataclass(frozen=True, slots=True)
class NewToken:
    name: str
    scope: str
    expires: float | None


def parse_new_token(data: Mapping[str, Any], now: float) -> NewToken:
    """``{"name": ..., "scope": "read"|"helpdesk"|"admin", "expires": WHEN}``; WHEN is an
    ISO 8601 time, epoch seconds or ``30d``/``12h`` from now; or ``"expires_in"``
    gives seconds from now."""
    name = _text(data, "name") or ""
    scope = _text(data, "scope") or ""
    expires: float | None = None
    raw = data.get("expires")
    if raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ProtocolError("expires: an ISO 8601 time or epoch seconds")
        expires = float(raw) if not isinstance(raw, str) else parse_expiry(raw, now)
    within = data.get("expires_in")
    if within is not None:
        if isinstance(within, bool) or not isinstance(within, int | float) or within <= 0:
            raise ProtocolError("expires_in: a number of seconds > 0")
        if expires is not None:
            raise ProtocolError("give 'expires' or 'expires_in', not both")
        expires = now + float(within)
    return NewToken(name=name, scope=scope, expires=expires)


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "time": entry.time,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "fields": list(entry.fields),
        "source": entry.source,
    }


def audit_reply(entries: Sequence[AuditEntry]) -> Reply:
    return json_reply({"entries": [entry_json(e) for e in entries], "count": len(entries)})


def admin_json(admin: Administrator, *, totp: bool | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": admin.name, "role": admin.role, "created": admin.created}
    if totp is not None:
        body["totp"] = totp
    return body


def admin_reply(admin: dict[str, Any], *, status: int = 200) -> Reply:
    return json_reply(admin, status)


def admins_reply(admins: Sequence[dict[str, Any]]) -> Reply:
    return json_reply({"admins": list(admins), "count": len(admins)})


def token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "name": token.name,
        "scope": token.scope,
        "created": token.created,
        "created_by": token.created_by,
        "expires": token.expires,
    }


def tokens_reply(tokens: Sequence[ApiToken]) -> Reply:
    return json_reply({"tokens": [token_json(t) for t in tokens], "count": len(tokens)})


def new_token_reply(token: ApiToken, value: str) -> Reply:
    # The value is returned once, to the administrator who asked; only its digest is kept.
    return json_reply({**token_json(token), "token": value}, 201)
