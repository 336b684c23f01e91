"""Accounts for bench/compare.py, and the stores both servers read them from.

Accounts are ``user<i>`` with password ``pw<i>``, hashed with a scenario's scheme.
They are made once into a Dovecot passwd-file (hashed in parallel) and cached under
``.cache/bench/``; every store is loaded from that file, and cached beside it too.

A *directory factory* (:data:`DIRECTORIES`) takes that passwd-file and a work
directory, puts the accounts into one store and yields a :class:`Backend`: the
passdb/userdb block Dovecot reads them with and the directory sections of
mailwarden's config that read the same store. The store's own server (slapd, ...)
runs for as long as the factory's ``with`` block and is stopped at its end.

* ``sqlite`` — mailwarden's SQLite directory (``mailwarden import passwd-file``)
  against Dovecot's passwd-file passdb reading the passwd-file itself;
* ``ldap`` — one slapd holding the accounts (bulk-loaded with ``slapadd -q``,
  the database cached), read by mailwarden's LDAP directory and by Dovecot's
  ``ldap`` passdb with the same filter.

* ``sql`` — one private PostgreSQL holding the accounts in a Dovecot-style
  ``users`` table (loaded with ``COPY``), read by mailwarden's SQL directory in its
  Dovecot mode and by Dovecot's ``sql`` passdb with the same ``password_query``.
  The query returns the userdb fields too (``userdb_*`` columns: Dovecot's
  ``userdb prefetch``), so each server runs one query per login; the
  ``user_query`` serves userdb lookups on both. mailwarden's ``sql.cache_ttl`` is
  one hour, as Dovecot's ``auth_cache_ttl`` where its cache is on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import children

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
PYTHON = sys.executable

if str(ROOT) not in sys.path:  # tests.slapd and tests.redisserver: the test suite's peers
    sys.path.insert(0, str(ROOT))

from tests import redisserver as redisserver  # noqa: E402, PLC0414 - after its path; re-exported
from tests import slapd as slapd  # noqa: E402, PLC0414
from tests import sqlservers as sqlservers  # noqa: E402, PLC0414


def note(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- accounts


def _hash_batch(args: tuple[str, int | None, int, int]) -> list[str]:
    from mailwarden import schemes  # noqa: PLC0415 - in the worker processes

    scheme, rounds, start, stop = args
    if scheme == "PLAIN":
        return [f"{{PLAIN}}pw{i}" for i in range(start, stop)]
    return [schemes.generate(f"pw{i}".encode(), scheme, rounds=rounds) for i in range(start, stop)]


#: Seconds allowed per account when generating, by scheme (default 0.01).
HASH_ALLOWANCE = {"ARGON2ID": 0.5, "ARGON2I": 0.5, "BLF-CRYPT": 0.05}


def passwd_file(scheme: str, count: int, rounds: int | None = None) -> Path:
    """``user<i>:<hash of pw<i>>::::::`` lines, made once and cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    tag = f"-r{rounds}" if rounds else ""
    path = CACHE / f"passwd-{scheme.lower()}{tag}-{count}"
    if path.exists():
        return path
    started = time.monotonic()
    tmp = path.with_suffix(".tmp")
    if scheme == "PLAIN":  # nothing to compute: no pool
        with tmp.open("w") as out:
            for i in range(count):
                out.write(f"user{i}:{{PLAIN}}pw{i}::::::\n")
    else:
        step = max(1, min(2_000, count // 8))
        batches = [(scheme, rounds, i, min(count, i + step)) for i in range(0, count, step)]
        hashes = children.map_bounded(
            _hash_batch,
            batches,
            processes=os.cpu_count() or 2,
            # Generous for a loaded machine: ~2 ms per SHA512-CRYPT on one slow core,
            # ~100 ms per ARGON2ID (64 MiB each).
            timeout=60.0 + count * HASH_ALLOWANCE.get(scheme, 0.01),
            what=f"hashing {count} {scheme} accounts",
        )
        with tmp.open("w") as out:
            for n, h in enumerate(h for batch in hashes for h in batch):
                out.write(f"user{n}:{h}::::::\n")
    tmp.rename(path)
    note(f"generated {count} {scheme} accounts in {time.monotonic() - started:.1f} s")
    return path


def mailwarden_db(passwd: Path, work: Path) -> Path:
    """The passwd-file imported into a SQLite directory (cached beside it)."""
    db = passwd.with_suffix(".db")
    if not db.exists():
        cfg = work / "import.toml"
        cfg.write_text(f'[directory]\npath = "{db}.tmp"\n')
        with contextlib.suppress(FileNotFoundError):
            Path(f"{db}.tmp").unlink()
        for command in (["init"], ["import", "passwd-file", str(passwd), "-q"]):
            subprocess.run(
                [PYTHON, "-m", "mailwarden", "-c", str(cfg), *command],
                check=True,
                stdout=subprocess.DEVNULL,
                timeout=3600,
            )
        Path(f"{db}.tmp").rename(db)
    return db


# --------------------------------------------------------------------------- backends


@dataclass(frozen=True)
class Backend:
    """One store holding the accounts, as each server's config reads it."""

    name: str  # in the table: "SQLite", "LDAP", ...
    dovecot_dbs: str  # Dovecot's passdb { } and userdb { } blocks
    mailwarden_directory: str  # mailwarden's [directory] (and its backend's) sections
    reference: str = "Dovecot 2.3"  # what the reference server is reading
    store_pid: int | None = None  # the store's own server (slapd, ...), shared by both


DirectoryFactory = Callable[[Path, Path], AbstractContextManager[Backend]]
"""``factory(passwd_file, work_dir)``: the accounts in a store, for a ``with`` block."""


def passwd_file_dbs(passwd: Path) -> str:
    return (
        f"passdb {{\n  driver = passwd-file\n  args = {passwd}\n}}\n"
        f"userdb {{\n  driver = passwd-file\n  args = {passwd}\n}}\n"
    )


@contextlib.contextmanager
def sqlite_directory(passwd: Path, work: Path) -> Iterator[Backend]:
    passwd.chmod(0o644)
    db = mailwarden_db(passwd, work)
    yield Backend(
        "SQLite",
        passwd_file_dbs(passwd),
        f'[directory]\npath = "{db}"\n',
        reference="Dovecot 2.3 (passwd-file)",
    )


LDAP_FILTER = "(|(objectClass=qmailUser)(objectClass=mailwardenAccount))"
"""mailwarden's default ``ldap.filter``; Dovecot's pass_filter ANDs the same."""


def accounts_ldif(passwd: Path, out: Path) -> None:
    """The passwd-file's accounts as LDIF entries under ou=people (streamed)."""
    with passwd.open() as src, out.open("w") as dst:
        for line in src:
            uid, stored = line.split(":", 2)[:2]
            dst.write(
                f"dn: uid={uid},ou=people,{slapd.SUFFIX}\nobjectClass: account\n"
                f"objectClass: mailwardenAccount\nuid: {uid}\nuserPassword: {stored}\n\n"
            )


def sparse_copy(src: Path, dst: Path) -> None:
    """Copy an mdb file as sparse as it is (it is sized to slapd's olcDbMaxSize)."""
    subprocess.run(
        ["cp", "--sparse=always", "--reflink=auto", str(src), str(dst)], check=True, timeout=600
    )


def _ldap_cache(passwd: Path, work: Path) -> Path:
    """The mdb database file of a slapd holding ``passwd``'s accounts, made once
    (slapadd -q of the bulk LDIF) and cached beside the passwd-file."""
    cached = passwd.with_suffix(".ldap.mdb")
    if cached.exists():
        return cached
    started = time.monotonic()
    build = work / f"slapd-build-{passwd.name}"
    slapd.Slapd(build)  # config, suffix, service account, ou=people (not started)
    ldif = build / "accounts.ldif"
    accounts_ldif(passwd, ldif)
    tool = shutil.which("slapadd") or "/usr/sbin/slapadd"
    done = subprocess.run(
        [tool, "-F", str(build / "slapd.d"), "-b", slapd.SUFFIX, "-q", "-l", str(ldif)],
        check=False,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"slapadd of {passwd.name} failed: {done.stderr[-500:]}")
    sparse_copy(build / "db" / "data.mdb", cached.with_suffix(".tmp"))
    cached.with_suffix(".tmp").rename(cached)
    shutil.rmtree(build, ignore_errors=True)
    note(f"loaded {passwd.name} into LDAP in {time.monotonic() - started:.1f} s")
    return cached


def ldap_directory_toml(url: str) -> str:
    """mailwarden's directory sections for the accounts under ou=people on ``url``."""
    return (
        '[directory]\nbackend = "ldap"\n\n[ldap]\n'
        f'servers = ["{url}"]\nbase_dn = "ou=people,{slapd.SUFFIX}"\n'
        f'bind_dn = "{slapd.SERVICE_DN}"\nbind_password = "{slapd.SERVICE_PW}"\n'
    )


DOVECOT_LDAP = """\
uris = {url}
dn = {dn}
dnpass = {password}
base = ou=people,{suffix}
scope = subtree
pass_filter = (&{filter}(|(uid=%u)(mail=%u)(mailAlternateAddress=%u)))
pass_attrs = uid=user,userPassword=password
default_pass_scheme = CRYPT
"""


@contextlib.contextmanager
def ldap_directory(passwd: Path, work: Path) -> Iterator[Backend]:
    """One slapd with the accounts, for both servers (stopped at the end)."""
    cached = _ldap_cache(passwd, work)
    root = work / f"slapd-{passwd.name}"
    shutil.rmtree(root, ignore_errors=True)
    server = slapd.Slapd(root)
    for name in ("data.mdb", "lock.mdb"):
        with contextlib.suppress(FileNotFoundError):
            (root / "db" / name).unlink()
    sparse_copy(cached, root / "db" / "data.mdb")
    server.start(timeout=60)
    try:
        conf = root / "dovecot-ldap.conf.ext"
        conf.write_text(
            DOVECOT_LDAP.format(
                url=server.url,
                dn=slapd.SERVICE_DN,
                password=slapd.SERVICE_PW,
                suffix=slapd.SUFFIX,
                filter=LDAP_FILTER,
            )
        )
        conf.chmod(0o644)
        root.chmod(0o755)
        yield Backend(
            "LDAP",
            f"passdb {{\n  driver = ldap\n  args = {conf}\n}}\n"
            "userdb {\n  driver = static\n  args = uid=5000 gid=5000 home=/nonexistent/%u\n}\n",
            ldap_directory_toml(server.url),
            reference="Dovecot 2.3 (ldap passdb)",
            store_pid=server.proc.pid if server.proc is not None else None,
        )
    finally:
        server.stop()


SQL_PASSWORD_QUERY = (
    "SELECT username AS user, password, 5000 AS userdb_uid, 5000 AS userdb_gid, "
    "'/nonexistent/' || username AS userdb_home FROM users WHERE username = '%u'"
)
SQL_USER_QUERY = (
    "SELECT 5000 AS uid, 5000 AS gid, '/nonexistent/' || username AS home "
    "FROM users WHERE username = '%u'"
)
SQL_ITERATE_QUERY = "SELECT username AS user FROM users"


def accounts_tsv(passwd: Path, out: Path) -> None:
    """The passwd-file's user and password columns as COPY text (streamed)."""
    with passwd.open() as lines, out.open("w") as tsv:
        for line in lines:
            user, password, _rest = line.split(":", 2)
            tsv.write(f"{user}\t{password}\n")


@contextlib.contextmanager
def sql_directory(passwd: Path, work: Path) -> Iterator[Backend]:
    """One PostgreSQL with the accounts, for both servers (stopped at the end)."""
    root = work / f"pg-{passwd.name}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    server = sqlservers.PostgresServer(root)
    server.start()
    try:
        started = time.monotonic()
        database = server.create_database()
        tsv = root / "accounts.tsv"
        accounts_tsv(passwd, tsv)
        tsv.chmod(0o644)
        server.run_sql(
            "CREATE TABLE users (username text PRIMARY KEY, password text NOT NULL);\n"
            f"\\copy users FROM '{tsv}'\nANALYZE users;\n",
            database,
        )
        tsv.unlink()
        note(f"loaded {passwd.name} into PostgreSQL in {time.monotonic() - started:.1f} s")
        conf = root / "dovecot-sql.conf.ext"
        conf.write_text(
            "driver = pgsql\n"
            f"connect = host=127.0.0.1 port={server.port} dbname={database} "
            f"user={sqlservers.USER} password={sqlservers.PASSWORD}\n"
            f"password_query = {SQL_PASSWORD_QUERY}\n"
            f"user_query = {SQL_USER_QUERY}\n"
            f"iterate_query = {SQL_ITERATE_QUERY}\n"
            "default_pass_scheme = CRYPT\n"
        )
        conf.chmod(0o644)
        root.chmod(0o755)
        toml = (
            '[directory]\nbackend = "sql"\n\n[sql]\nmode = "dovecot"\n'
            f'hosts = ["127.0.0.1"]\nport = {server.port}\ndatabase = "{database}"\n'
            f'user = "{sqlservers.USER}"\npassword = "{sqlservers.PASSWORD}"\n'
            f'password_query = "{SQL_PASSWORD_QUERY}"\nuser_query = "{SQL_USER_QUERY}"\n'
            f'iterate_query = "{SQL_ITERATE_QUERY}"\ndefault_pass_scheme = "CRYPT"\n'
            # As Dovecot's auth_cache_ttl in the scenarios where its cache is on (a
            # cold login misses both caches alike).
            "cache_ttl = 3600.0\n"
        )
        yield Backend(
            "PostgreSQL",
            f"passdb {{\n  driver = sql\n  args = {conf}\n}}\n"
            "userdb {\n  driver = prefetch\n}\n"
            f"userdb {{\n  driver = sql\n  args = {conf}\n}}\n",
            toml,
            reference="Dovecot 2.3 (sql passdb)",
            store_pid=server._proc.pid if server._proc is not None else None,
        )
    finally:
        server.stop()


@dataclass(frozen=True)
class Directory:
    title: str  # in scenario titles: "SQLite directory", "LDAP", ...
    open: DirectoryFactory


DIRECTORIES: dict[str, Directory] = {
    "sqlite": Directory("SQLite directory", sqlite_directory),
    "ldap": Directory("LDAP", ldap_directory),
    "sql": Directory("PostgreSQL (Dovecot-style queries)", sql_directory),
}
"""Every store bench/compare.py measures; each gets the scale scenarios (7)."""
