"""The example production config (etc/mailwarden.toml) with real Postfix and Dovecot.

The file is used as shipped, only its paths moved into a private temp dir: every
socket keeps the owner, group and mode it gives. ``mailwarden serve`` runs with
it (as root, as the systemd unit runs it); then

* a private Postfix's smtpd, running as ``postfix``, authenticates on the client
  socket (``smtpd_sasl_type = dovecot``);
* a private Dovecot's imap-login (and pop3-login), running as ``dovenull``, authenticates on the
  login socket, and its imap (pop3) process, root until it becomes the user, fetches the
  login with REQUEST on the master socket: the setup docs/dovecot-protocol.md gives
  ("Using it from Dovecot's login processes");
* doveadm, as root, looks the user up on the userdb socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import os
import poplib
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden import config
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.model import Account
from tests.peers.configs import dovecot_conf
from tests.peers.conftest import (
    connectable,
    free_port,
    private_dir,
    running_dovecot,
    running_serve,
    wait_until,
)
from tests.peers.test_postfix import (
    MAIN_CF,
    MASTER_CF_SERVICES,
    POSTFIX,
    _log,
    _stop_postfix,
    postfix,
    smtp_auth,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "mailwarden.toml"
NOBODY = 65534

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(os.geteuid() != 0, reason="the sockets' owners need root"),
    pytest.mark.skipif(
        not (os.access(POSTFIX, os.X_OK) and os.path.exists("/usr/lib/dovecot/imap-login")),
        reason="postfix and dovecot-imapd are needed",
    ),
]


def dovecot_config(
    root: Path, *, port: int, pop3_port: int, login_socket: str, master_socket: str
) -> str:
    def login(protocol: str, listen_port: int) -> dict[str, object]:
        return {
            "executable": f"{protocol}-login {login_socket}",
            "chroot": "",
            f"inet_listener {protocol}": {"port": listen_port},
            f"inet_listener {protocol}s": {"port": 0},
        }

    return dovecot_conf(
        root / "dovecot",
        protocols="imap pop3",
        settings={"listen": "127.0.0.1", "disable_plaintext_auth": "no"},
        services={
            "imap-login": login("imap", port),
            "imap": {"executable": f"imap -a {master_socket}"},
            "pop3-login": login("pop3", pop3_port),
            "pop3": {"executable": f"pop3 -a {master_socket}"},
        },
    )


def moved(root: Path) -> Path:
    """The example config with its paths under ``root``; nothing else changed."""
    text = EXAMPLE.read_text()
    for system, private in (
        ("/var/spool/postfix/private/", f"{root}/spool/private/"),
        ("/run/mailwarden/", f"{root}/run/"),
        ("/var/lib/mailwarden/", f"{root}/data/"),
    ):
        text = text.replace(system, private)
    path = root / "mailwarden.toml"
    path.write_text(text)
    cfg = config.load(path)
    for value in (
        cfg.directory.path,
        cfg.server.pid_file,
        cfg.server.control_socket,
        cfg.dovecot.client_socket,
        cfg.dovecot.login_socket,
        cfg.dovecot.master_socket,
        cfg.dovecot.userdb_socket,
    ):
        assert value.startswith(f"{root}/"), value
    return path


async def _accounts(db: str, home: Path) -> None:
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    directory = await SQLiteDirectory.open(Path(db), create=True)
    try:
        await directory.create(
            Account(
                uid="alice",
                password="{PLAIN}secret",
                home=str(home),
                mail_location="maildir:~/Maildir",
                uid_number=NOBODY,
                gid_number=NOBODY,
            )
        )
    finally:
        await directory.close()


class Site:
    """mailwarden with the example config, and the Postfix and Dovecot around it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_path = moved(root)
        self.cfg = config.load(self.config_path)
        home = root / "home" / "alice"
        for sub in ("cur", "new", "tmp"):
            (home / "Maildir" / sub).mkdir(parents=True)
        for path in [root / "home", home, *home.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)
        asyncio.run(_accounts(self.cfg.directory.path, home))
        self.smtp_port = free_port()
        self.imap_port = free_port()
        self.pop3_port = free_port()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with private_dir("example") as root:
        s = Site(root)
        d = s.cfg.dovecot
        ready = (d.client_socket, d.login_socket)
        with (
            running_serve(s.config_path, ready=ready),
            running_postfix(root, port=s.smtp_port, client_socket=d.client_socket),
            running_imap(
                root,
                port=s.imap_port,
                pop3_port=s.pop3_port,
                login_socket=d.login_socket,
                master_socket=d.master_socket,
            ),
        ):
            yield s


def _dovecot_log(site: Site) -> str:
    try:
        return (site.root / "dovecot" / "dovecot.log").read_text()
    except OSError:
        return ""


@contextlib.contextmanager
def running_postfix(base: Path, *, port: int, client_socket: str) -> Iterator[None]:
    """A private Postfix under ``base/postfix`` whose smtpd (no chroot) on 127.0.0.1:``port``
    uses ``client_socket`` (tests/peers/test_oauth2.py uses it too)."""
    root = base / "postfix"
    etc = root / "etc"
    for sub in ("etc", "queue", "data"):
        (root / sub).mkdir(parents=True)
    shutil.chown(root / "data", user="postfix")
    (etc / "main.cf").write_text(MAIN_CF.format(root=root))
    (etc / "master.cf").write_text(
        f"127.0.0.1:{port} inet n - n - - smtpd"
        f" -o smtpd_sasl_path=unix:{client_socket}\n" + MASTER_CF_SERVICES
    )
    started = postfix(etc, "start")
    try:
        assert started.returncode == 0, started.stderr + _log(root)
        wait_until(lambda: connectable(("127.0.0.1", port)), "postfix smtpd")
        yield
    finally:
        _stop_postfix(root, etc)


@contextlib.contextmanager
def running_imap(
    base: Path, *, port: int, pop3_port: int, login_socket: str, master_socket: str
) -> Iterator[None]:
    """A private Dovecot under ``base/dovecot`` serving IMAP (and POP3) through
    mailwarden's login and master sockets (tests/peers/test_oauth2.py uses it too)."""
    conf = base / "dovecot" / "dovecot.conf"
    conf.parent.mkdir()
    conf.write_text(
        dovecot_config(
            root=base,
            port=port,
            pop3_port=pop3_port,
            login_socket=login_socket,
            master_socket=master_socket,
        )
    )
    with running_dovecot(conf, base / "dovecot", ready=("127.0.0.1", port)):
        yield


def test_the_example_sockets_have_the_owners_their_peers_need(site: Site) -> None:
    d = site.cfg.dovecot
    owners = {
        path: (os.stat(path).st_uid, oct(os.stat(path).st_mode & 0o777))
        for path in (d.client_socket, d.login_socket, d.master_socket, d.userdb_socket)
    }
    assert owners[d.client_socket] == (pwd.getpwnam("postfix").pw_uid, "0o660")
    assert owners[d.login_socket] == (pwd.getpwnam("dovenull").pw_uid, "0o600")
    assert owners[d.master_socket] == (0, "0o600")
    assert owners[d.userdb_socket] == (0, "0o666")


def test_postfix_authenticates_on_the_example_client_socket(site: Site) -> None:
    assert smtp_auth(site.smtp_port, "PLAIN", "alice", "secret") == 235
    assert smtp_auth(site.smtp_port, "LOGIN", "alice", "wrong") == 535


def test_dovecots_login_and_mail_processes_log_in_through_the_example_sockets(
    site: Site,
) -> None:
    imap = imaplib.IMAP4("127.0.0.1", site.imap_port, timeout=30)
    try:
        assert imap.login("alice", "secret")[0] == "OK", _dovecot_log(site)
        # The mail process got the userdb from REQUEST: uid, home and mail location.
        assert imap.select("INBOX")[0] == "OK", _dovecot_log(site)
    finally:
        imap.logout()
    imap = imaplib.IMAP4("127.0.0.1", site.imap_port, timeout=30)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login("alice", "wrong")
    finally:
        imap.shutdown()
    assert "imap(alice)" in _dovecot_log(site)


def test_pop3_logs_in_through_the_same_sockets(site: Site) -> None:
    pop = poplib.POP3("127.0.0.1", site.pop3_port, timeout=30)
    try:
        pop.user("alice")
        assert pop.pass_("secret").startswith(b"+OK"), _dovecot_log(site)
        assert pop.stat() == (0, 0)
    finally:
        pop.quit()


def test_doveadm_looks_users_up_on_the_example_userdb_socket(site: Site) -> None:
    minimal = site.root / "min.conf"
    minimal.write_text("ssl = no\n")
    userdb = site.cfg.dovecot.userdb_socket
    done = subprocess.run(
        ["doveadm", "-c", str(minimal), "user", "-u", "-a", userdb, "alice"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"uid       : {NOBODY}" in done.stdout
