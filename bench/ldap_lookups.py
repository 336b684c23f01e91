"""LDAP lookup benchmark: find() against a real slapd holding N accounts, pool 1/4/16.

Writes N qmail-ldap account entries (plus the base entries) as LDIF, loads them
offline with ``slapadd -q`` into a private slapd under a temp dir (mdb, indexes
on uid, mail and mailAlternateAddress), starts it on a free loopback port and
runs ``LDAPDirectory.find()`` of random accounts by uid, mail and alternate
address, from ``--tasks`` concurrent tasks, once per pool size. slapd is always
stopped at the end.

Bounded: at most 1,000,000 entries; each run stops after ``--lookups`` finds or
``--seconds`` seconds, whichever comes first.

Usage: ``python bench/ldap_lookups.py [--entries N] [--lookups N] [--seconds S] [--tasks N]``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.slapd import SERVICE_DN, SERVICE_PW, SUFFIX, Slapd, base_ldif

from mailwarden.config import LdapConfig
from mailwarden.directories.ldap import LDAPDirectory

MAX_ENTRIES = 1_000_000
FAKE_HASH = "{SSHA}" + "x" * 32


def entries_ldif(count: int) -> str:
    parts = [base_ldif()]
    for i in range(count):
        parts.append(
            f"dn: uid=user{i},ou=people,{SUFFIX}\nobjectClass: account\nobjectClass: qmailUser\n"
            f"objectClass: mailwardenAccount\nuid: user{i}\nmail: user{i}@example.org\n"
            f"mailAlternateAddress: alias{i}@example.net\nuserPassword: {FAKE_HASH}\n"
            f"mailMessageStore: /var/mail/user{i}\nqmailUID: {5000 + i}\n"
        )
    return "\n".join(parts)


async def lookups(
    directory: LDAPDirectory, entries: int, limit: int, seconds: float, tasks: int
) -> tuple[int, float]:
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(seed: int) -> None:
        nonlocal done
        rng = random.Random(seed)
        while done < limit and time.monotonic() < deadline:
            i = rng.randrange(entries)
            login = rng.choice((f"user{i}", f"user{i}@example.org", f"alias{i}@example.net"))
            account = await directory.find(login)
            assert account is not None and account.uid == f"user{i}"
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(tasks)))
    return done, time.monotonic() - started


async def run(server: Slapd, args: argparse.Namespace) -> None:
    for pool in (1, 4, 16):
        config = LdapConfig(
            servers=(server.url,),
            base_dn=f"ou=people,{SUFFIX}",
            bind_dn=SERVICE_DN,
            bind_password=SERVICE_PW,
            pool_size=pool,
        )
        directory = await LDAPDirectory.open(config)
        try:
            await lookups(directory, args.entries, 200, 2.0, args.tasks)  # warm-up
            count, elapsed = await lookups(
                directory, args.entries, args.lookups, args.seconds, args.tasks
            )
        finally:
            await directory.close()
        print(
            f"pool {pool:>2}, {args.tasks} tasks: {count / elapsed:8.0f} lookups/s "
            f"({count} in {elapsed:.1f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tasks", type=int, default=32)
    args = parser.parse_args()
    args.entries = max(1, min(args.entries, MAX_ENTRIES))
    with tempfile.TemporaryDirectory(prefix="mw-ldap-bench-") as tmp:
        started = time.monotonic()
        server = Slapd(Path(tmp), data_ldif=entries_ldif(args.entries))
        print(f"slapadd of {args.entries} entries: {time.monotonic() - started:.1f} s")
        server.start()
        try:
            asyncio.run(run(server, args))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
