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

from mailwarden.config import HttpConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.engine import Engine
from mailwarden.frontends.http import OPENAPI_PATH, HttpServer, openapi, start_http
from mailwarden.hashing import Hasher
from mailwarden.model import Account
from tests.helpers import make_config

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
        return await start_http(engine, config, resolve=Path)

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


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(api_url: str) -> None:
    if not Path(ST).exists():
        pytest.skip("schemathesis is not installed (dev dependency)")
    result = subprocess.run(
        [
            ST,
            "run",
            api_url + OPENAPI_PATH,
            "--auth",
            "st:st-secret",
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
    assert selected.group(1) == selected.group(2)
    assert int(selected.group(1)) >= len(openapi()["paths"])
    assert f"Tested: {selected.group(1)}" in result.stdout, result.stdout[-2000:]
