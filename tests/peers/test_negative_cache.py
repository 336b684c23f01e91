"""A name refused once logs in as soon as another process makes it resolvable.

Issue 21's sequence through a running ``mailwarden serve`` and doveadm: a failed
login on a name that does not exist yet (so the daemon's negative cache holds it),
then a write by another process (the CLI: ``user add``, ``import passwd-file``,
``user set ... alternate_addresses=``), then the same login again, which must
succeed at once, not after ``cache.negative_ttl`` (30 s by default).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers.configs import daemon_toml
from tests.peers.conftest import doveadm_auth, private_dir, running_serve
from tests.peers.test_doveadm import populate

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(shutil.which("doveadm") is None, reason="doveadm is not installed"),
]

CONFIG = daemon_toml(
    passwords={"scheme": "SHA512-CRYPT", "rehash": None},
    dovecot={"failure_delay": 0.2},
    cache={"negative_ttl": 30.0},
)


@dataclass(frozen=True)
class Daemon:
    root: Path
    config: Path

    def login(self, user: str, password: str, rip: str) -> int:
        return doveadm_auth(
            self.root / "min.conf", str(self.root / "run" / "auth-client"), user, password, rip
        )

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "mailwarden", "-c", str(self.config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with private_dir("negcache") as root:
        asyncio.run(populate(root / "mailwarden.db"))
        config = root / "mailwarden.toml"
        config.write_text(CONFIG)
        (root / "min.conf").write_text("ssl = no\n")
        ready = (str(root / "run" / "control"), str(root / "run" / "auth-client"))
        with running_serve(config, ready=ready):
            yield Daemon(root, config)


def test_an_account_created_by_the_cli_logs_in_right_after_a_refusal(daemon: Daemon) -> None:
    assert daemon.login("early@example.com", "Early pw 1", "192.0.2.1") == 77
    daemon.cli("user", "add", "early@example.com", "--password-stdin", stdin="Early pw 1\n")
    assert daemon.login("early@example.com", "Early pw 1", "192.0.2.1") == 0


def test_an_imported_account_logs_in_right_after_a_refusal(daemon: Daemon) -> None:
    assert daemon.login("imported", "Imported pw", "192.0.2.2") == 77
    passwd = daemon.root / "import.passwd"
    passwd.write_text("imported:{PLAIN}Imported pw::::::\n")
    daemon.cli("import", "passwd-file", "--quiet", str(passwd))
    assert daemon.login("imported", "Imported pw", "192.0.2.2") == 0


def test_a_new_alternate_address_logs_in_right_after_a_refusal(daemon: Daemon) -> None:
    assert daemon.login("ally@example.org", "secret", "192.0.2.3") == 77
    daemon.cli("user", "set", "alice", "alternate_addresses=ally@example.org")
    assert daemon.login("ally@example.org", "secret", "192.0.2.3") == 0
