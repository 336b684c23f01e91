"""Debian's Dovecot 2.3 with its own passwd-file, asking ``mailwarden serve`` as its
auth-policy server (``auth_policy_server_url``; docs/policy-server.md).

mailwarden holds no account here: Dovecot's passdb decides every password, and
mailwarden's guard decides who is refused, from Dovecot's ``allow`` and
``report`` requests. Logins are driven with ``doveadm auth test -x rip=...``
through Dovecot's own auth-client socket, so the ``remote`` Dovecot sends is the
``rip`` given. What the guard counted is read back through the CLI (``mailwarden
guard list`` over the control socket) and ``/metrics``.

Fail open or closed is Dovecot's ``auth_policy_reject_on_fail``: tested against the
same Dovecot with no server listening, and with one that never answers (a short
``auth_policy_server_timeout_msecs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailwarden.directories.sqlite import SQLiteDirectory
from tests.peers.configs import GUARD_RULE_IP, daemon_toml, dovecot_conf, listeners, passwd_file
from tests.peers.conftest import (
    DOVECOT,
    doveadm_auth,
    free_port,
    private_dir,
    running_dovecot,
    running_serve,
    wait_until,
)
from tests.redisserver import RedisServer, have_redis, running_redis

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        shutil.which(DOVECOT) is None or shutil.which("doveadm") is None,
        reason="dovecot-core is not installed",
    ),
]

KEY = "policy-test-key"
METRICS = "metrics-test-token"
NONCE = "policy-test-nonce"
PATH = "/api/v1/dovecot/policy"
ATTACKER = "192.0.2.9"
OWNER = "198.51.100.7"
PHONE = "203.0.113.20"
OK, REFUSED = 0, 77
#: Dovecot's default list and mech=%m, as docs/policy-server.md recommends.
ATTRIBUTES = (
    "login=%{requested_username} pwhash=%{hashed_password} remote=%{rip}"
    " device_id=%{client_id} protocol=%s session_id=%{session} mech=%m"
)


# --------------------------------------------------------------------------- the two servers


def mailwarden_config(port: int, *, redis: str = "") -> str:
    guard: dict[str, Any] = {
        "allow_networks": [],
        "ban_time": 600.0,
        "account_threshold": 0,
        "known_network_failures": 2,
        "rules": [GUARD_RULE_IP],  # three counted failures a minute: a ban
    }
    if redis:
        guard |= {"store": "redis", "redis": {"url": redis, "key_prefix": "policy:"}}
    return daemon_toml(
        dovecot={"enabled": False},  # no account, no Dovecot socket: the policy route only
        http={"enabled": True, "listen": [f"127.0.0.1:{port}"], "metrics_token": METRICS},
        authpolicy={"enabled": True, "api_key_file": "policy.key"},
        guard=guard,
    )


def dovecot_config(root: Path, url: str, **policy: object) -> str:
    """The snippet of docs/policy-server.md, with ``policy`` settings laid over it."""
    settings: dict[str, object] = {
        "auth_mechanisms": "plain login",
        "auth_failure_delay": 0,
        "auth_cache_size": 0,
        "auth_verbose": "yes",
        "auth_policy_server_url": url,
        "auth_policy_server_api_header": f"X-API-Key: {KEY}",
        "auth_policy_hash_nonce": NONCE,
        "auth_policy_request_attributes": ATTRIBUTES,
        **policy,
    }
    return dovecot_conf(
        root,
        settings=settings,
        passdbs=[passwd_file(root / "passwd")],
        userdbs=[passwd_file(root / "passwd")],
        services={"auth": listeners({"auth-client": "0666", "auth-userdb": "0666"})},
    )


@dataclass(frozen=True)
class Site:
    """A Dovecot asking a mailwarden node."""

    dovecot: Path  # its root: run/auth-client, dovecot.log
    mailwarden: Path  # its config file
    port: int

    def login(self, user: str, password: str, rip: str) -> int:
        """``doveadm auth test`` through Dovecot: 0 logged in, 77 refused.

        Dovecot answers the client without waiting for its ``report``; with a
        mailwarden behind it, this returns once that report was counted, so the
        next login is decided with it (bounded wait, no sleep)."""
        before = self.reports() if self.port else 0.0
        code = doveadm_auth(
            self.dovecot / "min.conf",
            str(self.dovecot / "run" / "auth-client"),
            user,
            password,
            rip,
        )
        if self.port:
            wait_until(lambda: self.reports() > before, "Dovecot's report of the login")
        return code

    def bans(self) -> list[str]:
        """``mailwarden guard list --json``: the targets banned or protected."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mailwarden",
                "-c",
                str(self.mailwarden),
                "guard",
                "list",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return sorted(entry["target"] for entry in json.loads(done.stdout))

    def _metrics(self) -> dict[tuple[str, str], float]:
        """``mailwarden_policy_requests_total`` by (command, outcome)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/metrics", headers={"Authorization": f"Bearer {METRICS}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            text = resp.read().decode()
        found: dict[tuple[str, str], float] = {}
        for command, outcome, value in re.findall(
            r'^mailwarden_policy_requests_total\{command="(\w+)",outcome="(\w+)"\} (\S+)$',
            text,
            re.MULTILINE,
        ):
            found[command, outcome] = float(value)
        return found

    def metric(self, command: str, outcome: str) -> float:
        return self._metrics().get((command, outcome), 0.0)

    def reports(self) -> float:
        return sum(v for (command, _), v in self._metrics().items() if command == "report")

    def dovecot_logged(self, text: str) -> None:
        """Wait (bounded) for ``text`` in Dovecot's log, which its log process may
        write after doveadm has its answer."""
        log = self.dovecot / "dovecot.log"
        wait_until(lambda: text in log.read_text(), f"{text!r} in Dovecot's log")


def write_passwd(root: Path) -> None:
    # The auth process runs as the dovecot user: it must read the file.
    (root / "passwd").write_text(
        "alice:{PLAIN}secret:5000:5000::/var/mail/alice::\nbob:{PLAIN}bobpw:5001:5001::::\n"
    )
    (root / "passwd").chmod(0o644)
    (root / "min.conf").write_text("ssl = no\n")


async def empty_directory(path: Path) -> None:
    """mailwarden holds no account in this mode; serve still wants its database."""
    directory = await SQLiteDirectory.open(path, create=True, readers=1)
    await directory.close()


@contextlib.contextmanager
def running_mailwarden(root: Path, *, redis: str = "") -> Iterator[tuple[Path, int]]:
    root.mkdir(exist_ok=True)
    asyncio.run(empty_directory(root / "mailwarden.db"))
    (root / "policy.key").write_text(KEY + "\n")
    port = free_port()
    config = root / "mailwarden.toml"
    config.write_text(mailwarden_config(port, redis=redis))
    with running_serve(config, ready=(str(root / "run" / "control"), ("127.0.0.1", port))):
        yield config, port


@contextlib.contextmanager
def running_site(root: Path, *, redis: str = "", **policy: object) -> Iterator[Site]:
    with running_mailwarden(root / "mw", redis=redis) as (config, port):
        dovecot = root / "dovecot"
        dovecot.mkdir()
        dovecot.chmod(0o711)
        write_passwd(dovecot)
        conf = dovecot / "dovecot.conf"
        conf.write_text(dovecot_config(dovecot, f"http://127.0.0.1:{port}{PATH}", **policy))
        with running_dovecot(conf, dovecot):
            yield Site(dovecot, config, port)


@pytest.fixture
def site() -> Iterator[Site]:
    with private_dir("policy") as root, running_site(root) as running:
        yield running


# --------------------------------------------------------------------------- the guard decides


def test_a_brute_force_run_is_refused_by_dovecot_while_the_owner_still_logs_in(
    site: Site,
) -> None:
    assert site.login("alice", "secret", OWNER) == OK
    for i in range(3):
        assert site.login("alice", f"guess{i}", ATTACKER) == REFUSED
    # Banned after three: now even the right password is refused, by the policy,
    # before Dovecot's passdb is asked.
    assert site.login("alice", "secret", ATTACKER) == REFUSED
    assert site.login("bob", "bobpw", ATTACKER) == REFUSED
    site.dovecot_logged("Authentication failure due to policy server refusal")
    assert site.login("alice", "secret", OWNER) == OK
    assert site.login("bob", "bobpw", PHONE) == OK
    assert site.bans() == [f"{ATTACKER}/32"]
    # report fed the counters; our own refusals were reported back and not counted.
    assert site.metric("report", "failure") == 3
    assert site.metric("report", "policy_reject") == 2
    assert site.metric("report", "success") == 3
    assert site.metric("allow", "reject") == 2


def test_a_stale_password_retried_counts_once_through_dovecots_pwhash(site: Site) -> None:
    """A phone retrying its old password: Dovecot's pwhash is the same each time."""
    for _ in range(10):
        assert site.login("alice", "old-password", PHONE) == REFUSED
    assert site.bans() == []
    assert site.metric("report", "failure") == 1
    assert site.metric("report", "repeated") == 9
    assert site.login("alice", "secret", PHONE) == OK


def test_a_success_forgives_the_owners_typos_from_its_known_network(site: Site) -> None:
    """known_network_failures = 2 typos pass from a known network; each success
    makes the allowance whole again (docs/guard.md), so six typos between logins do
    not ban the owner's own address, although three would from anywhere else."""
    assert site.login("alice", "secret", OWNER) == OK
    typo = 0
    for _ in range(3):
        for _ in range(2):
            assert site.login("alice", f"typo{typo}", OWNER) == REFUSED
            typo += 1
        assert site.login("alice", "secret", OWNER) == OK
    assert site.bans() == []
    assert site.metric("report", "failure") + site.metric("report", "repeated") == 6


def test_with_log_only_dovecot_logs_the_refusal_and_lets_the_login_through() -> None:
    with private_dir("policy-log") as root, running_site(root, auth_policy_log_only="yes") as site:
        for i in range(3):
            site.login("alice", f"guess{i}", ATTACKER)
        assert site.bans() == [f"{ATTACKER}/32"]
        assert site.login("alice", "secret", ATTACKER) == OK
        assert site.metric("allow", "reject") >= 1
        site.dovecot_logged("ignored")


# --------------------------------------------------------------------------- fail open or closed


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@contextlib.contextmanager
def dovecot_alone(url: str, **policy: object) -> Iterator[Site]:
    with private_dir("policy-down") as root:
        write_passwd(root)
        conf = root / "dovecot.conf"
        conf.write_text(dovecot_config(root, url, **policy))
        with running_dovecot(conf, root):
            yield Site(root, root / "none.toml", 0)


@pytest.mark.parametrize(("reject_on_fail", "expected"), [("no", OK), ("yes", REFUSED)])
def test_with_mailwarden_stopped_dovecot_fails_open_or_closed_as_configured(
    reject_on_fail: str, expected: int
) -> None:
    url = f"http://127.0.0.1:{free_port()}{PATH}"  # nothing listens there
    with dovecot_alone(url, auth_policy_reject_on_fail=reject_on_fail) as site:
        assert site.login("alice", "secret", OWNER) == expected
        assert site.login("alice", "wrong", OWNER) == REFUSED
        site.dovecot_logged("Policy server HTTP error")


@pytest.mark.parametrize(("reject_on_fail", "expected"), [("no", OK), ("yes", REFUSED)])
def test_a_policy_server_that_never_answers_times_out_open_or_closed(
    reject_on_fail: str, expected: int
) -> None:
    with silent_server() as port:
        url = f"http://127.0.0.1:{port}{PATH}"
        with dovecot_alone(
            url,
            auth_policy_reject_on_fail=reject_on_fail,
            auth_policy_server_timeout_msecs=300,
        ) as site:
            assert site.login("alice", "secret", OWNER) == expected
            site.dovecot_logged("timeout expired")


# --------------------------------------------------------------------------- two nodes


@pytest.mark.skipif(not have_redis(), reason="redis-server is not installed")
def test_two_nodes_sharing_redis_refuse_an_address_banned_through_the_other() -> None:
    with contextlib.ExitStack() as stack:
        redis: RedisServer = stack.enter_context(running_redis())
        root = stack.enter_context(private_dir("policy-nodes"))
        (root / "a").mkdir()
        (root / "b").mkdir()
        a = stack.enter_context(running_site(root / "a", redis=redis.url))
        b = stack.enter_context(running_site(root / "b", redis=redis.url))
        for i in range(3):
            assert a.login("alice", f"guess{i}", ATTACKER) == REFUSED
        assert b.bans() == [f"{ATTACKER}/32"]
        assert b.login("alice", "secret", ATTACKER) == REFUSED
        assert b.login("alice", "secret", OWNER) == OK
        assert b.metric("allow", "reject") == 1
