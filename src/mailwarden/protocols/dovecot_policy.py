"""Dovecot 2.3's auth-policy protocol (``auth_policy_server_url``), server side, sans I/O.

What belongs here: reading one policy request that uvicorn already parsed (the
query string and the body bytes) into a :class:`PolicyRequest`, and turning a
:class:`Verdict` into the :class:`~mailwarden.protocols.http_api.Reply` Dovecot
reads. No guard, no networking; the decision is auth/policyserver.py's.

The wire format (Dovecot's ``src/auth/auth-policy.c``, 2.3.19-2.3.21; docs/policy-server.md):

* ``POST <url>?command=allow`` before (and again after a successful) authentication,
  ``POST <url>?command=report`` after the final answer. When the URL already
  ends in ``&``, Dovecot appends only ``command=...``, so the command may follow
  other query parameters.
* The body is one JSON object whose keys are the admin's
  ``auth_policy_request_attributes``: every value a string (one level of nesting,
  ``a/b=...``, gives an object, which we never need). Dovecot adds ``"tls"`` always,
  and for ``report`` the booleans ``"success"`` and ``"policy_reject"``.
* The answer to ``allow`` is ``{"status": N, "msg": "..."}``: below 0 refuses, above
  0 delays N seconds, 0 lets the login go on. The body of a ``report`` answer is
  ignored; any 200-209 will do.

Which key holds the login, the address, the ``pwhash`` and the protocol is
configurable (:class:`AttributeNames`, ``[policy_server]``): the defaults are the
names of Dovecot's default ``auth_policy_request_attributes``.

Malformed input raises :class:`~mailwarden.errors.ProtocolError`, which the front
end answers with 400 for that request only. Dovecot then falls back to
``auth_policy_reject_on_fail`` for that login, as for any failure of the server.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from mailwarden.errors import ProtocolError
from mailwarden.protocols.http_api import Reply

#: Longest attribute value accepted (a login, an address, a digest in hex).
MAX_VALUE_LENGTH = 1024
#: Most keys accepted in one request body (Dovecot's default sends seven).
MAX_KEYS = 64
#: Mechanisms whose "password" Dovecot hashes into ``pwhash``; with any other
#: (CRAM-MD5, SCRAM-*) the hash covers no password and is the same for every try.
PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"})


class Command(enum.Enum):
    ALLOW = "allow"
    REPORT = "report"


@dataclass(frozen=True, slots=True, kw_only=True)
class AttributeNames:
    """The body keys of the values the guard needs (``auth_policy_request_attributes``)."""

    login: str = "login"
    remote: str = "remote"
    pwhash: str = "pwhash"
    protocol: str = "protocol"
    mechanism: str = "mech"


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRequest:
    """One parsed policy request.

    ``pwhash`` is ``""`` when the body has none, or when the mechanism sent says the
    hash covers no password (then every failure counts).
    ``success`` and ``policy_reject`` are only meaningful for ``report``.
    """

    command: Command
    login: str
    remote: str
    pwhash: str
    protocol: str
    mechanism: str
    success: bool
    policy_reject: bool
    tls: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """The answer to ``allow``: ``status`` < 0 refuses, > 0 delays that many
    seconds, 0 continues; ``message`` becomes the refusal's ``reason`` in Dovecot."""

    status: int
    message: str = ""


CONTINUE = Verdict(status=0)


def parse_command(query_string: bytes) -> Command:
    """The ``command`` of the query (``?command=allow``, ``?x=y&command=report``)."""
    try:
        text = query_string.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("the query string is not ASCII") from None
    values = parse_qs(text, keep_blank_values=True).get("command", [])
    if not values:
        raise ProtocolError("command=allow or command=report is required in the query")
    if len(set(values)) != 1:
        raise ProtocolError("the query names more than one command")
    try:
        return Command(values[0])
    except ValueError:
        raise ProtocolError(
            f"unknown command {values[0][:40]!r}: expected allow or report"
        ) from None


def parse_request(command: Command, body: bytes, names: AttributeNames) -> PolicyRequest:
    """The request in ``body`` (already bounded by ``http.max_body_bytes``)."""
    try:
        data: Any = json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError among them
        raise ProtocolError(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("the body is nested too deep") from None
    if not isinstance(data, dict):
        raise ProtocolError("the body must be a JSON object")
    if len(data) > MAX_KEYS:
        raise ProtocolError(f"the body has more than {MAX_KEYS} keys")
    login = _text(data, names.login, required=True)
    mechanism = _text(data, names.mechanism)
    pwhash = _text(data, names.pwhash).lower()
    if mechanism and mechanism.upper() not in PLAINTEXT_MECHANISMS:
        pwhash = ""  # the digest of no password: the same for every guess
    if pwhash and any(c not in "0123456789abcdef" for c in pwhash):
        raise ProtocolError(f"{names.pwhash!r} must be hexadecimal")
    report = command is Command.REPORT
    return PolicyRequest(
        command=command,
        login=login,
        remote=_text(data, names.remote),
        pwhash=pwhash,
        protocol=_text(data, names.protocol),
        mechanism=mechanism,
        success=_flag(data, "success", required=report),
        policy_reject=_flag(data, "policy_reject", required=False),
        tls=_flag(data, "tls", required=False),
    )


def _text(data: dict[str, Any], key: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise ProtocolError(
                f"the body has no {key!r} (check auth_policy_request_attributes"
                " against [policy_server])"
            )
        return ""
    if not isinstance(value, str):
        raise ProtocolError(f"{key!r} must be a string")
    if len(value) > MAX_VALUE_LENGTH:
        raise ProtocolError(f"{key!r} is longer than {MAX_VALUE_LENGTH} characters")
    if "\0" in value:
        raise ProtocolError(f"{key!r} contains a NUL character")
    return value


def _flag(data: dict[str, Any], key: str, *, required: bool) -> bool:
    value = data.get(key)
    if value is None:
        if required:
            raise ProtocolError(f"a report needs the boolean {key!r}")
        return False
    if not isinstance(value, bool):
        raise ProtocolError(f"{key!r} must be true or false")
    return value


def verdict_reply(verdict: Verdict) -> Reply:
    """The answer to ``allow``: ``{"status": N}``, with ``"msg"`` when there is one."""
    body: dict[str, object] = {"status": verdict.status}
    if verdict.message:
        body["msg"] = verdict.message
    return Reply(status=200, headers=(), body=json.dumps(body).encode())


def report_reply() -> Reply:
    """The answer to ``report`` (Dovecot ignores the body; ``{"status":0}`` for a human)."""
    return Reply(status=200, headers=(), body=b'{"status":0}')
