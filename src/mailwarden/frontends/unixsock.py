"""Setting up and removing the UNIX sockets every front end listens on.

One place for the rules all listeners share: the parent directory is created,
a stale socket left by a crashed process is removed but a live one (another
server still answering) or a non-socket file is never touched, permissions and
owner are set before the socket listens, and on shutdown only the file this
process bound is removed. Every problem is a ConfigError naming the config key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from pathlib import Path

from mailwarden.errors import ConfigError

log = logging.getLogger("mailwarden")

# How long to wait for an existing socket to answer before calling it stale.
PROBE_TIMEOUT = 1.0


def bind_unix_socket(
    path: Path, *, mode: int, key: str, owner: tuple[int, int] = (-1, -1)
) -> tuple[socket.socket, int]:
    """A bound (not yet listening) socket at ``path`` and the inode of its file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path.parent}: {exc.strerror}", key=key) from exc
    claim_path(path, key=key)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        # Mode and owner are set while the socket does not listen yet: no peer
        # can connect through the wrong permissions in between.
        os.chmod(path, mode)
        if owner != (-1, -1):
            os.chown(path, *owner)
        inode = path.stat().st_ino
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {path}: {exc.strerror}", key=key) from exc
    return sock, inode


def claim_path(path: Path, *, key: str) -> None:
    """Make ``path`` free for a new socket, removing a stale one (see the module docstring)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot use {path}: {exc.strerror}", key=key) from exc
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"{path} exists and is not a socket; not removing it", key=key)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink()
        log.info("removed stale socket %s", path)
        return
    except OSError as exc:
        raise ConfigError(f"cannot check existing socket {path}: {exc}", key=key) from exc
    finally:
        probe.close()
    raise ConfigError(f"{path} is in use by a running server", key=key)


def remove_own_socket(path: Path, inode: int | None) -> None:
    """Unlink ``path`` only if it is still the file we bound (inode ``inode``)."""
    # If another server took the path over since, leave it.
    with contextlib.suppress(OSError):
        if path.lstat().st_ino == inode:
            path.unlink()
