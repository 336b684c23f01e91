"""Dovecot 2.3's checkpassword passdb and userdb calling ``mailwarden checkpassword``.

A private Dovecot (auth service only) runs ``passdb { driver = checkpassword }`` and
``userdb { driver = checkpassword }`` with our command; doveadm asks it through its
own sockets. Dovecot passes its reply helper (checkpassword-reply) as the
subprogram, so this checks the whole convention: fd 3, AUTHORIZED=1/2, EXTRA and
the userdb_* variables, and exit codes 1 and 3.

Dovecot runs checkpassword inside its auth process. That process normally runs as
the ``dovecot`` user, which may not read this checkout's virtualenv, so the
private instance runs its auth service as root (the only change from a stock
setup; a real installation installs mailwarden where the dovecot user can run it).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.classic.conftest import (
    APP_PASSWORD,
    DAEMON_SOCKETS,
    EXPIRED_APP_PASSWORD,
    UNKNOWN_APP_PASSWORD,
    daemon_config,
    fill,
    serving,
    write_config,
)
from tests.peers.configs import dovecot_conf, listeners
from tests.peers.conftest import DOVECOT, private_dir, running_dovecot

pytestmark = pytest.mark.peer


def dovecot_config(root: Path) -> str:
    checkpassword = {"driver": "checkpassword", "args": f"{root}/chk.sh"}
    return dovecot_conf(
        root,
        settings={
            "auth_mechanisms": "plain login",
            "auth_failure_delay": 0,
            "auth_cache_size": 0,
            "auth_debug": "yes",
        },
        passdbs=[checkpassword],
        userdbs=[checkpassword],
        services={"auth": listeners({"auth-client": "0600", "auth-userdb": "0600"}, user="root")},
    )


# mailwarden's own sockets (daemon path) live in mw/, away from Dovecot's in run/.
MW_DAEMON = daemon_config("daemon", sockets=DAEMON_SOCKETS.replace('"run/', '"mw/'))


@pytest.fixture(scope="module", params=["local", "daemon"])
def dovecot(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A private Dovecot whose passdb and userdb are ``mailwarden checkpassword``, which
    decides locally or asks a running ``mailwarden serve``."""
    if shutil.which(DOVECOT) is None or shutil.which("doveadm") is None:
        pytest.skip("dovecot-core is not installed")
    daemon = request.param == "daemon"
    with private_dir("checkpassword") as root:
        cfg = write_config(
            root / "mw.toml", MW_DAEMON if daemon else '[checkpassword]\nvia = "local"\n'
        )
        asyncio.run(fill(root / "data" / "mw.db"))
        script = root / "chk.sh"
        script.write_text(
            f'#!/bin/sh\nexec {sys.executable} -m mailwarden -c {cfg} checkpassword "$@"\n'
        )
        script.chmod(0o755)
        conf = root / "dovecot.conf"
        conf.write_text(dovecot_config(root))
        (root / "min.conf").write_text("ssl = no\n")
        with serving(cfg) if daemon else contextlib.nullcontext(), running_dovecot(conf, root):
            yield root


def doveadm(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["doveadm", "-c", str(root / "min.conf"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def auth_test(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return doveadm(root, "auth", "test", "-a", str(root / "run" / "auth-client"), *args)


def user(root: Path, name: str) -> subprocess.CompletedProcess[str]:
    return doveadm(root, "user", "-a", str(root / "run" / "auth-userdb"), name)


@pytest.mark.parametrize("password", ["secret", APP_PASSWORD])
def test_doveadm_auth_test_succeeds_through_checkpassword(dovecot: Path, password: str) -> None:
    result = auth_test(dovecot, "alice", password)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "auth succeeded" in result.stdout
    assert "user=alice" in result.stdout
    # Dovecot logs what checkpassword-reply handed back (auth_debug): our environment.
    log = (dovecot / "dovecot.log").read_text()
    assert "userdb_home=/var/mail/alice\tuserdb_mail=maildir:~/Maildir\tuserdb_uid=5000" in log


@pytest.mark.parametrize(
    "name,password",
    [
        ("alice", "wrong"),
        ("nobody", "secret"),
        ("alice", EXPIRED_APP_PASSWORD),
        ("alice", UNKNOWN_APP_PASSWORD),
        ("nobody", APP_PASSWORD),
    ],
)
def test_doveadm_auth_test_fails_for_a_wrong_password_or_unknown_user(
    dovecot: Path, name: str, password: str
) -> None:
    result = auth_test(dovecot, name, password)
    assert result.returncode == 77, result.stdout + result.stderr
    assert "auth failed" in result.stderr + result.stdout


def test_doveadm_user_gets_the_userdb_fields_through_checkpassword(dovecot: Path) -> None:
    result = user(dovecot, "alice")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "maildir:~/Maildir" in result.stdout
    assert "/var/mail/alice" in result.stdout


def test_doveadm_user_of_an_unknown_user_says_it_does_not_exist(dovecot: Path) -> None:
    result = user(dovecot, "nobody")
    assert result.returncode == 67, result.stdout + result.stderr
