"""Postfix 3.7 built with Cyrus SASL (``smtpd_sasl_type = cyrus``) checking passwords
through libsasl2's ``pwcheck_method: saslauthd`` against our saslauthd socket.

A private Postfix instance (its own main.cf/master.cf, queue and data dirs in a
temp dir) reads a private SASL application config (``$config_directory/sasl/smtpd.conf``)
that points ``saslauthd_path`` at ``mailwarden serve``'s socket.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.classic.conftest import (
    APP_PASSWORD,
    EXPIRED_APP_PASSWORD,
    SMTP_APP_PASSWORD,
    UNKNOWN_APP_PASSWORD,
    serving_saslauthd,
)
from tests.peers.conftest import connectable, free_port, private_dir, wait_until
from tests.peers.test_postfix import (
    MAIN_CF,
    MASTER_CF_SERVICES,
    POSTFIX,
    _log,
    _stop_postfix,
    postfix,
    smtp_auth,
)

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(not os.access(POSTFIX, os.X_OK), reason="postfix is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a private Postfix instance must start as root"),
]

SMTPD_CONF = "pwcheck_method: saslauthd\nsaslauthd_path: {socket}\nmech_list: PLAIN LOGIN\n"


@pytest.fixture(scope="module")
def smtp_port() -> Iterator[int]:
    with private_dir("cyrus") as root:
        yield from _postfix_with(root)


def _postfix_with(root: Path) -> Iterator[int]:
    mw = root / "mw"
    mw.mkdir()
    mw.chmod(0o711)
    with serving_saslauthd(mw) as sock:
        sock.chmod(0o666)
        (mw / "run").chmod(0o711)
        port = free_port()
        config = root / "etc"
        for sub in ("etc", "etc/sasl", "queue", "data"):
            (root / sub).mkdir()
        shutil.chown(root / "data", user="postfix")
        # Debian's Postfix reads $config_directory/sasl/smtpd.conf (seen with strace),
        # whatever cyrus_sasl_config_path says; both name the same folder here.
        (config / "sasl").chmod(0o755)
        (config / "sasl" / "smtpd.conf").write_text(SMTPD_CONF.format(socket=sock))
        (config / "sasl" / "smtpd.conf").chmod(0o644)
        main_cf = MAIN_CF.format(root=root).replace(
            "smtpd_sasl_type = dovecot",
            f"smtpd_sasl_type = cyrus\ncyrus_sasl_config_path = {config}/sasl",
        )
        (config / "main.cf").write_text(main_cf)
        (config / "master.cf").write_text(
            f"127.0.0.1:{port} inet n - n - - smtpd -o syslog_name=postfix/cyrus"
            " -o smtpd_sasl_path=smtpd\n" + MASTER_CF_SERVICES
        )
        started = postfix(config, "start")
        try:
            assert started.returncode == 0, started.stderr + _log(root)
            wait_until(lambda: connectable(("127.0.0.1", port)), "postfix smtpd")
            yield port
        finally:
            _stop_postfix(root, config)


@pytest.mark.parametrize("password", ["secret", APP_PASSWORD, SMTP_APP_PASSWORD])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_postfix_with_cyrus_accepts_the_right_password(
    smtp_port: int, mech: str, password: str
) -> None:
    assert smtp_auth(smtp_port, mech, "alice", password) == 235


@pytest.mark.parametrize(
    "user,password",
    [
        ("alice", "wrong"),
        ("nobody", "secret"),
        ("alice", EXPIRED_APP_PASSWORD),
        ("alice", UNKNOWN_APP_PASSWORD),
        ("nobody", APP_PASSWORD),
    ],
)
def test_postfix_with_cyrus_refuses_a_wrong_password_or_unknown_user(
    smtp_port: int, user: str, password: str
) -> None:
    assert smtp_auth(smtp_port, "PLAIN", user, password) == 535
