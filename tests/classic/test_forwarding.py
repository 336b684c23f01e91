"""Cluster session forwarding through ``mailwarden checkpassword``, against real servers.

Two private Dovecot instances (POP3 and IMAP, passwd-file) listen on 127.0.0.2 and
127.0.0.3, on the same ports, each with a mailbox whose only message names its
server. mailwarden's directory says alice lives on 127.0.0.3 and bob on 127.0.0.2;
``cluster.me`` is neither. The test plays qmail-popup: it starts the command with
the login on fd 3 and its stdin/stdout as the client connection (tcpserver style),
then talks POP3/IMAP through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.model import Account, AccountStatus
from tests.classic.conftest import daemon_config, serving, write_config
from tests.peers.configs import dovecot_conf, passwd_file
from tests.peers.conftest import connectable, free_port, private_dir, stop_process, wait_until

DOVECOT = "/usr/sbin/dovecot"
NOBODY = 65534
HOSTS = ("127.0.0.2", "127.0.0.3")

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        not (os.path.exists(DOVECOT) and os.path.exists("/usr/lib/dovecot/pop3")),
        reason="dovecot-core, dovecot-pop3d and dovecot-imapd are needed",
    ),
]


def dovecot_config(root: Path, *, addr: str, pop3: int, imap: int) -> str:
    return dovecot_conf(
        root,
        protocols="pop3 imap",
        settings={
            "listen": addr,
            "disable_plaintext_auth": "no",
            "auth_mechanisms": "plain login",
            "auth_failure_delay": 0,
            "mail_location": "maildir:~/Maildir",
            "first_valid_uid": 1,
        },
        passdbs=[passwd_file(root / "passwd")],
        userdbs=[passwd_file(root / "passwd")],
        services={
            "pop3-login": {
                "inet_listener pop3": {"port": pop3},
                "inet_listener pop3s": {"port": 0},
            },
            "imap-login": {
                "inet_listener imap": {"port": imap},
                "inet_listener imaps": {"port": 0},
            },
        },
    )


def ports() -> tuple[int, int]:
    """Two ports free on every address in HOSTS."""
    for _ in range(50):
        pair = (free_port(), free_port())
        if all(_free(addr, port) for addr in HOSTS for port in pair):
            return pair
    raise AssertionError("no free port pair on 127.0.0.2/3")


def _free(addr: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((addr, port))
        except OSError:
            return False
        return True


class MailHost:
    """One private Dovecot serving POP3 and IMAP on ``addr``."""

    def __init__(self, root: Path, addr: str, pop3: int, imap: int) -> None:
        self.root, self.addr = root, addr
        lines = []
        for user in ("alice", "bob"):
            home = root / "home" / user
            for sub in ("cur", "new", "tmp"):
                (home / "Maildir" / sub).mkdir(parents=True)
            message = f"From: test@example.com\r\nSubject: {user} on {addr}\r\n\r\nhello\r\n"
            (home / "Maildir" / "new" / "1.msg").write_text(message, newline="")
            for path in [home, *home.rglob("*")]:
                os.chown(path, NOBODY, NOBODY)
            pw = "secret" if user == "alice" else "bobpw"
            lines.append(f"{user}:{{PLAIN}}{pw}:{NOBODY}:{NOBODY}::{home}::\n")
        (root / "passwd").write_text("".join(lines))
        (root / "passwd").chmod(0o644)
        (root / "home").chmod(0o755)
        conf = root / "dovecot.conf"
        conf.write_text(dovecot_config(root, addr=addr, pop3=pop3, imap=imap))
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: self.proc.poll() is not None or connectable((addr, imap)), addr)
        assert self.proc.poll() is None, (root / "dovecot.log").read_text()

    def stop(self) -> None:
        stop_process(self.proc)


async def _accounts(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    directory = await SQLiteDirectory.open(db, create=True)
    try:
        await directory.create(
            Account(uid="alice", password="{PLAIN}secret", mail_host="127.0.0.3")
        )
        await directory.create(Account(uid="bob", password="{PLAIN}bobpw", mail_host="127.0.0.2"))
        await directory.create(
            Account(
                uid="dave",
                password="{PLAIN}davepw",
                mail_host="127.0.0.3",
                status=AccountStatus.DISABLED,
            )
        )
    finally:
        await directory.close()


class Cluster:
    def __init__(self, root: Path, via: str) -> None:
        pop3, imap = ports()
        self.hosts = {}
        for addr in HOSTS:
            host_root = root / addr
            host_root.mkdir()
            host_root.chmod(0o711)
            self.hosts[addr] = MailHost(host_root, addr, pop3, imap)
        self.cfg = write_config(
            root / "mw.toml",
            f'[cluster]\nenabled = true\nme = "mx0.example.com"\n'
            f"pop3_port = {pop3}\nimap_port = {imap}\nconnect_timeout = 5.0\n" + daemon_config(via),
        )
        asyncio.run(_accounts(root / "data" / "mw.db"))

    def stop(self) -> None:
        for host in self.hosts.values():
            host.stop()


@pytest.fixture(params=["local", "daemon"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The two mail hosts; checkpassword decides locally, or asks a running daemon."""
    with private_dir("cluster") as root:
        c = Cluster(root, request.param)
        try:
            with serving(c.cfg) if request.param == "daemon" else contextlib.nullcontext():
                yield c
        finally:
            c.stop()


class Session:
    """``mailwarden checkpassword`` with the login on fd 3 and pipes as the client."""

    TO_FD3 = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.execvp(sys.argv[2], sys.argv[2:])"

    def __init__(self, cfg: Path, block: bytes, **env: str) -> None:
        r, w = os.pipe()
        os.write(w, block)
        os.close(w)
        cmd = [sys.executable, "-m", "mailwarden", "-c", str(cfg), "checkpassword", "/bin/false"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.TO_FD3, str(r), *cmd],
            pass_fds=(r,),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "LOGLEVEL": "3", **env},
            start_new_session=True,
        )
        os.close(r)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def read_until(self, marker: bytes, timeout: float = 20.0) -> bytes:
        """Bytes up to and including ``marker``; b"" plus what came if the stream ended."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {marker!r}; got {self.buffer!r}"
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                raise EOFError(self.buffer)
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def wait(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        stop_process(self.proc)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def test_a_pop3_session_lands_on_the_users_mail_host_and_retr_works(cluster: Cluster) -> None:
    for user, pw, host in (("alice", b"secret", "127.0.0.3"), ("bob", b"bobpw", "127.0.0.2")):
        s = Session(cluster.cfg, user.encode() + b"\0" + pw + b"\0\0", SERVICE="pop3")
        try:
            assert s.read_until(b"\r\n").startswith(b"+OK")
            s.send(b"RETR 1\r\n")
            message = s.read_until(b"\r\n.\r\n")
            assert f"Subject: {user} on {host}".encode() in message
            s.send(b"QUIT\r\n")
            assert s.read_until(b"\r\n").startswith(b"+OK")
            assert s.wait() == 0
        finally:
            s.close()


def test_an_imap_session_is_relayed_with_the_clients_tag(cluster: Cluster) -> None:
    s = Session(cluster.cfg, b"alice\0secret\0\0", SERVICE="imap", IMAPLOGINTAG="c1")
    try:
        assert s.read_until(b"\r\n").startswith(b"c1 OK")
        s.send(b"c2 SELECT INBOX\r\n")
        s.read_until(b"c2 OK")
        s.read_until(b"\r\n")
        s.send(b"c3 FETCH 1 BODY[]\r\n")
        fetched = s.read_until(b"c3 OK")
        assert b"Subject: alice on 127.0.0.3" in fetched
        s.send(b"c4 LOGOUT\r\n")
        s.read_until(b"c4 OK")
        assert s.wait() == 0
    finally:
        s.close()


def test_killing_the_mail_host_mid_session_closes_the_client_cleanly(cluster: Cluster) -> None:
    s = Session(cluster.cfg, b"alice\0secret\0\0", SERVICE="pop3")
    try:
        assert s.read_until(b"\r\n").startswith(b"+OK")
        cluster.hosts["127.0.0.3"].stop()
        with pytest.raises(EOFError):
            s.read_until(b"never", timeout=20)
        assert s.wait() == 0
    finally:
        s.close()


def test_an_unreachable_mail_host_is_a_temporary_failure(cluster: Cluster) -> None:
    cluster.hosts["127.0.0.3"].stop()
    s = Session(cluster.cfg, b"alice\0secret\0\0", SERVICE="pop3")
    try:
        assert s.wait() == 111
    finally:
        s.close()


def test_a_disabled_account_bounces_before_forwarding(cluster: Cluster) -> None:
    s = Session(cluster.cfg, b"dave\0davepw\0\0", SERVICE="pop3")
    try:
        assert s.wait() == 1
    finally:
        s.close()


def test_a_wrong_password_is_refused_without_contacting_the_mail_host(cluster: Cluster) -> None:
    s = Session(cluster.cfg, b"alice\0wrong\0\0", SERVICE="pop3")
    try:
        assert s.wait() == 1
    finally:
        s.close()
    log = (cluster.hosts["127.0.0.3"].root / "dovecot.log").read_text()
    assert "alice" not in log
