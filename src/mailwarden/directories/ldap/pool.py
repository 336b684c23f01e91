"""Connections and failover: which LDAP results mean "this server cannot answer now",
the pool slots, and how an LDAP error is described (the servers' rest and backoff:
:mod:`mailwarden.directories.failover`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import ldap  # type: ignore[import-untyped]
import ldap.dn  # type: ignore[import-untyped]
import ldap.filter  # type: ignore[import-untyped]
from mailwarden.directories.failover import Servers as Servers  # noqa: PLC0414 - re-exported

log = logging.getLogger("mailwarden.directory.ldap")

# Results that mean "this server cannot answer now": drop the connection, rest the
# server, and (for reads) try the next one.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    ldap.SERVER_DOWN,
    ldap.CONNECT_ERROR,
    ldap.TIMEOUT,
    ldap.BUSY,
    ldap.UNAVAILABLE,
)
RETRYABLE: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, TimeoutError)
# The schema refuses a value: the administrator's input, not an outage.
VALUE_ERRORS: tuple[type[Exception], ...] = (
    ldap.INVALID_SYNTAX,
    ldap.CONSTRAINT_VIOLATION,
    ldap.OBJECT_CLASS_VIOLATION,
    ldap.UNDEFINED_TYPE,
    ldap.INVALID_DN_SYNTAX,
    ldap.TYPE_OR_VALUE_EXISTS,
)


@dataclass(slots=True)
class Slot:
    conn: Any = None  # an ldap.ldapobject.LDAPObject bound as the service account
    server: str = ""


def quiet_unbind(conn: Any) -> None:
    with contextlib.suppress(ldap.LDAPError):
        conn.unbind_s()


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ldap.LDAPError) and exc.args and isinstance(exc.args[0], dict):
        info = exc.args[0]
        return str(info.get("desc", type(exc).__name__)) + (
            f" ({info['info']})" if info.get("info") else ""
        )
    return str(exc) or type(exc).__name__
