"""The one blocking client of the daemon's control socket (mailwarden/client.py),
against the daemon's own control socket front end (frontends/control.py).

The client blocks, so each test runs it in a thread while the front end serves on
the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mailwarden.auth.engine import Engine
from mailwarden.client import DaemonClient, ask_daemon
from mailwarden.errors import DaemonClosed, ProtocolError, StoreUnavailable
from mailwarden.frontends.control import ControlServer, start_control
from mailwarden.guard.stores.control import ControlStore
from mailwarden.mailgate.gateway import notify_daemon
from tests.helpers import attempt


@pytest_asyncio.fixture
async def daemon(engine: Engine, tmp_path: Path) -> AsyncIterator[ControlServer]:
    async def status() -> dict[str, Any]:
        return {"listeners": ["control"]}

    server = await start_control(engine, tmp_path / "control", mode=0o600, status=status)
    yield server
    await server.close()


def socket_of(server: ControlServer) -> Path:
    assert server.path is not None
    return server.path


async def test_several_requests_share_one_connection_and_get_their_results(
    daemon: ControlServer,
) -> None:
    def two_requests() -> tuple[Any, Any, int]:
        with DaemonClient(socket_of(daemon), timeout=5) as client:
            first = client.ask("ping")
            second = client.ask("status")
            return first, second, daemon.gate.active

    first, second, connections = await asyncio.to_thread(two_requests)
    assert (first, second, connections) == ("pong", {"listeners": ["control"]}, 1)


async def test_a_refused_request_is_a_protocol_error_with_the_daemons_message(
    daemon: ControlServer,
) -> None:
    with pytest.raises(ProtocolError, match="unknown op 'nope'"):
        await asyncio.to_thread(ask_daemon, socket_of(daemon), "nope", timeout=5)


async def test_no_daemon_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await asyncio.to_thread(ask_daemon, tmp_path / "control", "ping", timeout=5)


async def test_a_daemon_that_hangs_up_before_replying_is_daemon_closed(tmp_path: Path) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.close()

    path = tmp_path / "control"
    server = await asyncio.start_unix_server(hang_up, path=str(path))
    try:
        with pytest.raises(DaemonClosed):
            await asyncio.to_thread(ask_daemon, path, "ping", timeout=5)
    finally:
        server.close()
        await server.wait_closed()


async def test_the_gateway_tells_the_daemon_and_knows_when_it_could_not(
    daemon: ControlServer, engine: Engine, tmp_path: Path
) -> None:
    await engine.authenticate(attempt("nobody", "wrong"))
    told = await asyncio.to_thread(notify_daemon, str(socket_of(daemon)), ["nobody"])
    untold = await asyncio.to_thread(notify_daemon, str(tmp_path / "absent"), ["nobody"])
    assert (told, untold) == (True, False)


async def test_a_one_shot_commands_guard_store_is_the_daemons(
    daemon: ControlServer, engine: Engine
) -> None:
    path = socket_of(daemon)
    store = ControlStore(path, timeout=5)
    try:
        await store.ban("account:alice", "account", 60.0, 1000.0)
        assert await store.banned(["account:alice"], 1001.0) == "account:alice"
        # The daemon's own guard holds the ban made over the socket.
        assert "account:alice" in {b.target for b in await engine.guard.store.bans(1001.0)}
    finally:
        await store.close()
    await daemon.close()
    gone = ControlStore(path, timeout=5)
    with pytest.raises(StoreUnavailable):
        await gone.banned(["account:alice"], 1001.0)
