"""schemathesis against the running HTTP API: no 5xx, every response matches the document."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden.accounts.edit import AccountAdmin
from mailwarden.auth.engine import Engine
from mailwarden.config import HttpConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.frontends.http import HttpServer, start_http
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account
from mailwarden.protocols.http_api import OPENAPI_PATH, openapi
from tests.helpers import make_config
from tests.staffing import ADMIN_TOKEN, staff_with_tokens

ST = shutil.which("st") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "st")


@pytest.fixture
def api_url() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="http-openapi")
    thread.start()
    hasher = Hasher(workers=1)

    async def start() -> HttpServer:
        directory = MemoryDirectory()
        await directory.create(Account(uid="alice", password="{PLAIN}secret"))
        engine = Engine(
            directory=directory,
            hasher=hasher,
            config=make_config(passwords={"scheme": "SHA512-CRYPT", "rehash": "never"}),
        )
        config = HttpConfig(
            listen=("127.0.0.1:0",),
            auth_username="st",
            auth_password="st-secret",
            allow_list_accounts=True,
            admin_token="st-admin",
        )
        admin = AccountAdmin(
            directory=directory, hasher=hasher, engine=engine, default_scheme="SHA512-CRYPT"
        )
        staff = await staff_with_tokens(hasher, bootstrap_token=config.admin_token)
        return await start_http(engine, config, resolve=Path, admin=admin, staff=staff)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(20)
    try:
        host, port = server.addresses[0]
        yield f"http://{host}:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(20)
        hasher.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


ADMIN_PATHS = "^/api/v1/(accounts|cache|bruteforce|audit|admins|tokens)"


@pytest.mark.parametrize(
    "credentials",
    [
        # The auth endpoints with the callers' Basic credentials...
        ["--auth", "st:st-secret", "--exclude-path-regex", ADMIN_PATHS],
        # ...and the admin API with its bearer token.
        ["-H", f"Authorization: Bearer {ADMIN_TOKEN}", "--include-path-regex", ADMIN_PATHS],
    ],
    ids=["auth-endpoints", "admin-api"],
)
def test_schemathesis_finds_no_server_errors_and_no_schema_violations(
    api_url: str, credentials: list[str]
) -> None:
    if not Path(ST).exists():
        pytest.skip("schemathesis is not installed (dev dependency)")
    result = subprocess.run(
        [
            ST,
            "run",
            api_url + OPENAPI_PATH,
            *credentials,
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance",
            "--max-examples",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # Guard against a vacuous pass: every operation must have been exercised.
    selected = re.search(r"Selected: (\d+)/(\d+)", result.stdout)
    assert selected is not None, result.stdout[-2000:]
    # schemathesis leaves out the document's own path.
    operations = [
        (path, method)
        for path, ops in openapi()["paths"].items()
        for method in ops
        if method != "parameters" and path != OPENAPI_PATH
    ]
    admin = [op for op in operations if re.match(ADMIN_PATHS, op[0])]
    expected = len(admin) if "--include-path-regex" in credentials else len(operations) - len(admin)
    assert int(selected.group(1)) == expected, result.stdout[-3000:]
    assert f"Tested: {selected.group(1)}" in result.stdout, result.stdout[-2000:]
