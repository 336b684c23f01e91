"""Logging in to a POP3 or IMAP server on a user's behalf, sans I/O (cluster forwarding).

What belongs here: the client side of the login dialog that session forwarding
(qmail-ldap's "CLUSTERING SUPPORT") performs on the account's mail host before
relaying bytes: POP3 ``USER``/``PASS`` (RFC 1939) and IMAP ``LOGIN`` or
``AUTHENTICATE PLAIN`` (RFC 9051, RFC 4616). A :class:`LoginDialog` is fed the
server's lines and says what to send next; the relay in frontends/relay.py
does the socket work.

Outcomes: :class:`LoggedIn` carries the server's final reply line (relayed to the
client, so it sees the mail host's own success line); :class:`Refused` means the
mail host rejected credentials our directory accepted (the directories disagree:
a temporary failure for the client, never a wrong password); a reply that breaks
the protocol is a ProtocolError.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal

from mailwarden.errors import ProtocolError

MAX_LINE = 8192
TAG = b"M1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """Bytes to write to the mail host, then feed the next server line."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedIn:
    """The mail host accepted the login; ``reply`` is its final line (CRLF included)."""

    reply: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """The mail host refused the login."""

    reply: bytes


Step = Send | LoggedIn | Refused | None  # None: feed another line


def _quoted(value: bytes) -> bytes:
    # An IMAP quoted string; CR, LF and NUL cannot be quoted, so they are refused.
    if any(c in value for c in b"\r\n\0"):
        raise ProtocolError("login or password cannot be sent in an IMAP quoted string")
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class LoginDialog:
    """One login: feed each server line to :meth:`receive_line`, act on the step returned."""

    def __init__(
        self,
        protocol: Literal["pop3", "imap"],
        user: bytes,
        password: bytes,
        *,
        imap_method: Literal["login", "plain"] = "plain",
    ) -> None:
        if any(c in user + password for c in b"\r\n\0"):
            raise ProtocolError("login or password contains CR, LF or NUL")
        self.protocol = protocol
        self._user = user
        self._password = password
        self._imap_method = imap_method
        self._state = "greeting"

    def receive_line(self, line: bytes) -> Step:
        if len(line) > MAX_LINE:
            raise ProtocolError("mail host sent an over-long line")
        if self.protocol == "pop3":
            return self._pop3(line)
        return self._imap(line)

    def _pop3(self, line: bytes) -> Step:
        ok = line.startswith(b"+OK")
        if not ok and not line.startswith(b"-ERR"):
            raise ProtocolError(f"unexpected POP3 reply: {line[:80]!r}")
        match self._state:
            case "greeting":
                if not ok:
                    return Refused(reply=line)
                self._state = "user"
                return Send(data=b"USER " + self._user + b"\r\n")
            case "user":
                if not ok:
                    return Refused(reply=line)
                self._state = "pass"
                return Send(data=b"PASS " + self._password + b"\r\n")
            case _:
                self._state = "done"
                return LoggedIn(reply=line) if ok else Refused(reply=line)

    def _imap(self, line: bytes) -> Step:
        match self._state:
            case "greeting":
                if not line.startswith(b"* OK"):
                    return Refused(reply=line)
                self._state = "login"
                if self._imap_method == "login":
                    cmd = b" LOGIN " + _quoted(self._user) + b" " + _quoted(self._password)
                    return Send(data=TAG + cmd + b"\r\n")
                return Send(data=TAG + b" AUTHENTICATE PLAIN\r\n")
            case "login":
                if line.startswith(b"+"):
                    token = b"\0" + self._user + b"\0" + self._password
                    return Send(data=base64.b64encode(token) + b"\r\n")
                if line.startswith(b"* "):
                    return None  # untagged data (CAPABILITY) before the tagged reply
                if line.startswith(TAG + b" OK"):
                    self._state = "done"
                    return LoggedIn(reply=line)
                if line.startswith((TAG + b" NO", TAG + b" BAD")):
                    self._state = "done"
                    return Refused(reply=line)
                raise ProtocolError(f"unexpected IMAP reply: {line[:80]!r}")
            case _:
                raise ProtocolError("login dialog already finished")


def client_reply(protocol: Literal["pop3", "imap"], reply: bytes, client_tag: bytes) -> bytes:
    """The mail host's success line as the client expects it.

    POP3: the line as is. IMAP: the tagged OK with the client's own tag (from the
    front end that read its LOGIN, e.g. ``IMAPLOGINTAG``); without a tag, nothing.
    """
    if protocol == "pop3":
        return reply
    if not client_tag:
        return b""
    return client_tag + reply[len(TAG) :]
