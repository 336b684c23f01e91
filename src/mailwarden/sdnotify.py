"""systemd's readiness protocol (sd_notify), without libsystemd.

With ``Type=notify`` systemd starts the units ordered after ours (Postfix,
Dovecot) only once we say ``READY=1``; we say it after every listener accepts,
so that they find their sockets. The protocol (sd_notify(3)): one datagram of
``KEY=VALUE`` lines to the AF_UNIX socket named by ``$NOTIFY_SOCKET``, a path
or, with a leading ``@``, a name in the abstract namespace. Without the variable
(not started by systemd) nothing is sent.

Only the process systemd started sends (``NotifyAccess=main``): the single
``serve`` process, or the supervisor of ``serve --workers`` once every worker is
ready; workers never do.
"""

from __future__ import annotations

import logging
import os
import socket

__all__ = ["notify"]

log = logging.getLogger("mailwarden")


def notify(*lines: str) -> bool:
    """Send ``lines`` (``"READY=1"``, ``"STATUS=…"``) to systemd; False if not under
    systemd (no ``$NOTIFY_SOCKET``) or it could not be sent (logged)."""
    target = os.environ.get("NOTIFY_SOCKET", "")
    if not target:
        return False
    address = "\0" + target[1:] if target.startswith("@") else target
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", target, exc)
        return False
    return True
