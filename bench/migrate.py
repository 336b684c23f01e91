"""Migration benchmark: ``mailwarden migrate`` between SQLite and a real slapd, N accounts.

Writes N generated accounts into a SQLite directory (in chunks, so generating a
million stays flat too), starts a private slapd under a temp dir (tests/slapd.py:
mdb, indexes on uid, mail and mailAlternateAddress, no fsync), and runs the real
command, ``mailwarden -c FROM migrate --to TO -q``, as a child process for each of

* SQLite -> SQLite (a fresh file),
* SQLite -> LDAP (an empty ``ou=people``),
* LDAP -> SQLite (the entries the previous run wrote, into another fresh file),

(slapd indexes uid, mail and mailAlternateAddress for equality and substrings, as
the tests' slapd does; ``--eq-indexes`` leaves the substring indexes out, which is
most of slapd's cost per add once the tree holds 100,000 entries),

printing the accounts per second and the child's peak RSS (``wait4``), which is what
"memory stays flat" is about: it should not grow with N. The password values are
one fixed SHA512-CRYPT-looking string: the copy moves them verbatim and never hashes.

Bounded: at most 1,000,000 accounts; each run is killed after ``--timeout`` seconds;
slapd is always stopped. Usage: ``python bench/migrate.py [--accounts N] [--batch N]``
(``--accounts 1000000`` for issue 18's target: SQLite -> LDAP under 10 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.peers.configs import toml
from tests.slapd import SERVICE_DN, SERVICE_PW, SUFFIX, Slapd, have_slapd

from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.model import Account

MAX_ACCOUNTS = 1_000_000
FAKE_HASH = "{SHA512-CRYPT}$6$rounds=5000$Zm9vYmFyYmF6$" + "x" * 86
CHUNK = 10_000


def generated(start: int, stop: int) -> Iterator[Account]:
    """Realistic accounts: some with alternates, service switches and passdb fields."""
    for n in range(start, stop):
        yield Account(
            uid=f"user{n:07d}@example.org",
            mail=f"user{n:07d}@example.org",
            alternate_addresses=(f"u{n}@example.net",) if n % 10 == 0 else (),
            password=FAKE_HASH,
            services=MappingProxyType({"pop3": False}) if n % 7 == 0 else MappingProxyType({}),
            home=f"/var/vmail/example.org/user{n:07d}",
            uid_number=5000,
            gid_number=5000,
            userdb_fields=MappingProxyType({"quota_rule": "*:storage=1G"}),
            passdb_fields=MappingProxyType({"nologin": "", "reason": "Moved"})
            if n % 50 == 0
            else MappingProxyType({}),
        )


async def fill(path: Path, count: int) -> None:
    directory = await SQLiteDirectory.open(path, create=True)
    try:
        for start in range(0, count, CHUNK):
            await directory.bulk_upsert(generated(start, min(start + CHUNK, count)), replace=False)
    finally:
        await directory.close()


async def create(path: Path) -> None:
    await (await SQLiteDirectory.open(path, create=True)).close()


def sqlite_toml(root: Path, name: str) -> Path:
    path = root / f"{name}.toml"
    path.write_text(toml({"directory": {"path": f"{name}.db"}}))
    return path


def ldap_toml(root: Path, server: Slapd) -> Path:
    path = root / "ldap.toml"
    ldap = {
        "servers": [server.url],
        "base_dn": f"ou=people,{SUFFIX}",
        "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PW,
        "timeout": 30.0,
    }
    path.write_text(toml({"directory": {"backend": "ldap"}, "ldap": ldap}))
    return path


def migrate(source: Path, target: Path, batch: int, timeout: float) -> tuple[float, float, str]:
    """Run the command; (seconds, the child's peak RSS in MiB, its report line)."""
    mailwarden = Path(sys.executable).with_name("mailwarden")
    args = [str(mailwarden), "-c", str(source), "migrate", "--to", str(target), "-q"]
    args += ["--batch", str(batch)]
    output = source.with_name("migrate.out")
    started = time.perf_counter()
    with output.open("w") as sink:
        child = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT)
    # wait4 gives this child's own rusage (its peak RSS), polled to honour the timeout.
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            child.kill()
            os.wait4(child.pid, 0)
            raise SystemExit(f"migrate {source.name} -> {target.name}: killed after {timeout} s")
        time.sleep(0.1)
    child.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    text = output.read_text().strip()
    if child.returncode != 0:
        raise SystemExit(f"migrate failed ({child.returncode}): {text}")
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, usage.ru_maxrss / 1024, f"{text} [CPU of the command: {cpu:.1f} s]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=1800.0, help="cap per run (s)")
    parser.add_argument("--no-ldap", action="store_true", help="SQLite -> SQLite only")
    parser.add_argument(
        "--eq-indexes",
        action="store_true",
        help="slapd with equality indexes only (no substring indexes on uid, mail, "
        "mailAlternateAddress, which make every add slower as the tree grows)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.accounts <= MAX_ACCOUNTS:
        parser.error(f"--accounts must be between 1 and {MAX_ACCOUNTS}")
    with tempfile.TemporaryDirectory(prefix="mailwarden-bench-migrate-") as tmp:
        root = Path(tmp)
        source = sqlite_toml(root, "source")
        started = time.perf_counter()
        asyncio.run(fill(root / "source.db", args.accounts))
        print(f"generated {args.accounts} accounts in {time.perf_counter() - started:.1f} s")
        runs = [("SQLite -> SQLite", source, sqlite_toml(root, "copy"))]
        server: Slapd | None = None
        if not args.no_ldap:
            if not have_slapd():
                raise SystemExit("slapd is not installed (or use --no-ldap)")
            server = Slapd(root / "slapd", substring_indexes=not args.eq_indexes)
            server.start()
            ldap = ldap_toml(root, server)
            runs += [
                ("SQLite -> LDAP", source, ldap),
                ("LDAP -> SQLite", ldap, sqlite_toml(root, "back")),
            ]
        try:
            for name, src, dst in runs:
                if dst.name != "ldap.toml":
                    asyncio.run(create(root / dst.with_suffix(".db").name))
                elapsed, peak, line = migrate(src, dst, args.batch, args.timeout)
                print(
                    f"{name}: {args.accounts / elapsed:,.0f} accounts/s "
                    f"({elapsed:.1f} s for the whole command), peak RSS {peak:.0f} MiB; {line}"
                )
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
