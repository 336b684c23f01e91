"""What the gateway's changes feed: sshd's AuthorizedKeysCommand and a DNS zone fragment.

``mailwarden ssh-keys USER`` prints the account's keys, one authorized_keys line
each. sshd runs it as ``AuthorizedKeysCommand /usr/bin/mailwarden ssh-keys %u``
and reads standard output: no output means no keys, so an unknown user, a
disabled account or an account without keys all print nothing and exit 0 (a
non-zero exit would only add an error to sshd's log). A directory outage exits 75
with a message on stderr; sshd then falls back to its other key sources.

``mailwarden dns-zone`` prints every account's DNS entries as a zone fragment for
``$INCLUDE`` in the zone ``[mailgate] dns_zone``, with a serial (``YYYYMMDDnn``)
that changes exactly when the content changes: the hash of the content and the
last serial are kept in ``state_dir/dns-serial``.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from mailwarden.directories.base import Directory
from mailwarden.files import replaced_atomically
from mailwarden.model import AccountStatus


async def ssh_keys(directory: Directory, user: str) -> list[str]:
    """The authorized_keys lines of the active account ``user`` (uid or address)."""
    account = await directory.get(user) or await directory.find(user)
    if account is None or account.status is not AccountStatus.ACTIVE:
        return []
    return [key for key in account.ssh_keys if "\n" not in key and "\r" not in key]


async def zone_records(directory: Directory) -> list[str]:
    """Every DNS entry of the active accounts, ordered by uid."""
    lines: list[str] = []
    async for uid in directory.iterate():
        account = await directory.get(uid)
        if account is None or account.status is not AccountStatus.ACTIVE:
            continue
        lines.extend(f"{record}  ; {account.uid}" for record in account.dns_records)
    return lines


def next_serial(state_file: Path, content: str, *, now: float | None = None) -> int:
    """The zone serial for ``content``: unchanged content keeps its serial.

    A change gets today's ``YYYYMMDD00``, or the last serial + 1 if that is higher
    (several changes a day; serials never go down). Written atomically.
    """
    digest = hashlib.sha256(content.encode()).hexdigest()
    last_serial, last_digest = 0, ""
    try:
        saved = state_file.read_text().split()
        if len(saved) == 2:
            last_serial, last_digest = int(saved[0]), saved[1]
    except (OSError, ValueError):
        pass
    if digest == last_digest and last_serial:
        return last_serial
    today = int(time.strftime("%Y%m%d", time.gmtime(now))) * 100
    serial = max(today, last_serial + 1)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(state_file) as f:
        f.write(f"{serial} {digest}\n")
    return serial


def zone_fragment(zone: str, records: list[str], serial: int) -> str:
    head = [
        f"; mailwarden dns-zone: entries of the accounts under {zone or '(no zone)'}",
        f"; serial {serial}",
    ]
    if zone:
        head.append(f"$ORIGIN {zone.rstrip('.')}.")
    return "\n".join([*head, *records]) + "\n"
