"""Dovecot 2.3 running the Nauthilus seed Lua script against mailwarden's HTTP API.

The script in data/nauthilus-dovecot.lua is the seed text with only its settings
block changed (URL and secret file). A private Dovecot (auth service only) uses it
as passdb and userdb, and a copy whose URL ends in ``?mode=master`` as its master
passdb; doveadm asks that Dovecot, which asks us over HTTP (or HTTPS, with the
test's CA in ``ssl_client_ca_file``) with Basic authentication,
``Expect: 100-continue`` and the JSON body the script builds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden.auth.engine import Engine
from mailwarden.config import HttpConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.frontends.http import HttpServer, start_http
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account, AccountStatus
from tests.helpers import make_cert, make_config
from tests.peers.configs import dovecot_conf, listeners
from tests.peers.conftest import (
    DOVECOT,
    START_TIMEOUT,
    accounts,
    private_dir,
    running_dovecot,
)

LUA_MODULE = Path("/usr/lib/dovecot/modules/auth/libauthdb_lua.so")
SEED = Path(__file__).parent / "data" / "nauthilus-dovecot.lua"

pytestmark = pytest.mark.peer


def dovecot_config(root: Path, **settings: str) -> str:
    def lua(script: str, **extra: str) -> dict[str, str]:
        return {"driver": "lua", **extra, "args": f"file={root}/{script} blocking=yes"}

    return dovecot_conf(
        root,
        settings={
            "auth_mechanisms": "plain login",
            "auth_failure_delay": 0,
            "auth_cache_size": 0,
            "auth_verbose": "yes",
            "auth_master_user_separator": "*",
            **settings,
        },
        passdbs=[
            lua("nauthilus-master.lua", master="yes", result_success="continue"),
            lua("nauthilus.lua"),
        ],
        userdbs=[lua("nauthilus.lua")],
        services={"auth": listeners({"auth-client": "0600", "auth-userdb": "0600"}, user="root")},
    )


HTTP = HttpConfig(
    enabled=True,
    listen=("127.0.0.1:0",),
    auth_username="dovecot",
    auth_password="lua-secret",
    allow_list_accounts=True,
    attributes={
        "rnsMSQuota": "quota_bytes",
        "rnsMSMailPath": "mail_location",
        "Proxy-Host": "mail_host",
    },
)


class HttpInThread:
    """mailwarden's HTTP API on an event loop in its own thread (doveadm blocks)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="http-api")
        self._thread.start()
        self.hasher = Hasher(workers=2)
        self.server: HttpServer | None = None

    async def _start(self, http: HttpConfig) -> HttpServer:
        directory = MemoryDirectory()
        for account in accounts():
            await directory.create(account)
        await directory.create(
            Account(
                uid="dora",
                password="{PLAIN}secret",
                status=AccountStatus.DISABLED,
            )
        )
        await directory.create(
            Account(
                uid="erin",
                password="{PLAIN}secret",
                quota_bytes=2048,
                mail_location="maildir:/srv/erin",
                mail_host="mx2.example.com",
            )
        )
        config = make_config(passwords={"scheme": "SHA512-CRYPT", "rehash": "never"})
        engine = Engine(directory=directory, hasher=self.hasher, config=config)
        return await start_http(engine, http, resolve=Path)

    def start(self, http: HttpConfig) -> tuple[str, int]:
        future = asyncio.run_coroutine_threadsafe(self._start(http), self.loop)
        self.server = future.result(START_TIMEOUT)
        return self.server.addresses[0]

    def close(self) -> None:
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(START_TIMEOUT)
        self.hasher.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def lua_dovecot(prefix: str, *, tls: bool = False) -> Iterator[Path]:
    """A private Dovecot running the seed script against our HTTP API (HTTPS if ``tls``)."""
    if shutil.which(DOVECOT) is None or not LUA_MODULE.exists():
        pytest.skip("dovecot-core / dovecot-auth-lua is not installed")
    with private_dir(prefix) as root:
        http, scheme, conf_extra = HTTP, "http", {}
        if tls:
            pem = make_cert(root)
            http = dataclasses.replace(HTTP, tls_cert=str(pem.cert), tls_key=str(pem.key))
            # dovecot.http clients take their CA from Dovecot's ssl_client_* settings.
            scheme, conf_extra = "https", {"ssl_client_ca_file": str(pem.cert)}
        api = HttpInThread()
        try:
            host, port = api.start(http)
            secret = root / "http-auth.secret"
            secret.write_text(base64.b64encode(b"dovecot:lua-secret").decode())
            script = SEED.read_text()
            script = script.replace("@SECRET_FILE@", str(secret))
            url = f"{scheme}://{host}:{port}/api/v1/auth/json"
            (root / "nauthilus.lua").write_text(script.replace("@HTTP_URI@", url))
            # The master passdb's copy differs in its URL only: ?mode=master.
            master = script.replace("@HTTP_URI@", url + "?mode=master")
            (root / "nauthilus-master.lua").write_text(master)
            conf = root / "dovecot.conf"
            conf.write_text(dovecot_config(root, **conf_extra))
            (root / "min.conf").write_text("ssl = no\n")
            with running_dovecot(conf, root):
                yield root
        finally:
            api.close()


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Path]:
    with lua_dovecot("dovecot-lua") as root:
        yield root


def doveadm(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["doveadm", "-c", str(root / "min.conf"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def auth_test(root: Path, name: str, password: str) -> subprocess.CompletedProcess[str]:
    return doveadm(root, "auth", "test", "-a", str(root / "run" / "auth-client"), name, password)


def test_doveadm_auth_test_succeeds_through_the_seed_script(dovecot: Path) -> None:
    result = auth_test(dovecot, "alice", "secret")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "auth succeeded" in result.stdout
    assert "user=alice" in result.stdout
    log = (dovecot / "dovecot.log").read_text()
    assert "auth_status_code=200 auth_status_message=<OK>" in log


@pytest.mark.parametrize(("name", "password"), [("alice", "wrong"), ("nobody", "secret")])
def test_doveadm_auth_test_fails_for_a_wrong_password_or_unknown_user(
    dovecot: Path, name: str, password: str
) -> None:
    result = auth_test(dovecot, name, password)
    assert result.returncode == 77, result.stdout + result.stderr
    assert "auth failed" in result.stdout + result.stderr


def test_a_disabled_account_is_reported_with_the_disabled_text(dovecot: Path) -> None:
    result = auth_test(dovecot, "dora", "secret")
    assert result.returncode == 77, result.stdout + result.stderr
    # The script turns the disabled text into USER_DISABLED; Dovecot logs the text.
    assert "code=user_disabled" in result.stdout
    log = (dovecot / "dovecot.log").read_text()
    assert "auth_status_code=403 auth_status_message=<Account not enabled>" in log


def test_doveadm_user_returns_fields_published_through_attributes(dovecot: Path) -> None:
    result = doveadm(dovecot, "user", "-a", str(dovecot / "run" / "auth-userdb"), "erin")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mail\tmaildir:/srv/erin\n" in result.stdout
    assert "quota_rule\t*:bytes=2048\n" in result.stdout


def test_doveadm_user_star_lists_the_accounts_through_list_accounts(dovecot: Path) -> None:
    result = doveadm(dovecot, "user", "-a", str(dovecot / "run" / "auth-userdb"), "*")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = set(result.stdout.split())
    assert {"alice", "bob", "dora", "erin"} <= listed


# --------------------------------------------------------------------------- master users
#
# Dovecot splits "alice*admin" and asks the master passdb (the script's copy with
# ?mode=master) for admin's password. With result_success = continue it then asks
# the normal passdb as alice with auth_user=admin: that is the script's master
# branch, which skips the password and does a ?mode=no-auth lookup of alice.


def log_after(root: Path, offset: int) -> str:
    return (root / "dovecot.log").read_text()[offset:]


def log_with(root: Path, offset: int, *lines: str, timeout: float = 10.0) -> str:
    """The log after ``offset`` once it holds every one of ``lines``: Dovecot's log
    process writes a request's lines after the reply has reached doveadm, so they
    may lag a little behind it (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        log = log_after(root, offset)
        if all(line in log for line in lines) or time.monotonic() > deadline:
            return log
        time.sleep(0.02)


def log_size(root: Path) -> int:
    return len((root / "dovecot.log").read_text())


@pytest.mark.parametrize(
    "login",
    [("alice*admin", "masterpw"), ("-M", "admin", "alice", "masterpw")],
    ids=["separator", "authzid"],
)
def test_a_master_user_logs_in_as_the_target_through_the_scripts_master_branch(
    dovecot: Path, login: tuple[str, ...]
) -> None:
    offset = log_size(dovecot)
    result = doveadm(dovecot, "auth", "test", "-a", str(dovecot / "run" / "auth-client"), *login)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "auth succeeded" in result.stdout
    assert "user=alice\n" in result.stdout
    assert "auth_user=admin\n" in result.stdout
    wanted = (
        "request=passdb auth_status_code=200",
        "Master user logging in as alice",
        "request=userdb auth_status_code=200",
    )
    log = log_with(dovecot, offset, *wanted)
    # The master passdb checked admin's password, then the branch looked alice up.
    passdb, switch, userdb = (log.index(line) for line in wanted)
    assert passdb < switch < userdb, log


def test_a_wrong_master_password_fails(dovecot: Path) -> None:
    offset = log_size(dovecot)
    result = auth_test(dovecot, "alice*admin", "wrong")
    assert result.returncode == 77, result.stdout + result.stderr
    assert "auth failed" in result.stdout
    log = log_with(dovecot, offset, "auth_status_message=<Invalid login or password>")
    assert "auth_status_message=<Invalid login or password>" in log
    assert "Master user logging in" not in log


def test_a_non_master_account_cannot_act_as_master(
    dovecot: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # bob's password is right (he logs in as himself) but he lacks the master flag.
    assert auth_test(dovecot, "bob", "bobpw").returncode == 0
    offset = log_size(dovecot)
    with caplog.at_level("INFO", logger="mailwarden.auth"):
        result = auth_test(dovecot, "alice*bob", "bobpw")
    assert result.returncode == 77, result.stdout + result.stderr
    assert "auth failed" in result.stdout
    denied = "auth_status_code=403 auth_status_message=<Invalid login or password>"
    log = log_with(dovecot, offset, denied)
    assert denied in log
    assert "Master user logging in" not in log
    # The denial is for the missing master flag, not a wrong password.
    assert any(
        "user='bob'" in r.message and "result=denied authz" in r.message for r in caplog.records
    )


def test_a_master_user_cannot_act_as_an_unknown_account(dovecot: Path) -> None:
    result = auth_test(dovecot, "nobody*admin", "masterpw")
    assert result.returncode == 77, result.stdout + result.stderr
    assert "code=authz_fail" in result.stdout


def test_the_scripts_master_branch_checks_the_target_only_by_a_userdb_lookup(
    dovecot: Path,
) -> None:
    # Documented in docs/http-api.md: the no-auth lookup answers for a disabled
    # account (delivery needs it), so the script lets a master in as dora.
    result = auth_test(dovecot, "dora*admin", "masterpw")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "user=dora\n" in result.stdout


# --------------------------------------------------------------------------- TLS


def test_the_seed_script_talks_https_to_a_tls_listener() -> None:
    with lua_dovecot("dovecot-lua-tls", tls=True) as root:
        good = auth_test(root, "alice", "secret")
        bad = auth_test(root, "alice", "wrong")
        log = (root / "dovecot.log").read_text()
    assert good.returncode == 0, good.stdout + good.stderr + log
    assert "user=alice" in good.stdout
    assert bad.returncode == 77, bad.stdout + bad.stderr
    assert "auth_status_code=200 auth_status_message=<OK>" in log
    assert "auth_status_code=403 auth_status_message=<Invalid login or password>" in log
