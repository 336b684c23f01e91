"""Who may use which Dovecot socket: each listener's mode, owner and trust.

One place for the permission rules of the four UNIX listeners (``[dovecot]``
``<role>_socket``, ``<role>_socket_mode``, ``<role>_socket_user``,
``<role>_socket_group``), used by the front end, by ``serve --workers`` (which
binds them in the supervisor) and by a reload that moves one. The defaults are
Dovecot 2.3's: the client socket is 0666 (Postfix and Exim must reach it; it only
answers AUTH), the login, master and userdb sockets are 0600, owned by the
daemon's user. Two rules go beyond the file mode:

* **Certificates are believed only from trusted sockets.** ``valid-client-cert``
  and ``cert_username=`` in an AUTH say that the peer checked a TLS client
  certificate; EXTERNAL then logs in as the name in it, without a password. Any
  local user who can connect could claim that, so the parameters count only on a
  socket marked trusted (``login_socket_trusted``, on by default: Dovecot's login
  processes verify certificates; ``client_socket_trusted``, off). Never on TCP.
* **The userdb socket serves everyone's data only to trusted peers.** Its peer's
  uid and gid (``SO_PEERCRED``) decide, as in Dovecot's auth-master-connection.c:
  root, the socket's owner, a member of its group (primary gid), and the users and
  groups in ``userdb_trusted_users`` / ``userdb_trusted_groups`` have full access.
  Any other peer (only possible if the mode lets others connect) may look up only
  accounts whose ``uid`` is its own; PASS and LIST fail. Unlike Dovecot, a lookup
  of an unknown user fails too (Dovecot says NOTFOUND), so that such a peer cannot
  tell which accounts exist.
"""

from __future__ import annotations

import enum
import grp
import logging
import os
import pwd
import socket
import struct
from dataclasses import dataclass

from mailwarden.config import DovecotConfig
from mailwarden.errors import ConfigError

log = logging.getLogger("mailwarden.dovecot")

__all__ = [
    "PeerCredentials",
    "Role",
    "SocketSpec",
    "TrustedPeers",
    "group_id",
    "peer_credentials",
    "trusted",
    "trusted_peers",
    "unix_listeners",
    "user_id",
    "userdb_full_access",
]


class Role(enum.Enum):
    """What a listener serves (Dovecot picks it from the listener name's suffix)."""

    CLIENT = "client"
    LOGIN = "login"
    MASTER = "master"
    USERDB = "userdb"


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketSpec:
    """One configured UNIX listener: its role, config key, path (as written) and the
    mode and owner it is given (-1: the daemon's own uid or gid)."""

    role: Role
    key: str
    path: str
    mode: int
    owner: tuple[int, int] = (-1, -1)

    def effective_owner(self) -> tuple[int, int]:
        """The uid and gid the socket file has once bound."""
        uid, gid = self.owner
        return (os.geteuid() if uid == -1 else uid, os.getegid() if gid == -1 else gid)


def unix_listeners(config: DovecotConfig) -> tuple[SocketSpec, ...]:
    """Every UNIX listener ``config`` turns on (an empty path is off), owners resolved.

    Raises ConfigError naming the key of a user or group that does not exist.
    """
    specs: list[SocketSpec] = []
    for role in Role:
        path, mode, user, group = _socket_keys(config, role)
        if not path:
            continue
        prefix = f"dovecot.{role.value}_socket"
        specs.append(
            SocketSpec(
                role=role,
                key=prefix,
                path=path,
                mode=mode,
                owner=(
                    user_id(user, key=f"{prefix}_user"),
                    group_id(group, key=f"{prefix}_group"),
                ),
            )
        )
    return tuple(specs)


def _socket_keys(config: DovecotConfig, role: Role) -> tuple[str, int, str, str]:
    """``dovecot.<role>_socket``, ``_mode``, ``_user`` and ``_group``."""
    c = config
    match role:
        case Role.CLIENT:
            return (
                c.client_socket,
                c.client_socket_mode,
                c.client_socket_user,
                c.client_socket_group,
            )
        case Role.LOGIN:
            return (c.login_socket, c.login_socket_mode, c.login_socket_user, c.login_socket_group)
        case Role.MASTER:
            return (
                c.master_socket,
                c.master_socket_mode,
                c.master_socket_user,
                c.master_socket_group,
            )
        case Role.USERDB:
            return (
                c.userdb_socket,
                c.userdb_socket_mode,
                c.userdb_socket_user,
                c.userdb_socket_group,
            )


def trusted(config: DovecotConfig, role: Role, *, tcp: bool = False) -> bool:
    """Whether AUTH may vouch for a client certificate on this listener (module docstring)."""
    if tcp:
        return False
    match role:
        case Role.CLIENT:
            return config.client_socket_trusted
        case Role.LOGIN:
            return config.login_socket_trusted
        case Role.MASTER | Role.USERDB:
            return False


def user_id(name: str, *, key: str) -> int:
    """A user name or number as a uid; empty: -1 (leave as is)."""
    if not name:
        return -1
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise ConfigError(f"no such user: {name!r}", key=key) from None


def group_id(name: str, *, key: str) -> int:
    """A group name or number as a gid; empty: -1 (leave as is)."""
    if not name:
        return -1
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(f"no such group: {name!r}", key=key) from None


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """The process at the other end of a UNIX socket, as the kernel saw it connect."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket | None) -> PeerCredentials | None:
    """``SO_PEERCRED`` of a connected UNIX socket; None for TCP or on error."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


@dataclass(frozen=True, slots=True)
class TrustedPeers:
    """``userdb_trusted_users`` and ``userdb_trusted_groups``, resolved to numbers."""

    uids: frozenset[int] = frozenset()
    gids: frozenset[int] = frozenset()


def trusted_peers(config: DovecotConfig, *, strict: bool = True) -> TrustedPeers:
    """The trusted userdb peers of ``config``. ``strict`` (at start): ConfigError naming
    the key of a user or group that does not exist; otherwise (a reload) such a name
    is skipped with a warning, and the running daemon goes on."""
    uids: set[int] = set()
    gids: set[int] = set()
    for kind, names, lookup, into in (
        ("users", config.userdb_trusted_users, user_id, uids),
        ("groups", config.userdb_trusted_groups, group_id, gids),
    ):
        for i, name in enumerate(names):
            try:
                into.add(lookup(name, key=f"dovecot.userdb_trusted_{kind}[{i}]"))
            except ConfigError as exc:
                if strict:
                    raise
                log.warning("%s; ignored", exc)
    return TrustedPeers(uids=frozenset(uids), gids=frozenset(gids))


def userdb_full_access(
    peer: PeerCredentials | None, owner: tuple[int, int], trusted: TrustedPeers
) -> bool:
    """Whether a userdb-socket peer may see every account (module docstring).

    ``owner`` is the socket file's uid and gid. A peer whose credentials cannot be
    read gets no more than a stranger.
    """
    if peer is None:
        return False
    if peer.uid in (0, owner[0]) or peer.gid == owner[1]:
        return True
    return peer.uid in trusted.uids or peer.gid in trusted.gids
