"""doveadm against ``mailwarden serve``, side by side with Dovecot's own auth process.

Two servers hold the same accounts: ``mailwarden serve`` (started from a config
file, as an administrator would) and Dovecot 2.3's auth service with a
passwd-file, started from a private dovecot.conf with only the auth listeners.
Every doveadm command runs against both; exit codes and printed fields must be
the same (fields compared as sets: passwd-file and our directory list userdb
fields in different orders, and Dovecot prints an empty line for the stray TAB
after ``user=``). The expected exit codes are the reference's (§2.3, §6c):
0 ok, 77 auth failed, 67 unknown user.
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

from mailwarden.directories.sqlite import SQLiteDirectory
from tests.peers.configs import daemon_toml, dovecot_conf, listeners, passwd_file
from tests.peers.conftest import (
    DOVECOT,
    accounts,
    bob_hash,
    connectable,
    private_dir,
    running_dovecot,
    stop_process,
    wait_until,
)

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(shutil.which("doveadm") is None, reason="doveadm is not installed"),
]


@dataclass(frozen=True)
class Sockets:
    client: str
    login: str
    master: str
    userdb: str

    @classmethod
    def under(cls, directory: Path) -> Sockets:
        return cls(
            *(str(directory / f"auth-{role}") for role in ("client", "login", "master", "userdb"))
        )


@dataclass(frozen=True)
class Result:
    returncode: int
    fields: list[str]

    @classmethod
    def of(cls, done: subprocess.CompletedProcess[str]) -> Result:
        lines = [line.strip() for line in done.stdout.splitlines()]
        return cls(done.returncode, sorted(line for line in lines if line))


async def populate(path: Path) -> None:
    directory = await SQLiteDirectory.open(path, create=True, readers=1)
    try:
        for account in accounts():
            await directory.create(account)
    finally:
        await directory.close()


MAILWARDEN_CONFIG = daemon_toml(
    passwords={"scheme": "SHA512-CRYPT"},
    hashing={"workers": 2},
    # The Dovecot beside it runs without auth cache; so does this one, so that
    # `doveadm auth cache flush` counts the same (0) on both.
    cache={"enabled": False},
    dovecot={"login_socket": "run/auth-login"},
)


@pytest.fixture(scope="module")
def mailwarden() -> Iterator[Sockets]:
    """``mailwarden serve`` from a config file, with sockets relative to it."""
    with private_dir("serve") as root:
        asyncio.run(populate(root / "mailwarden.db"))
        config = root / "mailwarden.toml"
        config.write_text(MAILWARDEN_CONFIG)
        sockets = Sockets.under(root / "run")
        with (root / "serve.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mailwarden", "--config", str(config), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            wait_until(
                lambda: proc.poll() is not None or connectable(sockets.userdb), "mailwarden serve"
            )
            assert proc.poll() is None, (root / "serve.log").read_text()
            yield sockets
        finally:
            stop_process(proc)
        assert proc.returncode == 0, (root / "serve.log").read_text()
        assert not Path(sockets.client).exists(), "serve left its socket behind"


def dovecot_config(root: Path) -> str:
    return dovecot_conf(
        root,
        settings={"auth_mechanisms": "plain login", "auth_failure_delay": 0},
        passdbs=[
            passwd_file(root / "masters", master="yes", result_success="continue"),
            passwd_file(root / "passwd"),
        ],
        userdbs=[passwd_file(root / "passwd")],
        services={
            "auth": listeners(
                {
                    "auth-client": "0666",
                    "auth-login": "0666",
                    "auth-master": "0600",
                    "auth-userdb": "0666",
                }
            )
        },
    )


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Sockets]:
    """Dovecot's auth service (only that) with a passwd-file of the same accounts."""
    if shutil.which(DOVECOT) is None:
        pytest.skip("the dovecot binary (dovecot-core) is not installed")
    with private_dir("dovecot") as root:
        # user:password:uid:gid:gecos:home:shell:extra fields (reference §3)
        (root / "passwd").write_text(
            "alice:{PLAIN}secret:5000:5000::/var/mail/alice::userdb_mail=maildir:~/Maildir\n"
            f"bob:{bob_hash()}::::::\n"
            "admin:{PLAIN}masterpw::::::\n"
        )
        (root / "masters").write_text("admin:{PLAIN}masterpw\n")
        for name in ("passwd", "masters"):  # the auth process runs as the dovecot user
            (root / name).chmod(0o644)
        conf = root / "dovecot.conf"
        conf.write_text(dovecot_config(root))
        sockets = Sockets.under(root / "run")
        with running_dovecot(conf, root):
            yield sockets


@pytest.fixture(scope="module")
def minimal_conf() -> Iterator[Path]:
    """doveadm needs a readable config; this one says nothing (reference §6c)."""
    with private_dir("doveadm") as root:
        (root / "min.conf").write_text("ssl = no\n")
        yield root / "min.conf"


@pytest.fixture(scope="module")
def both(mailwarden: Sockets, dovecot: Sockets) -> tuple[Sockets, Sockets]:
    return mailwarden, dovecot


def doveadm(conf: Path, *args: str) -> Result:
    done = subprocess.run(
        ["doveadm", "-c", str(conf), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return Result.of(done)


# (name, socket role, doveadm arguments after the socket, expected exit code)
CASES = [
    ("auth-test-ok", "client", ["auth", "test", "alice", "secret"], 0),
    ("auth-test-crypt", "client", ["auth", "test", "bob", "bobpw"], 0),
    ("auth-test-wrong-password", "client", ["auth", "test", "alice", "wrong"], 77),
    ("auth-test-unknown-user", "client", ["auth", "test", "nobody", "wrong"], 77),
    (
        "auth-test-smtp-from-rip",
        "client",
        ["auth", "test", "-x", "service=smtp", "-x", "rip=192.0.2.9", "alice", "secret"],
        0,
    ),
    ("auth-test-master-user", "client", ["auth", "test", "-M", "admin", "alice", "masterpw"], 0),
    ("auth-lookup", "userdb", ["auth", "lookup", "alice"], 0),
    ("auth-lookup-unknown", "userdb", ["auth", "lookup", "nobody"], 67),
    ("user-fields", "userdb", ["user", "-u", "alice"], 0),
    ("user-unknown", "userdb", ["user", "-u", "nobody"], 67),
    ("user-list", "userdb", ["user", "a*"], 0),
    ("auth-cache-flush", "master", ["auth", "cache", "flush"], 0),
]


def run_case(conf: Path, sockets: Sockets, role: str, args: list[str]) -> Result:
    command = list(args)
    position = 3 if command[:3] == ["auth", "cache", "flush"] else 2 if command[0] == "auth" else 1
    command[position:position] = ["-a", getattr(sockets, role)]
    return doveadm(conf, *command)


@pytest.mark.parametrize(
    ("role", "args", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_doveadm_gets_what_dovecot_itself_answers(
    both: tuple[Sockets, Sockets], minimal_conf: Path, role: str, args: list[str], code: int
) -> None:
    ours, theirs = (run_case(minimal_conf, sockets, role, args) for sockets in both)
    assert theirs.returncode == code, theirs
    assert ours == theirs


def test_doveadm_auth_login_gets_the_same_userdb_reply_through_request(
    both: tuple[Sockets, Sockets], minimal_conf: Path
) -> None:
    ours, theirs = (
        doveadm(minimal_conf, "auth", "login", "-a", s.login, "-m", s.master, "alice", "secret")
        for s in both
    )
    assert theirs.returncode == 0, theirs
    assert ours == theirs
    assert "auth_mech=PLAIN" in ours.fields


def test_doveadm_auth_test_as_a_master_user_names_it(
    mailwarden: Sockets, minimal_conf: Path
) -> None:
    result = doveadm(
        minimal_conf, "auth", "test", "-a", mailwarden.client, "-M", "admin", "alice", "masterpw"
    )
    assert result.returncode == 0
    assert {"user=alice", "original_user=admin", "auth_user=admin"} <= set(result.fields)


def test_doveadm_user_prints_the_userdb_fields_of_the_directory(
    mailwarden: Sockets, minimal_conf: Path
) -> None:
    result = doveadm(minimal_conf, "user", "-u", "-a", mailwarden.userdb, "alice")
    assert result.returncode == 0
    assert {
        "home      : /var/mail/alice",
        "mail      : maildir:~/Maildir",
        "uid       : 5000",
    } <= set(result.fields)


# `mailwarden auth test|auth lookup|user-lookup -a SOCKET` beside doveadm, both asking
# the same server (Dovecot's own auth process, then mailwarden serve): same exit code,
# same printed lines. (doveadm's arguments, mailwarden's, the socket role)
CLI_CASES = [
    ("auth-test-ok", ["auth", "test", "alice", "secret"], None, "client"),
    ("auth-test-wrong-password", ["auth", "test", "alice", "wrong"], None, "client"),
    ("auth-test-unknown-user", ["auth", "test", "nobody", "wrong"], None, "client"),
    (
        "auth-test-x",
        ["auth", "test", *("-x", "service=smtp", "-x", "rip=192.0.2.9"), "alice", "secret"],
        None,
        "client",
    ),
    ("auth-test-master", ["auth", "test", "-M", "admin", "alice", "masterpw"], None, "client"),
    ("auth-lookup", ["auth", "lookup", "alice"], None, "userdb"),
    ("auth-lookup-unknown", ["auth", "lookup", "nobody"], None, "userdb"),
    ("user-lookup", ["user", "-u", "alice"], ["user-lookup", "alice"], "userdb"),
    ("user-lookup-field", ["user", "-u", "-f", "home", "alice"], None, "userdb"),
    ("user-lookup-unknown", ["user", "-u", "nobody"], ["user-lookup", "nobody"], "userdb"),
]


def mailwarden_cli(*args: str) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "mailwarden", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Result.of(done)


@pytest.mark.parametrize(
    ("theirs_args", "ours_args", "role"),
    [c[1:] for c in CLI_CASES],
    ids=[c[0] for c in CLI_CASES],
)
def test_mailwarden_auth_commands_print_what_doveadm_prints(
    both: tuple[Sockets, Sockets],
    minimal_conf: Path,
    theirs_args: list[str],
    ours_args: list[str] | None,
    role: str,
) -> None:
    if ours_args is None:
        ours_args = list(theirs_args)
        if theirs_args[:2] == ["user", "-u"]:
            ours_args[:2] = ["user-lookup"]
    for sockets in both:
        path = getattr(sockets, role)
        theirs = run_case(minimal_conf, sockets, role, theirs_args)
        ours = mailwarden_cli(*ours_args, "-a", path)
        assert ours == theirs, (path, ours_args)
