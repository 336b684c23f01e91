"""What the classic-interface tests share: a config file and a SQLite directory with accounts."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden.auth import tokens
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.model import Account, AccountStatus, AppPassword
from tests.peers.conftest import stop_process

MAILWARDEN = [sys.executable, "-m", "mailwarden"]


#: alice's app passwords (docs/credentials.md): one for every mail service, one that
#: has expired, one for SMTP only; and one that is an app password of nobody's.
APP_PASSWORD = "mwa_" + "p" * 24
EXPIRED_APP_PASSWORD = "mwa_" + "x" * 24
SMTP_APP_PASSWORD = "mwa_" + "s" * 24
UNKNOWN_APP_PASSWORD = "mwa_" + "u" * 24


def _app(app_id: str, value: str, **fields: object) -> AppPassword:
    digest = tokens.digest(tokens.TokenKind.APP_PASSWORD, value)
    return AppPassword(id=app_id, name=app_id, digest=digest, created=1, **fields)  # type: ignore[arg-type]


def classic_accounts() -> tuple[Account, ...]:
    """alice (all services, app passwords), carol (POP3 off), dave (disabled), admin (a
    master user)."""
    return (
        Account(
            uid="alice",
            password="{PLAIN}secret",
            home="/var/mail/alice",
            mail_location="maildir:~/Maildir",
            uid_number=5000,
            gid_number=5000,
            app_passwords=(
                _app("every", APP_PASSWORD),
                _app("old", EXPIRED_APP_PASSWORD, expires=2),
                _app("smtp", SMTP_APP_PASSWORD, services=("smtp",)),
            ),
        ),
        Account(
            uid="carol",
            password="{PLAIN}carolpw",
            services={"pop3": False},
            # checkpassword as root runs nobody's program without a uid (first_valid_uid)
            uid_number=5002,
            gid_number=5002,
        ),
        Account(uid="dave", password="{PLAIN}davepw", status=AccountStatus.DISABLED),
        Account(uid="admin", password="{PLAIN}masterpw", master=True),
    )


def write_config(path: Path, extra: str = "") -> Path:
    path.write_text(
        '[directory]\npath = "data/mw.db"\n[passwords]\nscheme = "SHA512-CRYPT"\n'
        'rehash = "never"\n[auth]\nmaster_user_separator = "*"\n' + extra
    )
    return path


async def fill(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    directory = await SQLiteDirectory.open(db, create=True)
    try:
        for account in classic_accounts():
            await directory.create(account)
    finally:
        await directory.close()


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A config whose database does not exist yet."""
    return write_config(tmp_path / "mw.toml")


@pytest.fixture
def ready(cfg: Path) -> Path:
    """The config, with its database holding :func:`classic_accounts`."""
    asyncio.run(fill(cfg.parent / "data" / "mw.db"))
    return cfg


@contextlib.contextmanager
def serving_saslauthd(root: Path) -> Iterator[Path]:
    """``mailwarden serve`` in ``root`` with only the saslauthd socket; yields its path.

    The daemon runs in a session of its own and its process group is killed if
    SIGTERM does not end it.
    """
    cfg = write_config(
        root / "mw.toml",
        '[dovecot]\nenabled = false\n[server]\npid_file = "mw.pid"\n'
        'control_socket = "run/control"\n'
        '[saslauthd]\nenabled = true\nsocket = "run/mux"\nfailure_delay = 0\n',
    )
    asyncio.run(fill(root / "data" / "mw.db"))
    proc = subprocess.Popen(
        [*MAILWARDEN, "-c", str(cfg), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (root / "mw.pid").exists():
            assert proc.poll() is None, "mailwarden serve exited"
            assert time.monotonic() < deadline, "mailwarden serve did not start"
            time.sleep(0.05)
        yield root / "run" / "mux"
    finally:
        stop_process(proc)


DAEMON_SOCKETS = (
    '[dovecot]\nclient_socket = "run/auth-client"\nuserdb_socket = "run/auth-userdb"\n'
    'master_socket = "run/auth-master"\nfailure_delay = 0\n[server]\npid_file = "mw.pid"\n'
    'control_socket = "run/control"\n'
)
"""Config lines for a daemon with private Dovecot sockets under its folder."""


def daemon_config(via: str, *, sockets: str = DAEMON_SOCKETS) -> str:
    """A config file's text for ``mailwarden checkpassword`` with ``via`` beside a
    daemon on ``sockets`` (:data:`DAEMON_SOCKETS`), refusals not delayed."""
    return sockets + f'[checkpassword]\nvia = "{via}"\nfailure_delay = 0\n'


@contextlib.contextmanager
def serving(cfg: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``mailwarden serve`` with ``cfg`` (which sets ``server.pid_file = "mw.pid"``),
    running until the block ends; in a session of its own, killed if SIGTERM fails."""
    pid_file = cfg.parent / "mw.pid"
    proc = subprocess.Popen(
        [*MAILWARDEN, "-c", str(cfg), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists():
            assert proc.poll() is None, "mailwarden serve exited"
            assert time.monotonic() < deadline, "mailwarden serve did not start"
            time.sleep(0.05)
        yield proc
    finally:
        stop_process(proc)
