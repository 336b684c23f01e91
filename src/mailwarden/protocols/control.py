"""The daemon's control socket protocol: one JSON object per line, each way.

``mailwarden guard ...`` (and, later, ``mailwarden status``) run in a separate
process; with the in-memory guard store the state they need lives only in the
daemon. They ask it over a UNIX socket (``server.control_socket``, mode 0600 by
default: only its owner, normally root, may connect).

Request: ``{"op": "<name>", ...arguments}\\n``. Reply: ``{"ok": true, "result": ...}\\n``
or ``{"ok": false, "error": "<message>"}\\n``. One connection may carry several
requests. :class:`LineReader` splits the byte stream; :func:`parse_request` checks a
line; :func:`reply` and :func:`error` format answers. No I/O here.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from typing import Any

from mailwarden.errors import ProtocolError
from mailwarden.protocols.checkpassword import QUERY_ARGS

MAX_LINE = 65536

#: op -> the argument names it takes (all optional; the handler checks their types).
OPS: dict[str, tuple[str, ...]] = {
    "ping": (),
    "guard.list": (),
    "guard.unblock": ("target",),
    "cache.flush": ("users",),
    "status": (),
    "store": ("method", "args"),
    # ``mailwarden checkpassword``'s daemon path: one login decided, with its userdb
    # fields, in one round trip (protocols/checkpassword.py: Query, decision_to_wire).
    "checkpassword": QUERY_ARGS,
}

#: The guard store methods the daemon runs for a ``store`` op (its front end checks
#: the name; guard/stores/control.py forwards only these).
STORE_METHODS = frozenset(
    {"hit", "counts", "ban", "banned", "bans", "unban", "add_member", "has_member"}
)


@dataclass(frozen=True, slots=True)
class Request:
    op: str
    args: dict[str, Any]


class LineReader:
    """Bytes in, complete lines out; a line over MAX_LINE is a ProtocolError."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: collections.deque[bytes] = collections.deque()

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; a line over the limit is refused at once."""
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if len(line) > MAX_LINE:
                raise ProtocolError(f"control line longer than {MAX_LINE} bytes")
            self._lines.append(line)
        if len(self._buffer) > MAX_LINE:
            raise ProtocolError(f"control line longer than {MAX_LINE} bytes")

    def next_event(self) -> bytes | None:
        """The next complete line without its LF, or ``None`` while there is none."""
        return self._lines.popleft() if self._lines else None


def parse_request(line: bytes) -> Request:
    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ProtocolError("control request is not a JSON object") from None
    if not isinstance(data, dict):
        raise ProtocolError("control request is not a JSON object")
    op = data.pop("op", None)
    if not isinstance(op, str) or op not in OPS:
        raise ProtocolError(f"unknown op {op!r} (one of {', '.join(sorted(OPS))})")
    unknown = set(data) - set(OPS[op])
    if unknown:
        raise ProtocolError(f"{op}: unknown argument(s) {', '.join(sorted(unknown))}")
    return Request(op=op, args=data)


def request(op: str, **args: Any) -> bytes:
    """A request line (for the client side)."""
    return json.dumps({"op": op, **args}).encode() + b"\n"


def reply(result: Any) -> bytes:
    return json.dumps({"ok": True, "result": result}).encode() + b"\n"


def error(message: str) -> bytes:
    return json.dumps({"ok": False, "error": message}).encode() + b"\n"


def parse_reply(line: bytes) -> Any:
    """The result of a reply line (client side); ProtocolError for an error reply."""
    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError("the daemon's reply is not JSON") from None
    if not isinstance(data, dict) or "ok" not in data:
        raise ProtocolError("the daemon's reply is malformed")
    if not data["ok"]:
        raise ProtocolError(str(data.get("error", "failed")))
    return data.get("result")
