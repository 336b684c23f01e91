"""The HTTP API's own wire values, without any HTTP server: the one reply type, the
route table, the OpenAPI document and the small JSON bodies of the admin routes.

What belongs here: everything about the HTTP API that is pure. Every route handler
of ``frontends/http.py`` returns a :class:`Reply`, built here, in
protocols/nauthilus.py (the auth routes), protocols/admin_api.py (accounts) or
protocols/nginx_auth.py (nginx's headers); the front end only sends it.

The OpenAPI document is package data (``openapi.json`` next to this module), read
once; tests/frontends/test_http_frontend.py checks that it names exactly the routes
and methods served, and schemathesis runs against it (tests/frontends/test_http_openapi.py).
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from mailwarden.errors import ProtocolError

OPENAPI_PATH = "/api/v1/openapi.json"

ROUTES: Mapping[str, tuple[str, ...]] = {
    "/api/v1/auth/json": ("GET", "POST"),
    "/api/v1/auth/nginx": ("GET",),
    "/api/v1/auth/header": ("GET", "POST"),
    "/api/v1/cache/flush": ("DELETE",),
    "/api/v1/bruteforce/list": ("GET", "POST"),
    "/api/v1/bruteforce/flush": ("DELETE",),
    OPENAPI_PATH: ("GET",),
    "/ping": ("GET",),
    "/healthz": ("GET",),
    "/readyz": ("GET",),
    "/metrics": ("GET",),
}
"""Fixed paths -> allowed methods (the account routes are protocols/admin_api.py's)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """An HTTP answer: status, headers (in order) and the body bytes."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    content_type: str = "application/json"


class SessionIds:
    """Request ids: 24 hex digits from the OS's random source, as ``secrets.token_hex(12)``
    gives, read a batch at a time (one ``getrandom`` per request was 2 % of a request's
    CPU)."""

    __slots__ = ("_at", "_hex")

    BATCH = 256

    def __init__(self) -> None:
        self._hex = ""
        self._at = 0

    def next(self) -> str:
        at = self._at
        if at >= len(self._hex):
            self._hex, at = secrets.token_hex(12 * self.BATCH), 0
        self._at = at + 24
        return self._hex[at : at + 24]


def json_reply(value: object, status: int = 200) -> Reply:
    return Reply(status=status, headers=(), body=json.dumps(value).encode())


def asgi_headers(reply: Reply) -> list[tuple[bytes, bytes]]:
    """The reply's headers for ``http.response.start``, content type and length first."""
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
    ]
    for name, value in reply.headers:
        # A header value must never carry CR/LF: it would split the response.
        safe = value
        if "\r" in safe or "\n" in safe:
            safe = safe.replace("\r", " ").replace("\n", " ")
        headers.append((name.lower().encode(), safe.encode("utf-8")))
    return headers


def query_mode(query_string: bytes) -> str:
    """The ``mode`` of ``/api/v1/auth/json`` (``""`` when absent)."""
    if not query_string:
        return ""
    modes: list[str] = parse_qs(query_string.decode("latin-1")).get("mode", [""])
    return modes[0]


# --------------------------------------------------------------------------- OpenAPI


@functools.cache
def openapi() -> dict[str, Any]:
    """The OpenAPI 3 document of every route (``openapi.json``, package data)."""
    text = resources.files(__package__).joinpath("openapi.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@functools.cache
def openapi_reply() -> Reply:
    return json_reply(openapi())


# --------------------------------------------------------------------------- admin bodies


def ping_reply() -> Reply:
    return Reply(status=200, headers=(), body=b'{"status":"ok"}')


def ready_reply(checks: Mapping[str, str], *, session: str) -> Reply:
    """``/readyz``: 200 when every check is ``"ok"``, else 503 with the request id.

    Each check shows only its state word (the text before ``:``); what is wrong is
    for the log, which carries the same request id.
    """
    ready = all(value == "ok" for value in checks.values())
    body: dict[str, object] = {
        "status": "ok" if ready else "unavailable",
        "checks": {name: value.partition(":")[0] for name, value in checks.items()},
    }
    if not ready:
        body["request_id"] = session
    return json_reply(body, 200 if ready else 503)


def flush_user(data: Mapping[str, Any]) -> str:
    """The user of a ``/api/v1/cache/flush`` body (ProtocolError without one)."""
    user = data.get("user")
    if not isinstance(user, str) or not user:
        raise ProtocolError("field 'user' (a non-empty string) is required")
    return user


def cache_flushed_reply(user: str, removed: int) -> Reply:
    result = {"user": user, "status": f"{removed} keys flushed"}
    return json_reply({"object": "cache", "operation": "flush", "result": result})


def bans_reply(result: object) -> Reply:
    return json_reply({"object": "bruteforce", "operation": "list", "result": result})


def unblocked_reply(target: str, lifted: int) -> Reply:
    result = {"target": target, "lifted": lifted}
    return json_reply({"object": "bruteforce", "operation": "flush", "result": result})
