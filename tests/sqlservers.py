"""Real PostgreSQL and MariaDB servers in a temp dir, for tests and bench/ scripts.

:class:`PostgresServer` runs Debian's PostgreSQL 15 (``initdb``, then ``postgres`` in
the foreground) and :class:`MariaDBServer` runs MariaDB (``mariadb-install-db``, then
``mariadbd``). Each listens on a private UNIX socket and a free TCP port on
127.0.0.1, in a process group of its own, without flushes to disk (the data is thrown
away), but with every commit handed to the OS, so a commit survives a SIGKILL of
the server (the fault tests kill it). PostgreSQL refuses to run as root, so it
runs as the ``postgres`` system user the Debian package creates; its files live in
a directory that user owns. Nothing outside the temp dir is written and the
machine's own database services are never touched.

PostgreSQL can also make a streaming replica of itself (:meth:`PostgresServer.make_replica`).

Both have the same small surface: :meth:`start`, :meth:`stop` (clean),
:meth:`kill` (SIGKILL of the group, like a crash; :meth:`start` brings the server
back on the same data dir and port), :meth:`create_database` (a fresh, empty
database per test) and :meth:`run_sql` (an SQL script as the administrator,
through the engine's own command-line client). Tests connect as :data:`USER` /
:data:`PASSWORD`, a superuser created at setup, over TCP.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

PG_BIN = Path("/usr/lib/postgresql/15/bin")
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
MARIADB_INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
MARIADB = shutil.which("mariadb") or "/usr/bin/mariadb"
START_TIMEOUT = 30.0
USER = "mwtest"
PASSWORD = "mwtest-secret"


def have_postgres() -> bool:
    return (PG_BIN / "postgres").exists() and _postgres_user() is not None


def have_mariadb() -> bool:
    return Path(MARIADBD).exists() and Path(MARIADB_INSTALL_DB).exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _postgres_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


def _kill_group(proc: subprocess.Popen[Any], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _wait_ready(proc: subprocess.Popen[Any], ready: Any, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited at start:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{_tail(log)}")
        time.sleep(0.05)


def _tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    except OSError:
        return "(no log)"


class _Server:
    """What both engines share: the process, stop/kill, and unique database names."""

    name = "sql"
    stop_signal = signal.SIGTERM

    def __init__(self, root: Path, port: int | None) -> None:
        self.root = root
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[Any] | None = None
        self._names = itertools.count(1)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def new_database_name(self) -> str:
        return f"t{os.getpid()}_{next(self._names)}"

    def stop(self) -> None:
        """A clean shutdown (``stop_signal``, then SIGKILL of the group after 15 s)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
        _kill_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _kill_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    def _spawn(self, args: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[Any]:
        with log.open("ab") as out:
            return subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **kwargs,
            )


class PostgresServer(_Server):
    """A private PostgreSQL 15 cluster: ``initdb`` once, ``postgres`` per :meth:`start`."""

    name = "postgresql"
    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM waits for clients to leave

    def __init__(self, root: Path, port: int | None = None) -> None:
        super().__init__(root, port)
        self.data = root / "pgdata"
        self.socket_dir = root / "pgsock"
        self.log = root / "postgres.log"
        user = _postgres_user()
        assert user is not None, "no postgres system user"
        self._uid, self._gid = user.pw_uid, user.pw_gid

    def _as_postgres(self) -> None:  # runs in the child before exec
        os.setgid(self._gid)
        os.setuid(self._uid)

    def _initdb(self) -> None:
        self.root.chmod(0o755)
        for d in (self.data, self.socket_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chown(d, self._uid, self._gid)
        self.socket_dir.chmod(0o755)
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        os.chown(pwfile, self._uid, self._gid)
        subprocess.run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
            preexec_fn=self._as_postgres,
        )
        pwfile.unlink()

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self._proc = self._spawn(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(self.data),
                "-k",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-h",
                self.host,
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=32MB",
            ],
            self.log,
            preexec_fn=self._as_postgres,
        )
        proc = self._proc
        _wait_ready(proc, self._accepting, "postgres", self.log)

    def _accepting(self) -> bool:
        done = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
            check=False,
            timeout=10,
        )
        return done.returncode == 0

    @property
    def unix_socket(self) -> str:
        return str(self.socket_dir / f".s.PGSQL.{self.port}")

    def dsn(self, database: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@{self.host}:{self.port}/{database}"

    def run_sql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with ``psql`` as the superuser; its output (errors raise)."""
        done = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                USER,
                "-d",
                database,
            ],
            input=sql,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def create_database(self) -> str:
        name = self.new_database_name()
        self.run_sql(f"CREATE DATABASE {name};")
        return name

    def make_replica(self, root: Path) -> PostgresServer:
        """A streaming replica of this running server, in ``root`` (a 0711 directory),
        on a port of its own: ``pg_basebackup -R`` (which writes ``standby.signal``
        and the connection to this server) into a new data dir. Not started yet."""
        replica = PostgresServer(root)
        root.chmod(0o755)
        for d in (replica.data, replica.socket_dir):
            d.mkdir(mode=0o700)
            os.chown(d, self._uid, self._gid)
        replica.socket_dir.chmod(0o755)
        subprocess.run(
            [
                str(PG_BIN / "pg_basebackup"),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                USER,
                "-D",
                str(replica.data),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",  # else it waits for a spread checkpoint (minutes)
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
            preexec_fn=self._as_postgres,
        )
        return replica


class MariaDBServer(_Server):
    """A private MariaDB: ``mariadb-install-db`` once, ``mariadbd`` per :meth:`start`."""

    name = "mariadb"

    def __init__(self, root: Path, port: int | None = None) -> None:
        super().__init__(root, port)
        self.data = root / "mydata"
        self.unix_socket = str(root / "mysqld.sock")
        self.log = root / "mariadb.log"

    def _install(self) -> None:
        self.data.mkdir(exist_ok=True)
        subprocess.run(
            [
                MARIADB_INSTALL_DB,
                "--no-defaults",
                f"--datadir={self.data}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )

    def start(self) -> None:
        fresh = not (self.data / "mysql").exists()
        if fresh:
            self._install()
        self._proc = self._spawn(
            [
                MARIADBD,
                "--no-defaults",
                f"--datadir={self.data}",
                f"--socket={self.unix_socket}",
                f"--port={self.port}",
                f"--bind-address={self.host}",
                f"--pid-file={self.root / 'mysqld.pid'}",
                f"--log-error={self.log}",
                "--user=root",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=2",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=8M",
                "--max-connections=200",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
            ],
            self.root / "mariadbd.out",
        )
        _wait_ready(self._proc, self._accepting, "mariadbd", self.log)
        if fresh:
            self.run_sql(
                f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';"
                f"GRANT ALL ON *.* TO '{USER}'@'%' WITH GRANT OPTION;"
            )

    def _accepting(self) -> bool:
        if not Path(self.unix_socket).exists():
            return False
        done = subprocess.run(
            [MARIADB, "--no-defaults", "-uroot", f"--socket={self.unix_socket}", "-e", "SELECT 1"],
            capture_output=True,
            check=False,
            timeout=10,
        )
        return done.returncode == 0

    def run_sql(self, sql: str, database: str = "") -> str:
        """Run ``sql`` with the ``mariadb`` client as root; its output (errors raise)."""
        args = [MARIADB, "--no-defaults", "-uroot", f"--socket={self.unix_socket}", "-N", "-B"]
        if database:
            args.append(database)
        done = subprocess.run(
            args, input=sql, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def create_database(self) -> str:
        name = self.new_database_name()
        self.run_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4;")
        return name


SqlServer = PostgresServer | MariaDBServer
