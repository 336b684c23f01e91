"""Dovecot 2.3 running the Nauthilus seed Lua script against mailwarden's HTTP API.

The script in data/nauthilus-dovecot.lua is the seed text with only its settings
block changed (URL and secret file). A private Dovecot (auth service only) uses it
as passdb and userdb; doveadm asks that Dovecot, which asks us over HTTP with
Basic authentication, ``Expect: 100-continue`` and the JSON body the script builds.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden.config import HttpConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.engine import Engine
from mailwarden.frontends.http import HttpServer, start_http
from mailwarden.hashing import Hasher
from mailwarden.model import Account, AccountStatus
from tests.helpers import make_config
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

CONFIG = """\
protocols =
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_cache_size = 0
auth_verbose = yes
passdb {{
  driver = lua
  args = file={root}/nauthilus.lua blocking=yes
}}
userdb {{
  driver = lua
  args = file={root}/nauthilus.lua blocking=yes
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  user = root
  unix_listener auth-client {{
    mode = 0600
  }}
  unix_listener auth-userdb {{
    mode = 0600
  }}
}}
"""

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

    async def _start(self) -> HttpServer:
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
        return await start_http(engine, HTTP, resolve=Path)

    def start(self) -> tuple[str, int]:
        future = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        self.server = future.result(START_TIMEOUT)
        return self.server.addresses[0]

    def close(self) -> None:
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(START_TIMEOUT)
        self.hasher.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Path]:
    if shutil.which(DOVECOT) is None or not LUA_MODULE.exists():
        pytest.skip("dovecot-core / dovecot-auth-lua is not installed")
    api = HttpInThread()
    try:
        host, port = api.start()
        with private_dir("dovecot-lua") as root:
            secret = root / "http-auth.secret"
            secret.write_text(base64.b64encode(b"dovecot:lua-secret").decode())
            script = SEED.read_text()
            script = script.replace("@SECRET_FILE@", str(secret))
            script = script.replace("@HTTP_URI@", f"http://{host}:{port}/api/v1/auth/json")
            (root / "nauthilus.lua").write_text(script)
            conf = root / "dovecot.conf"
            conf.write_text(CONFIG.format(root=root))
            (root / "min.conf").write_text("ssl = no\n")
            with running_dovecot(conf, root):
                yield root
    finally:
        api.close()


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
