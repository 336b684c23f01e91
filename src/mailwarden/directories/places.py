"""Where a config's directory keeps its accounts, and whether two configs name the same
accounts: ``mailwarden migrate`` refuses to copy a directory onto itself (or an LDAP
subtree into one that contains it), which would replace every account by itself at
best and, on LDAP, move entries out of the subtree being read at worst.

The one rule for "same accounts", per backend (a backend added to
``DirectoryConfig.backend`` must add its case here: mypy's exhaustiveness check
fails until it does):

* SQLite: the same file (``samefile`` when both exist, so symlinks and hard links
  count), else the same resolved path.
* LDAP: a server both configs list (URLs compared with scheme and host lower-cased,
  the default port filled in and the loopback names as one) and base DNs of which one
  is the other or lies under it (compared RDN by RDN, case-insensitively).
"""

from __future__ import annotations

import os
import urllib.parse
from typing import assert_never

from mailwarden import config as config_mod
from mailwarden.config import Config

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}


def same_accounts(a: Config, b: Config) -> str | None:
    """Why the directories of ``a`` and ``b`` hold the same accounts, or None."""
    if a.directory.backend != b.directory.backend:
        return None
    match a.directory.backend:
        case "sqlite":
            return _same_sqlite(a, b)
        case "ldap":
            return _same_ldap(a, b)
        case "sql":
            return _same_sql(a, b)
        case never:
            assert_never(never)


def _sqlite_path(config: Config) -> str:
    return os.path.realpath(config_mod.config_relative(config.source, config.directory.path))


def _same_sqlite(a: Config, b: Config) -> str | None:
    path_a, path_b = _sqlite_path(a), _sqlite_path(b)
    try:
        same = os.path.samefile(path_a, path_b)
    except OSError:
        same = path_a == path_b
    return f"both use the SQLite file {path_a}" if same else None


def _same_sql(a: Config, b: Config) -> str | None:
    """The same database on a server both configs list (replicas included)."""
    if (a.sql.driver, a.sql.database) != (b.sql.driver, b.sql.database):
        return None

    def hosts(c: Config) -> set[str]:
        return {h.lower() for h in (*c.sql.hosts, *c.sql.replicas)}

    shared = hosts(a) & hosts(b)
    if not shared:
        return None
    return f"both use the {a.sql.driver} database {a.sql.database} on {sorted(shared)[0]}"


def server_key(url: str) -> str:
    """An LDAP URL as compared here: ``scheme://host:port`` (ldapi: the socket path)."""
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "ldapi":
        return f"ldapi://{os.path.realpath(urllib.parse.unquote(parts.netloc))}"
    host = (parts.hostname or "localhost").lower()
    host = "localhost" if host in _LOOPBACK else host
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 389)
    except ValueError:
        port = 0
    return f"{scheme}://{host}:{port}"


def dn_key(dn: str) -> tuple[tuple[str, ...], ...]:
    """A DN as compared here: its RDNs, each a sorted tuple of ``type=value`` in lower
    case, the most general (the suffix) first."""
    import ldap.dn  # type: ignore[import-untyped]  # noqa: PLC0415 - only for LDAP configs

    try:
        rdns = ldap.dn.str2dn(dn.strip())
    except ldap.DECODING_ERROR:
        return ((dn.strip().lower(),),)
    return tuple(
        tuple(sorted(f"{kind.lower()}={value.lower()}" for kind, value, _flags in rdn))
        for rdn in reversed(rdns)
    )


def _same_ldap(a: Config, b: Config) -> str | None:
    shared = {server_key(u) for u in a.ldap.servers} & {server_key(u) for u in b.ldap.servers}
    if not shared:
        return None
    base_a, base_b = dn_key(a.ldap.base_dn), dn_key(b.ldap.base_dn)
    shorter = min(len(base_a), len(base_b))
    if base_a[:shorter] != base_b[:shorter]:
        return None
    server = sorted(shared)[0]
    if len(base_a) == len(base_b):
        return f"both use base DN {a.ldap.base_dn!r} on {server}"
    return (
        f"base DNs {a.ldap.base_dn!r} and {b.ldap.base_dn!r} on {server}: one lies under the other"
    )
