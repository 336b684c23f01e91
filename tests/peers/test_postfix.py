"""Postfix 3.7's smtpd with ``smtpd_sasl_type = dovecot`` against the front end.

A private Postfix instance (``postfix -c DIR``: its own main.cf, master.cf, queue and
data directories in a private temp dir; /etc/postfix is never read or written)
runs three smtpd services on free loopback ports, each pointed with
``smtpd_sasl_path`` at the UNIX client socket of one front end:

* ``healthy`` - the accounts of conftest, no failure delay;
* ``down`` - an engine whose directory fails every read;
* ``delayed`` - like healthy, with a one-second failure delay.

smtplib then speaks SMTP AUTH as a mail client does. Expected answers (reference
§0.6, §1.5, §6a): 235 for the right password, 535 for a wrong one, and 454 when
the directory is down (the front end closes the connection, which is the only
temporary failure Postfix recognises).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import os
import shutil
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.conftest import (
    ThreadedFrontends,
    connectable,
    free_port,
    kill_group,
    private_dir,
    wait_until,
)

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        not os.access(POSTFIX, os.X_OK),
        reason="postfix is not installed (scripts/bootstrap.sh test installs it)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="a private Postfix instance must start as root"),
]

SERVICES = ("healthy", "down", "delayed")

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_security_options = noanonymous
smtpd_tls_security_level = none
"""

# One smtpd per front end; chroot off ("n"), so the absolute socket paths resolve.
MASTER_CF_SMTPD = (
    "127.0.0.1:{port} inet n - n - - smtpd"
    " -o syslog_name=postfix/{name} -o smtpd_sasl_path=unix:{socket}\n"
)
MASTER_CF_SERVICES = """\
anvil     unix  -       -       n       -       1       anvil
proxymap  unix  -       -       n       -       -       proxymap
rewrite   unix  -       -       n       -       -       trivial-rewrite
cleanup   unix  n       -       n       -       0       cleanup
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix(config: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POSTFIX, "-c", str(config), command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def master_pid(root: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((root / "queue" / "pid" / "master.pid").read_text().strip())
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def smtp_ports() -> Iterator[dict[str, int]]:
    """The smtpd port of each service, Postfix and the front ends running."""
    frontends = ThreadedFrontends()
    with private_dir("postfix") as root:
        try:
            sockets = {
                "healthy": frontends.start(root / "healthy"),
                "down": frontends.start(root / "down", directory_down=True),
                "delayed": frontends.start(root / "delayed", failure_delay=1.0),
            }
            ports = {name: free_port() for name in SERVICES}
            config = root / "etc"
            for sub in ("etc", "queue", "data"):
                (root / sub).mkdir()
            shutil.chown(root / "data", user="postfix")
            (config / "main.cf").write_text(MAIN_CF.format(root=root))
            (config / "master.cf").write_text(
                "".join(
                    MASTER_CF_SMTPD.format(port=ports[n], name=n, socket=sockets[n])
                    for n in SERVICES
                )
                + MASTER_CF_SERVICES
            )
            started = postfix(config, "start")
            try:
                assert started.returncode == 0, started.stderr + _log(root)
                for port in ports.values():
                    wait_until(lambda p=port: connectable(("127.0.0.1", p)), "postfix smtpd")
                yield ports
            finally:
                _stop_postfix(root, config)
        finally:
            frontends.close()


def _log(root: Path) -> str:
    with contextlib.suppress(OSError):
        return (root / "postfix.log").read_text()
    return ""


def _stop_postfix(root: Path, config: Path) -> None:
    pid = master_pid(root)
    postfix(config, "stop")
    if pid is None:
        return
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):  # the master runs in a session of its own: kill the whole group
        kill_group(os.getpgid(pid))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def smtp_auth(port: int, mech: str, user: str, password: str) -> int:
    """One SMTP session: EHLO, AUTH ``mech``; the final reply code."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        match mech:
            case "PLAIN":
                code, _ = smtp.docmd("AUTH", "PLAIN " + b64(f"\0{user}\0{password}".encode()))
            case "LOGIN":
                code, prompt = smtp.docmd("AUTH", "LOGIN")
                assert (code, base64.b64decode(prompt)) == (334, b"Username:")
                code, prompt = smtp.docmd(b64(user.encode()))
                assert (code, base64.b64decode(prompt)) == (334, b"Password:")
                code, _ = smtp.docmd(b64(password.encode()))
            case "CRAM-MD5":
                code, challenge = smtp.docmd("AUTH", "CRAM-MD5")
                assert code == 334
                digest = hmac.new(password.encode(), base64.b64decode(challenge), "md5")
                code, _ = smtp.docmd(b64(f"{user} {digest.hexdigest()}".encode()))
            case _:
                raise AssertionError(mech)
        return code


def test_postfix_advertises_the_mechanisms_the_front_end_offers(
    smtp_ports: dict[str, int],
) -> None:
    with smtplib.SMTP("127.0.0.1", smtp_ports["healthy"], timeout=30) as smtp:
        smtp.ehlo("client.test")
        assert smtp.esmtp_features["auth"].split() == ["PLAIN", "LOGIN", "CRAM-MD5"]


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_postfix_accepts_the_right_password(smtp_ports: dict[str, int], mech: str) -> None:
    assert smtp_auth(smtp_ports["healthy"], mech, "alice", "secret") == 235


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_postfix_refuses_a_wrong_password(smtp_ports: dict[str, int], mech: str) -> None:
    assert smtp_auth(smtp_ports["healthy"], mech, "alice", "wrong") == 535


def test_postfix_refuses_an_unknown_user_as_it_refuses_a_wrong_password(
    smtp_ports: dict[str, int],
) -> None:
    assert smtp_auth(smtp_ports["healthy"], "PLAIN", "nobody", "secret") == 535


def test_postfix_accepts_a_crypt_hash(smtp_ports: dict[str, int]) -> None:
    assert smtp_auth(smtp_ports["healthy"], "PLAIN", "bob", "bobpw") == 235


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_postfix_answers_454_while_the_directory_is_down(
    smtp_ports: dict[str, int], mech: str
) -> None:
    assert smtp_auth(smtp_ports["down"], mech, "alice", "secret") == 454


def test_postfix_receives_the_failure_after_the_failure_delay(
    smtp_ports: dict[str, int],
) -> None:
    started = time.monotonic()
    assert smtp_auth(smtp_ports["delayed"], "PLAIN", "alice", "wrong") == 535
    assert time.monotonic() - started >= 0.9
