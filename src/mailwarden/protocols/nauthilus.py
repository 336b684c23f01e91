"""The Nauthilus-compatible HTTP auth API, without any HTTP server: values in, values out.

What belongs here: reading the JSON body of ``POST /api/v1/auth/json`` into a
:class:`JsonRequest`, checking the caller's HTTP Basic credentials, and turning an
engine outcome into the status, headers and body Nauthilus sends (and the Dovecot
Lua seed script reads). The wire facts come from /work/shared/reference/nauthilus.md:

* success: 200, ``Auth-Status: OK``, ``Auth-User: <account>``, a session header and
  ``{"ok": true, "account_field": ..., "attributes": {name: [values]}}``;
* wrong password, unknown user, blocked source: 403, ``Auth-Status: Invalid login
  or password`` and body ``null`` -- identical, so nothing tells which it was;
* disabled account or service (only after the password was proven): 403 with the
  configured disabled text, the string the seed script compares;
* temporary failure: 500, ``{"error": "Temporary server problem, try again later",
  "request_id": ...}`` and the same status: never the cause, which goes to the log.

Unknown JSON fields are ignored and both ``service`` and ``protocol`` are read:
Nauthilus 3 rejects ``service`` with 400, which breaks the seed script.
No asyncio, no sockets: see tests/test_layers.py.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, assert_never
from urllib.parse import unquote

from mailwarden.errors import ProtocolError
from mailwarden.model import (
    ACCOUNT_PREFIX,
    Accepted,
    Account,
    AuthAttempt,
    AuthOutcome,
    BearerToken,
    Denied,
    DenyReason,
    LookupOutcome,
    NotFound,
    Password,
    Unavailable,
    UserRecord,
)
from mailwarden.protocols.http_api import Reply

STATUS_OK = "OK"
STATUS_INVALID = "Invalid login or password"
STATUS_TEMPFAIL = "Temporary server problem, try again later"

#: Longest value accepted for any string field; longer ones are malformed input.
MAX_FIELD_LENGTH = 4096

#: ``method`` values (SASL mechanism names, as Nauthilus's field holds) whose
#: ``password`` is an OAuth 2.0 bearer token, validated as one (docs/credentials.md).
BEARER_METHODS = frozenset({"xoauth2", "oauthbearer"})

#: Where a published attribute takes its values from. A site maps its own names
#: (``rnsMSMailPath``) onto these sources in ``[http] attributes``; ``userdb:X``
#: and ``passdb:X`` name a Dovecot extra field. The password is never a source.
SOURCES: dict[str, Callable[[Account], tuple[str, ...]]] = {
    "uid": lambda a: (a.uid,),
    "mail": lambda a: (a.mail,) if a.mail else (),
    "alternate_addresses": lambda a: a.alternate_addresses,
    "mail_host": lambda a: (a.mail_host,) if a.mail_host else (),
    "home": lambda a: (a.home,) if a.home else (),
    "mail_location": lambda a: (a.mail_location,) if a.mail_location else (),
    "uid_number": lambda a: (str(a.uid_number),) if a.uid_number is not None else (),
    "gid_number": lambda a: (str(a.gid_number),) if a.gid_number is not None else (),
    "quota_bytes": lambda a: (str(a.quota_bytes),) if a.quota_bytes is not None else (),
    "quota_messages": lambda a: (str(a.quota_messages),) if a.quota_messages is not None else (),
    "master": lambda a: ("true",) if a.master else (),
    "status": lambda a: (a.status.value,),
}

#: Published when ``[http] attributes`` is empty: every source under its own name.
DEFAULT_ATTRIBUTES: Mapping[str, str] = {name: name for name in SOURCES}


def valid_source(source: str) -> bool:
    """Whether ``source`` names something an attribute can be published from."""
    if source in SOURCES:
        return True
    prefix, _, name = source.partition(":")
    return prefix in ("userdb", "passdb") and bool(name)


@dataclass(frozen=True, slots=True, kw_only=True)
class JsonRequest:
    """The fields of one auth request that mailwarden uses; the rest are ignored."""

    username: str
    password: Password | BearerToken | None
    service: str
    client_ip: str | None = None
    client_port: int | None = None
    local_ip: str | None = None
    local_port: int | None = None
    client_id: str | None = None
    secured: bool = False
    method: str | None = None

    def attempt(self, *, session: str, require_master: bool = False) -> AuthAttempt:
        """The engine's view of this request (a password is required here).

        ``require_master`` for ``?mode=master``: the caller is a Dovecot master
        passdb, so only an account with the master flag may pass.
        """
        return AuthAttempt(
            username=self.username,
            credentials=self.password,
            service=self.service,
            mechanism=(self.method or "PLAIN").upper(),
            remote_ip=self.client_ip,
            remote_port=self.client_port,
            local_ip=self.local_ip,
            local_port=self.local_port,
            secured=self.secured,
            session=session,
            frontend="http",
            require_master=require_master,
        )


# --------------------------------------------------------------------------- requests


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if type(value) is str and value.isascii() and len(value) <= MAX_FIELD_LENGTH:
        return value  # the usual field: nothing below can object to it
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ProtocolError(f"field {name!r} must be a string")
    text = str(value)
    if len(text) > MAX_FIELD_LENGTH:
        raise ProtocolError(f"field {name!r} is longer than {MAX_FIELD_LENGTH} characters")
    if not _encodable(text, "strict"):
        raise ProtocolError(f"field {name!r} is not valid Unicode (a lone surrogate)")
    return text


def _encodable(text: str, errors: str) -> bool:
    """Whether ``text`` has a UTF-8 form: JSON's ``\\ud800`` escapes decode to
    lone surrogates, which every later ``encode()`` (hashing, SQLite, the log)
    would refuse with an exception instead of an answer."""
    try:
        text.encode("utf-8", errors)
    except UnicodeEncodeError:
        return False
    return True


def _port(data: Mapping[str, Any], name: str) -> int | None:
    text = _text(data, name)
    if text is None:
        return None
    try:
        port = int(text)
    except ValueError:
        raise ProtocolError(f"field {name!r} must be a port number") from None
    if not 0 <= port <= 65535:
        raise ProtocolError(f"field {name!r} must be a port number 0..65535")
    return port


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object. ProtocolError with a clear message otherwise."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError("request body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"request body is not valid JSON: {exc.msg}") from None
    except ValueError:
        # int() refuses a number of more than 4300 digits (sys.set_int_max_str_digits).
        raise ProtocolError("request body has a number too long to read") from None
    except RecursionError:
        raise ProtocolError("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError("request body must be a JSON object")
    if b"\\u" not in body:
        # The UTF-8 decoder refuses an encoded surrogate, so only a \u escape can
        # make one: without any, the body's text is all valid.
        return data
    try:
        # One pass over every key and value: a ``\\ud800``-``\\udfff`` escape without its pair
        # decodes to a lone surrogate, which is not text and has no UTF-8 form.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("request body has a lone surrogate (\\uD800-\\uDFFF)") from None
    return data


def parse_request(data: Mapping[str, Any], *, need_password: bool) -> JsonRequest:
    """A :class:`JsonRequest` from a decoded body (or header fields), or ProtocolError.

    ``service`` wins over ``protocol`` when both are sent: the seed script sends
    ``service`` and Nauthilus 3 clients send ``protocol``.
    """
    username = _text(data, "username")
    if username is None:
        raise ProtocolError("field 'username' is required")
    password_text = data.get("password")
    password: Password | None = None
    if password_text is not None:
        if not isinstance(password_text, str):
            raise ProtocolError("field 'password' must be a string")
        if len(password_text) > MAX_FIELD_LENGTH:
            raise ProtocolError(f"field 'password' is longer than {MAX_FIELD_LENGTH} characters")
        # surrogateescape: header mode carries undecodable password bytes as
        # U+DC80..U+DCFF (Password.from_text turns them back into those bytes).
        if not _encodable(password_text, "surrogateescape"):
            raise ProtocolError("field 'password' is not valid Unicode (a lone surrogate)")
        password = Password.from_text(password_text)
    method = _text(data, "method")
    credentials: Password | BearerToken | None = password
    if password_text is not None and method is not None and method.lower() in BEARER_METHODS:
        # The caller says the password field carries a bearer token (the mechanism
        # the client used): it is validated as a token, never compared as a password.
        credentials = BearerToken(password_text)
    if need_password and credentials is None:
        raise ProtocolError("field 'password' is required")
    service = _text(data, "service") or _text(data, "protocol") or ""
    ssl = _text(data, "ssl") or _text(data, "ssl_protocol")
    return JsonRequest(
        username=username,
        password=credentials,
        service=service.lower(),
        client_ip=_text(data, "client_ip"),
        client_port=_port(data, "client_port"),
        local_ip=_text(data, "local_ip"),
        local_port=_port(data, "local_port"),
        client_id=_text(data, "client_id"),
        secured=ssl is not None and ssl.lower() not in ("0", "no", "false", "off"),
        method=method,
    )


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic`` header, or None."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def basic_auth_ok(header: str | None, *, username: str, password: str) -> bool:
    """Whether the header carries exactly the configured credentials.

    Secure by default: with no credentials configured nothing is accepted, since
    Nauthilus ships its endpoints open and a forgotten setting must not turn this
    into an oracle for every account's password. Both parts are compared in
    constant time, and both comparisons always run.
    """
    if not username or not password:
        return False
    given = parse_basic(header)
    if given is None:
        return False
    user_ok = hmac.compare_digest(given[0].encode(), username.encode())
    pass_ok = hmac.compare_digest(given[1].encode(), password.encode())
    return user_ok and pass_ok


def bearer_ok(header: str | None, *, token: str) -> bool:
    """Whether ``Authorization: Bearer <token>`` matches; never with no token set."""
    if not token or header is None:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


# --------------------------------------------------------------------------- replies


def attributes(
    account: Account,
    mapping: Mapping[str, str],
    *,
    userdb: Mapping[str, str],
    passdb: Mapping[str, str],
) -> dict[str, list[str]]:
    """The ``attributes`` map: published name -> list of strings (absent when empty).

    Values are always lists because the seed script indexes ``[1]``.
    """
    out: dict[str, list[str]] = {}
    for name, source in (mapping or DEFAULT_ATTRIBUTES).items():
        values: tuple[str, ...]
        if source in SOURCES:
            values = SOURCES[source](account)
        else:
            prefix, _, key = source.partition(":")
            table = userdb if prefix == "userdb" else passdb
            values = (table[key],) if key in table else ()
        if values:
            out[name] = list(values)
    return out


_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _json(value: object) -> bytes:
    return _ENCODER.encode(value).encode()


def session_headers(session: str) -> tuple[tuple[str, str], ...]:
    return (("X-Nauthilus-Session", session), ("X-Mailwarden-Session", session))


def denied_reply(status_text: str, *, session: str) -> Reply:
    return Reply(
        status=403,
        headers=(("Auth-Status", status_text), *session_headers(session)),
        body=b"null",
    )


def tempfail_reply(*, session: str) -> Reply:
    """500 with a generic text and the request id, never the cause.

    The cause (an LDAP URL and its error, a database path) helps an attacker
    map the site and is of no use to the caller, who can only retry; the front
    end logs it under the same request id.
    """
    return Reply(
        status=500,
        headers=(("Auth-Status", STATUS_TEMPFAIL), *session_headers(session)),
        body=_json({"error": STATUS_TEMPFAIL, "request_id": session}),
    )


def success_reply(
    account: Account, attrs: dict[str, list[str]], *, user: str, session: str
) -> Reply:
    return Reply(
        status=200,
        headers=(("Auth-Status", STATUS_OK), ("Auth-User", user), *session_headers(session)),
        body=_json({"ok": True, "account_field": "uid", "attributes": attrs}),
    )


def auth_reply(
    outcome: AuthOutcome,
    *,
    session: str,
    mapping: Mapping[str, str],
    userdb: Callable[[Account], Mapping[str, str]],
    disabled_text: str,
) -> Reply:
    """The reply to a password check."""
    match outcome:
        case Accepted():
            attrs = attributes(
                outcome.account,
                mapping,
                userdb=userdb(outcome.account),
                passdb=outcome.passdb_fields,
            )
            return success_reply(outcome.account, attrs, user=outcome.user, session=session)
        case Denied():
            # The engine sets a message only once the password was proven right,
            # so showing the disabled text cannot reveal which accounts exist.
            disabled = outcome.reason in (DenyReason.DISABLED, DenyReason.SERVICE_DISABLED)
            if disabled and outcome.message is not None:
                return denied_reply(disabled_text, session=session)
            return denied_reply(STATUS_INVALID, session=session)
        case Unavailable():
            return tempfail_reply(session=session)
        case _:
            assert_never(outcome)


def lookup_reply(
    outcome: LookupOutcome,
    *,
    session: str,
    mapping: Mapping[str, str],
) -> Reply:
    """The reply to ``?mode=no-auth`` (a userdb lookup without a password)."""
    match outcome:
        case UserRecord():
            attrs = attributes(outcome.account, mapping, userdb=outcome.fields, passdb={})
            return success_reply(outcome.account, attrs, user=outcome.user, session=session)
        case NotFound():
            return denied_reply(STATUS_INVALID, session=session)
        case Unavailable():
            return tempfail_reply(session=session)
        case _:
            assert_never(outcome)


def list_reply(names: Iterable[str], *, accept: str | None, session: str) -> Reply:
    """``?mode=list-accounts``: a JSON array, or one name per CRLF line for text/plain."""
    items = list(names)
    headers = (("Auth-Status", STATUS_OK), *session_headers(session))
    if accept is not None and "text/plain" in accept and "application/json" not in accept:
        text = "".join(f"{name}\r\n" for name in items)
        return Reply(status=200, headers=headers, body=text.encode(), content_type="text/plain")
    return Reply(status=200, headers=headers, body=_json(items))


def flush_target(data: Mapping[str, Any]) -> str:
    """What ``DELETE /api/v1/bruteforce/flush`` lifts: ``target`` (a network, an
    address, ``account:<uid>`` or ``*``), Nauthilus's ``ip_address`` (with
    ``rule_name`` ``*``: every rule), or ``account``."""
    for name in ("target", "ip_address"):
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    account = data.get("account")
    if isinstance(account, str) and account:
        return ACCOUNT_PREFIX + account
    raise ProtocolError("give 'target', 'ip_address' or 'account' (a non-empty string)")


def error_reply(status: int, message: str, *, challenge: str = "Basic") -> Reply:
    """A client error (400, 401, 404, 405, 413) with a clear message and no trace."""
    headers: tuple[tuple[str, str], ...] = ()
    if status == 401:
        headers = (("WWW-Authenticate", f'{challenge} realm="mailwarden"'),)
    return Reply(status=status, headers=headers, body=_json({"error": message}))


def method_refusal(method: str, allowed: Sequence[str]) -> Reply | None:
    """405 naming the methods ``allowed``, or None when ``method`` is one of them."""
    return None if method in allowed else error_reply(405, f"use {' or '.join(allowed)}")


# --------------------------------------------------------------------------- header mode

#: ``/api/v1/auth/header``: request header (lower case) -> JSON field name.
REQUEST_HEADERS: dict[str, str] = {
    "auth-user": "username",
    "auth-pass": "password",
    "auth-protocol": "protocol",
    "auth-method": "method",
    "client-ip": "client_ip",
    "x-client-port": "client_port",
    "x-client-id": "client_id",
    "x-local-ip": "local_ip",
    "x-auth-port": "local_port",
    "x-ssl": "ssl",
    "x-ssl-protocol": "ssl_protocol",
    "x-ssl-client-verify": "ssl_client_verify",
}

#: Attribute names that look secret are never sent as headers (as Nauthilus 3 does).
SECRET_WORDS = ("password", "secret", "totp", "recovery")


def fields_from_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The JSON-style fields of a header-mode request (values URL-decoded, like nginx's)."""
    out: dict[str, str] = {}
    for header_name, field_name in REQUEST_HEADERS.items():
        value = headers.get(header_name)
        if value is not None:
            out[field_name] = unquote(value, errors="surrogateescape")
    if headers.get("x-auth-password-encoded") == "1" and "password" in out:
        encoded = out["password"]
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise ProtocolError("Auth-Pass is not base64url") from None
        out["password"] = raw.decode("utf-8", "surrogateescape")
    return out


def as_header_reply(reply: Reply) -> Reply:
    """Header mode: the attributes move into ``X-Nauthilus-<Name>: v1,v2`` headers."""
    if reply.status != 200 or reply.content_type != "application/json":
        return reply
    decoded = json.loads(reply.body)
    if not isinstance(decoded, dict):  # list-accounts keeps its list body
        return reply
    attrs: dict[str, list[str]] = decoded.get("attributes", {})
    extra = tuple(
        (f"X-Nauthilus-{name}", ",".join(values))
        for name, values in attrs.items()
        if _safe_header_name(name) and not any(w in name.lower() for w in SECRET_WORDS)
    )
    return Reply(
        status=200, headers=(*reply.headers, *extra), body=b"OK", content_type="text/plain"
    )


def _safe_header_name(name: str) -> bool:
    return bool(name) and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
