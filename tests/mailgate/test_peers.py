"""The gateway with real peers: a running ``mailwarden serve`` asked by doveadm, and Postfix.

* chpasswd while the daemon runs: the daemon had verified the old password (and
  cached that), the gateway stores a new one and tells the daemon over its control
  socket to flush; doveadm on the Dovecot socket then accepts only the new one.
* A signed mail sent over SMTP to a private Postfix instance is delivered by
  ``local`` to a pipe alias running ``mailwarden mailgate change``; the reply goes
  back over SMTP to the same Postfix and lands in the account's mailbox file.
* chpasswd while that Postfix is stopped: the reply cannot be handed over, so the
  command exits 75 and the old password still works; once Postfix runs, the same
  mail (the MTA's retry) sets a new password that arrives in the mailbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.message
import email.policy
import os
import pwd
import shutil
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.model import Account
from tests.helpers import hashed
from tests.mailgate.conftest import Keys, gpg, mail
from tests.peers.conftest import (
    connectable,
    doveadm_auth,
    free_port,
    kill_group,
    private_dir,
    running_serve,
    wait_until,
)

pytestmark = [pytest.mark.peer]

SENDMAIL = """#!/bin/sh
out="{outbox}/$(date +%s%N).eml"
cat > "$out.tmp" && mv "$out.tmp" "$out"
"""


async def _populate(path: Path, keys: Keys, *, mail_domain: str = "example.org") -> None:
    directory = await SQLiteDirectory.open(path, create=True)
    try:
        await directory.create(
            Account(
                uid="alice",
                mail=f"alice@{mail_domain}",
                password=hashed("old-password"),
                pgp_fingerprint=keys.alice,
            )
        )
    finally:
        await directory.close()


def _doveadm(root: Path, user: str, password: str) -> int:
    return doveadm_auth(root / "min.conf", str(root / "run" / "auth-client"), user, password)


@pytest.mark.skipif(shutil.which("doveadm") is None, reason="doveadm is not installed")
def test_a_chpasswd_password_works_at_once_over_the_dovecot_socket_of_the_daemon(
    keys: Keys,
) -> None:
    with private_dir("mailgate-serve") as root:
        asyncio.run(_populate(root / "mailwarden.db", keys))
        outbox = root / "outbox"
        outbox.mkdir()
        (root / "sendmail").write_text(SENDMAIL.format(outbox=outbox))
        (root / "sendmail").chmod(0o755)
        (root / "min.conf").write_text("ssl = no\n")
        config = root / "mailwarden.toml"
        config.write_text(
            f"""
[directory]
path = "mailwarden.db"
[passwords]
scheme = "SHA512-CRYPT"
rehash = "never"
[server]
control_socket = "run/control"
[dovecot]
client_socket = "run/auth-client"
master_socket = "run/auth-master"
userdb_socket = "run/auth-userdb"
failure_delay = 0
[mailgate]
gnupg_home = "{keys.gateway}"
state_dir = "state"
sendmail = "{root / "sendmail"}"
"""
        )
        with running_serve(config, ready=(str(root / "run" / "auth-client"),)):
            assert _doveadm(root, "alice", "old-password") == 0  # now in the daemon's cache
            raw = mail(keys.clearsign("Please change my mail password\n", keys.alice))
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mailwarden",
                    "--config",
                    str(config),
                    "mailgate",
                    "chpasswd",
                ],
                input=raw,
                capture_output=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            (reply_file,) = outbox.glob("*.eml")
            reply = email.message_from_bytes(reply_file.read_bytes(), policy=email.policy.default)
            assert isinstance(reply, email.message.EmailMessage)
            body = reply.get_body(("plain",))
            assert body is not None
            plain = gpg(keys.world, "--decrypt", stdin=str(body.get_content()).encode()).decode()
            password = plain.split("is:", 1)[1].split()[0]
            assert _doveadm(root, "alice", password) == 0
            assert _doveadm(root, "alice", "old-password") != 0


# --------------------------------------------------------------------------- Postfix

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = gate.test
mydomain = gate.test
mydestination = gate.test
mynetworks = 127.0.0.0/8
relayhost =
alias_maps = hash:{root}/etc/aliases
alias_database = hash:{root}/etc/aliases
local_recipient_maps =
default_privs = {user}
allow_mail_to_commands = alias
allow_mail_to_files = alias
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
smtpd_tls_security_level = none
smtp_dns_support_level = disabled
"""

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _postfix(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POSTFIX, "-c", str(config), *args], capture_output=True, text=True, timeout=60, check=False
    )


@contextlib.contextmanager
def _running_postfix(root: Path, port: int) -> Iterator[Path]:
    config = root / "etc"
    started = _postfix(config, "start")
    try:
        assert started.returncode == 0, started.stderr
        wait_until(lambda: connectable(("127.0.0.1", port)), "postfix smtpd")
        yield config
    finally:
        pid_file = root / "queue" / "pid" / "master.pid"
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
        _postfix(config, "stop")
        if pid is not None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                kill_group(os.getpgid(pid))


def _postfix_instance(root: Path, port: int, user: str, aliases: str) -> None:
    """A private Postfix in ``root`` (etc, queue, data) on ``port``, with ``aliases``."""
    for sub in ("etc", "queue", "data"):
        (root / sub).mkdir()
    shutil.chown(root / "data", user="postfix")
    (root / "etc" / "aliases").write_text(aliases)
    (root / "etc" / "main.cf").write_text(MAIN_CF.format(root=root, user=user))
    (root / "etc" / "master.cf").write_text(MASTER_CF.format(port=port))
    newaliases = subprocess.run(
        ["postalias", "-c", str(root / "etc"), str(root / "etc" / "aliases")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert newaliases.returncode == 0, newaliases.stderr


def _python_for(user: str) -> tuple[str, str]:
    """An interpreter ``user`` may run that imports this mailwarden, and its PYTHONPATH.

    local(8) never runs a command as root; the test venv's interpreter may live
    where other users cannot go (a pyenv under /root), so the system's python3 of
    the same version, given our source and site-packages, is the fallback.
    """
    import gnupg  # type: ignore[import-untyped]

    import mailwarden

    path = ":".join([str(Path(mailwarden.__file__).parents[1]), str(Path(gnupg.__file__).parent)])
    for python in (sys.executable, shutil.which("python3") or "", "/usr/bin/python3"):
        if not python:
            continue
        probe = subprocess.run(
            [
                *("runuser", "-u", user, "--", "env", f"PYTHONPATH={path}", python, "-c"),
                "import mailwarden.cli, mailwarden.mailgate.gateway",
            ],
            capture_output=True,
            timeout=60,
            check=False,
            cwd="/",
        )
        if probe.returncode == 0:
            return python, path
    pytest.skip(f"no Python that {user} may run imports mailwarden")


@pytest.mark.skipif(
    not os.access(POSTFIX, os.X_OK) or os.geteuid() != 0,
    reason="needs postfix and root (a private Postfix instance must start as root)",
)
def test_a_signed_mail_through_postfix_changes_the_account_and_the_reply_arrives(
    keys: Keys,
) -> None:
    user = "nobody"
    entry = pwd.getpwnam(user)
    with private_dir("mailgate-postfix") as root:
        port = free_port()
        gate = root / "gate"
        gate.mkdir()
        # What the gateway runs as (local(8) never runs commands as root): its own
        # copy of the keyring, directory, state and the mailbox the reply goes to.
        shutil.copytree(keys.gateway, gate / "gnupg", ignore=shutil.ignore_patterns("S.*"))
        asyncio.run(_populate(gate / "mailwarden.db", keys, mail_domain="gate.test"))
        (gate / "mailwarden.toml").write_text(
            f"""
[directory]
path = "mailwarden.db"
[server]
control_socket = ""
[mailgate]
gnupg_home = "gnupg"
state_dir = "state"
smtp_host = "127.0.0.1"
smtp_port = {port}
from_address = "mailgate@gate.test"
"""
        )
        mbox = gate / "alice.mbox"
        for item in [gate, *gate.rglob("*")]:
            os.chown(item, entry.pw_uid, entry.pw_gid)
        python, pythonpath = _python_for(user)
        command = (
            f"/usr/bin/env PYTHONPATH={pythonpath} {python} -m mailwarden"
            f" --config {gate / 'mailwarden.toml'} mailgate change"
        )
        _postfix_instance(root, port, user, f'change: "|{command}"\nalice: {mbox}\n')
        with _running_postfix(root, port):
            raw = mail(keys.clearsign("ircnick: through-postfix\n", keys.alice))
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                smtp.sendmail("someone@elsewhere.test", ["change@gate.test"], raw)

            def arrived() -> bool:
                return mbox.exists() and b"Changed entry" in mbox.read_bytes()

            try:
                wait_until(arrived, "the gateway's reply in alice's mailbox", timeout=60)
            except AssertionError:
                log = (root / "postfix.log").read_text() if (root / "postfix.log").exists() else ""
                raise AssertionError(log[-4000:]) from None
        text = mbox.read_text()
        assert "To: alice@gate.test" in text
        assert "> ircnick: through-postfix" in text

        async def nick() -> str | None:
            directory = await SQLiteDirectory.open(gate / "mailwarden.db", create=False)
            try:
                account = await directory.get("alice")
                return None if account is None else account.profile.irc_nick
            finally:
                await directory.close()

        assert asyncio.run(nick()) == "through-postfix"


@pytest.mark.skipif(
    not os.access(POSTFIX, os.X_OK) or os.geteuid() != 0,
    reason="needs postfix and root (a private Postfix instance must start as root)",
)
def test_chpasswd_while_postfix_is_stopped_keeps_the_old_password_and_the_retry_delivers(
    keys: Keys,
) -> None:
    user = "nobody"
    with private_dir("mailgate-postfix-down") as root:
        port = free_port()
        gate = root / "gate"
        gate.mkdir()
        mbox = gate / "alice.mbox"
        shutil.chown(gate, user=user)
        _postfix_instance(root, port, user, f"alice: {mbox}\n")
        asyncio.run(_populate(gate / "mailwarden.db", keys, mail_domain="gate.test"))
        config = gate / "mailwarden.toml"
        config.write_text(
            f"""
[directory]
path = "mailwarden.db"
[passwords]
scheme = "SHA512-CRYPT"
[server]
control_socket = ""
[mailgate]
gnupg_home = "{keys.gateway}"
state_dir = "state"
smtp_host = "127.0.0.1"
smtp_port = {port}
from_address = "mailgate@gate.test"
"""
        )

        def mailwarden(*args: str, raw: bytes = b"") -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                [sys.executable, "-m", "mailwarden", "--config", str(config), *args],
                input=raw,
                capture_output=True,
                timeout=120,
                check=False,
            )

        raw = mail(keys.clearsign("Please change my mail password\n", keys.alice))
        # Postfix is stopped: its smtpd port refuses the reply.
        done = mailwarden("mailgate", "chpasswd", raw=raw)
        assert done.returncode == 75, done.stderr
        assert mailwarden("auth", "test", "alice", "old-password").returncode == 0

        with _running_postfix(root, port):
            done = mailwarden("mailgate", "chpasswd", raw=raw)  # the MTA's retry
            assert done.returncode == 0, done.stderr

            def arrived() -> bool:
                return mbox.exists() and b"END PGP MESSAGE" in mbox.read_bytes()

            wait_until(arrived, "the new password in alice's mailbox", timeout=60)
        reply = email.message_from_bytes(
            mbox.read_bytes().split(b"\n", 1)[1], policy=email.policy.default
        )
        assert isinstance(reply, email.message.EmailMessage)
        body = reply.get_body(("plain",))
        assert body is not None
        plain = gpg(keys.world, "--decrypt", stdin=str(body.get_content()).encode()).decode()
        password = plain.split("is:", 1)[1].split()[0]
        assert mailwarden("auth", "test", "alice", password).returncode == 0
        assert mailwarden("auth", "test", "alice", "old-password").returncode != 0
