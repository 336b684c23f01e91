"""The DJB checkpassword interface, sans I/O: the fd-3 block in, exit codes and environment out.

What belongs here: parsing the ``login\\0password\\0timestamp\\0`` block that qmail-popup,
qmail-smtpd and Dovecot's checkpassword passdb write to descriptor 3, the exit codes
of the interface, and the environment a successful login hands to the subprogram
(qmail-ldap auth_pop's variables and Dovecot's ``checkpassword-reply`` convention).
Reading the descriptor, asking the daemon or the engine and ``exec`` live in
:mod:`mailwarden.checkpassword`.

It also holds the command's :data:`Decision` and the two ways one is made: from the
engine's outcome (:func:`login_decision`, :func:`lookup_decision`: the local path
and the daemon use the same functions) and from the daemon's reply over its control
socket (:class:`Query` out, :func:`decision_to_wire` / :func:`decision_from_wire`
back: one round trip, the decision and the userdb fields together).

Exit codes (qmail's checkpassword, extended by Dovecot 2.3's db-checkpassword.c):

* ``1`` wrong login (unknown user and wrong password alike), ``2`` misuse,
  ``111`` temporary failure; success is the subprogram's own exit status.
* Dovecot's lookups (``AUTHORIZED=1``, empty password): the user exists → the
  program sets ``AUTHORIZED=2`` and execs the reply helper, which exits 2; the
  user is unknown → exit ``3``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from mailwarden.errors import ProtocolError

if TYPE_CHECKING:
    from mailwarden.model import AuthOutcome, LookupOutcome, Password

EXIT_WRONG = 1
EXIT_MISUSE = 2
EXIT_LOOKUP_FOUND = 2
EXIT_LOOKUP_UNKNOWN = 3
EXIT_TEMPFAIL = 111

# qmail's checkpassword reads at most 512 bytes; Dovecot refuses to write more.
MAX_BLOCK = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpasswordInput:
    """The three fields of the fd-3 block. ``timestamp`` is the APOP challenge, if any.

    The password is kept as bytes out of the repr (``secret``) and handed out as a
    :class:`~mailwarden.model.Password` on demand: importing :mod:`mailwarden.model`
    costs about 12 ms, a sixth of the command's whole start when it asks the
    daemon, which needs only the bytes.
    """

    login: str
    secret: bytes = field(repr=False)
    timestamp: bytes

    @property
    def password(self) -> Password:
        """The password field as the engine takes it."""
        from mailwarden.model import Password  # noqa: PLC0415 - see the class docstring

        return Password(self.secret)

    @property
    def apop(self) -> bool:
        """qmail-popup's APOP: a timestamp is set and the password is the hex digest."""
        return bool(self.timestamp) and len(self.secret) == 32


def parse_block(data: bytes, *, max_size: int = MAX_BLOCK) -> CheckpasswordInput:
    """Parse the whole fd-3 block. ProtocolError if it is oversized or truncated.

    The timestamp may be missing its final NUL (some callers close right after
    it); login and password must each be NUL-terminated, and the login non-empty.
    """
    if len(data) > max_size:
        raise ProtocolError(f"checkpassword input longer than {max_size} bytes")
    parts = data.split(b"\0")
    if len(parts) < 3:
        raise ProtocolError("checkpassword input truncated: expected login\\0password\\0")
    login, password, timestamp = parts[0], parts[1], parts[2]
    if any(parts[3:]):
        raise ProtocolError("checkpassword input has data after the timestamp")
    if not login:
        raise ProtocolError("checkpassword input has an empty login")
    try:
        name = login.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("checkpassword login is not UTF-8") from None
    return CheckpasswordInput(login=name, secret=password, timestamp=timestamp)


class BlockReader:
    """The fd-3 block as a stream: feed it with :meth:`receive_data` (``b""`` at the
    end of the stream); :meth:`next_event` returns the parsed block once the stream
    has ended, and ``None`` before and after. More than ``max_size`` bytes is a
    ProtocolError at once, without reading on."""

    def __init__(self, *, max_size: int = MAX_BLOCK) -> None:
        self._buffer = bytearray()
        self._max_size = max_size
        self._eof = False
        self._done = False

    def receive_data(self, data: bytes) -> None:
        if self._eof:
            if data:
                raise RuntimeError("data received after the end of the stream")
            return
        if not data:
            self._eof = True
            return
        self._buffer += data
        if len(self._buffer) > self._max_size:
            raise ProtocolError(f"checkpassword input longer than {self._max_size} bytes")

    def next_event(self) -> CheckpasswordInput | None:
        if not self._eof or self._done:
            return None
        self._done = True
        return parse_block(bytes(self._buffer), max_size=self._max_size)


def apop_digest(block: CheckpasswordInput) -> bytes:
    """The 16-byte APOP digest from the hex password field. ProtocolError if not hex."""
    try:
        return bytes.fromhex(block.secret.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("APOP digest is not 32 hex digits") from None


def login_environment(
    *, user: str, fields: Mapping[str, str], shell: str | None, master_user: str | None
) -> dict[str, str]:
    """The variables a successful login adds to the subprogram's environment.

    qmail-ldap's auth_pop sets ``USER``, ``HOME``, ``SHELL`` and the mail store
    (``MAILDIR``); Dovecot's checkpassword-reply returns every variable named in
    ``EXTRA``, so each userdb field is also exported as ``userdb_<name>`` and
    listed there. ``fields`` are the userdb fields (home, mail, uid, ...) exactly as
    the engine's lookup gives them, in-process or over the daemon's userdb socket,
    so both paths build the same environment; ``shell`` is the account's login
    shell (not a userdb field).
    """
    env = {
        "USER": user,
        "HOME": fields.get("home", "/"),
        "SHELL": shell or "/bin/sh",
    }
    mail = fields.get("mail", "")
    if mail:
        env["MAILDIR"] = _maildir(mail, env["HOME"])
    extra: list[str] = []
    for key, value in fields.items():
        if key == "home" or not key.replace("_", "").isalnum() or not _safe(value):
            continue
        name = f"userdb_{key}"
        env[name] = value
        extra.append(name)
    if master_user is not None:
        env["MASTER_USER"] = master_user
    env["EXTRA"] = " ".join(extra)
    return env


def _maildir(location: str, home: str) -> str:
    """A Dovecot mail location (``maildir:~/Maildir``) as the path qmail-pop3d expects."""
    path = location.split(":", 1)[1] if ":" in location.split("/", 1)[0] else location
    path = path.split(":", 1)[0]  # drop ":INDEX=..." and similar options
    if path.startswith("~/"):
        path = home.rstrip("/") + path[1:]
    return path if path.endswith("/") else path + "/"


def _safe(text: str) -> bool:
    # checkpassword-reply refuses values with LF, tab or NUL; so do we, field by field.
    return not any(c in text for c in "\n\t\0")


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True, kw_only=True)
class Login:
    """Accepted (or, for a lookup, found): what the environment and the exec need."""

    user: str
    userdb: Mapping[str, str]
    shell: str | None = None
    master_user: str | None = None
    passdb: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A wrong login (exit 1); ``reason`` is for the log only."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown:
    """An ``AUTHORIZED=1`` lookup of a user that does not exist (exit 3)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TempFail:
    """Nothing was decided (exit 111); ``detail`` is logged."""

    detail: str


Decision: TypeAlias = Login | Refused | Unknown | TempFail


def login_decision(outcome: AuthOutcome) -> Decision:
    """The decision on a password login, from the engine's outcome (which carries the
    userdb fields: nothing is read again)."""
    from mailwarden.model import Accepted, Denied, Unavailable  # noqa: PLC0415 - lean start

    match outcome:
        case Denied():
            return Refused(reason=outcome.reason.value)
        case Unavailable():
            return TempFail(detail=outcome.detail)
        case Accepted():
            return Login(
                user=outcome.user,
                userdb=outcome.userdb_fields,
                shell=outcome.account.profile.login_shell,
                master_user=outcome.master_user,
                passdb=dict(outcome.passdb_fields),
            )
    raise AssertionError(outcome)  # pragma: no cover - the union is closed


def lookup_decision(outcome: LookupOutcome) -> Decision:
    """The decision on an ``AUTHORIZED=1`` lookup, from the engine's userdb answer."""
    from mailwarden.model import NotFound, Unavailable, UserRecord  # noqa: PLC0415

    match outcome:
        case NotFound():
            return Unknown()
        case Unavailable():
            return TempFail(detail=outcome.detail)
        case UserRecord():
            return Login(
                user=outcome.user,
                userdb=dict(outcome.fields),
                shell=outcome.account.profile.login_shell,
            )
    raise AssertionError(outcome)  # pragma: no cover - the union is closed


# --------------------------------------------------------------------------- the daemon's op


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """What the command asks the daemon: the control socket's ``checkpassword`` op.

    On the wire (protocols/control.py) its arguments are a JSON object; the
    password travels base64-encoded, since it is bytes and may be any bytes.
    """

    login: str
    secret: bytes = field(repr=False)
    service: str
    lookup_only: bool = False
    remote_ip: str | None = None
    local_ip: str | None = None

    def args(self) -> dict[str, Any]:
        """The op's arguments (the names protocols/control.py lists for it)."""
        return {
            "login": self.login,
            "secret": base64.b64encode(self.secret).decode("ascii"),
            "service": self.service,
            "lookup_only": self.lookup_only,
            "rip": self.remote_ip,
            "lip": self.local_ip,
        }


QUERY_ARGS = ("login", "secret", "service", "lookup_only", "rip", "lip")


def parse_query(args: Mapping[str, Any]) -> Query:
    """A :class:`Query` from the op's arguments; ProtocolError naming what is wrong."""
    login, secret, service = args.get("login"), args.get("secret", ""), args.get("service")
    lookup_only = args.get("lookup_only", False)
    rip, lip = args.get("rip"), args.get("lip")
    if not isinstance(login, str) or not login:
        raise ProtocolError("checkpassword: login must be a non-empty string")
    if not isinstance(service, str) or not service:
        raise ProtocolError("checkpassword: service must be a non-empty string")
    if not isinstance(lookup_only, bool):
        raise ProtocolError("checkpassword: lookup_only must be true or false")
    if not all(ip is None or isinstance(ip, str) for ip in (rip, lip)):
        raise ProtocolError("checkpassword: rip and lip must be strings or null")
    if not isinstance(secret, str):
        raise ProtocolError("checkpassword: secret must be a base64 string")
    try:
        password = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("checkpassword: secret is not valid base64") from None
    return Query(
        login=login,
        secret=password,
        service=service,
        lookup_only=lookup_only,
        remote_ip=rip or None,
        local_ip=lip or None,
    )


def decision_to_wire(decision: Decision) -> dict[str, Any]:
    """The daemon's reply to a :class:`Query` (a JSON object)."""
    match decision:
        case Login():
            return {
                "decision": "login",
                "user": decision.user,
                "userdb": dict(decision.userdb),
                "shell": decision.shell,
                "master_user": decision.master_user,
                "passdb": dict(decision.passdb),
            }
        case Refused():
            return {"decision": "refused", "reason": decision.reason}
        case Unknown():
            return {"decision": "unknown"}
        case TempFail():
            return {"decision": "tempfail", "detail": decision.detail}
    raise AssertionError(decision)  # pragma: no cover - the union is closed


def decision_from_wire(reply: Any) -> Decision:
    """The decision in the daemon's reply; ProtocolError if it is not one."""
    if not isinstance(reply, dict):
        raise ProtocolError("checkpassword reply is not an object")
    kind = reply.get("decision")
    if kind == "login":
        user, shell, master = reply.get("user"), reply.get("shell"), reply.get("master_user")
        userdb, passdb = reply.get("userdb"), reply.get("passdb")
        if not isinstance(user, str) or not all(
            v is None or isinstance(v, str) for v in (shell, master)
        ):
            raise ProtocolError("checkpassword reply: user, shell or master_user is malformed")
        return Login(
            user=user,
            userdb=_string_map(userdb, "userdb"),
            shell=shell,
            master_user=master,
            passdb=_string_map(passdb, "passdb"),
        )
    if kind == "refused" and isinstance(reason := reply.get("reason"), str):
        return Refused(reason=reason)
    if kind == "unknown":
        return Unknown()
    if kind == "tempfail" and isinstance(detail := reply.get("detail"), str):
        return TempFail(detail=detail)
    raise ProtocolError(f"checkpassword reply has no decision the command knows: {kind!r}")


def _string_map(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ProtocolError(f"checkpassword reply: {name} is not an object of strings")
    return value
