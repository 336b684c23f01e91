"""Bounds on what clients can make the daemon hold (docs/operations.md, "Bounds").

Connection caps per listener, idle and header timeouts, the process-wide cap on
Dovecot requests in flight, bounded metric labels and the bounded address memo.
Every check counts (connections answered or closed, labels, entries); timeouts are
set small and only "closed eventually, within a generous bound" is asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mailwarden.auth.engine import Engine
from mailwarden.config import GuardConfig, HttpConfig, SaslauthdConfig
from mailwarden.frontends.connlimit import FD_RESERVE, check_fd_budget, raise_fd_limit
from mailwarden.frontends.control import ControlServer
from mailwarden.frontends.dovecot import Role
from mailwarden.frontends.http import HttpServer, start_http
from mailwarden.frontends.saslauthd import start_saslauthd
from mailwarden.guard.policy import SOURCE_CACHE_SIZE, Guard
from mailwarden.metrics import Metrics
from mailwarden.model import Denied, DenyReason
from mailwarden.protocols import saslauthd as sasl_proto
from tests.frontends import test_dovecot_frontend
from tests.frontends.test_dovecot_frontend import Peer, Serve
from tests.frontends.test_http_frontend import CONFIG, read_response
from tests.helpers import attempt

# The Dovecot front end's fixtures: ``dovecot(**settings)`` starts one, and the
# accounts its tests log in with (autouse).
dovecot = test_dovecot_frontend.serve
dovecot_accounts = test_dovecot_frontend.accounts

BOUND = 10.0  # seconds: generous, for "eventually"


async def eventually(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while not check():
        assert loop.time() < deadline, f"not within {BOUND} s: {what}"
        await asyncio.sleep(0.01)


async def closed_without_a_word(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed the connection before sending anything."""
    with contextlib.suppress(ConnectionResetError):
        return await asyncio.wait_for(reader.read(65536), BOUND) == b""
    return True


# --------------------------------------------------------------------------- Dovecot


async def test_a_flood_beyond_one_listeners_cap_is_closed_while_the_others_answer(
    dovecot: Serve,
) -> None:
    server = await dovecot(max_connections=5)
    flood = [await Peer.client(server.address(Role.CLIENT)) for _ in range(5)]
    extra = await Peer.connect(server.address(Role.CLIENT))
    assert await closed_without_a_word(extra.reader)

    # The other listeners have their own places: the userdb socket answers...
    userdb = await Peer.master(server.address(Role.USERDB))
    userdb.send("USER\t1\talice\tservice=imap")
    assert (await userdb.line()).startswith("USER\t1\talice\t")
    # ...and so does the login socket, with the client protocol.
    login = await Peer.client(server.address(Role.LOGIN), cpid=4242)
    login.send("AUTH\t1\tPLAIN\tservice=imap\tresp=" + "AGJvYgBib2Jwdw==")
    assert (await login.line()).startswith("OK\t1\tuser=bob")

    # A place given back is a place for the next connection.
    await flood.pop().close()
    await eventually(
        lambda: server.gates[f"dovecot client {server.address(Role.CLIENT)}"].active == 4,
        "the closed connection gave its place back",
    )
    again = await Peer.client(server.address(Role.CLIENT))
    assert again.value("SPID")
    for peer in (*flood, again, userdb, login):
        await peer.close()


async def test_a_silent_connection_is_closed_after_the_idle_timeout(dovecot: Serve) -> None:
    server = await dovecot(idle_timeout=0.2)
    peer = await Peer.client(server.address(Role.CLIENT))
    assert await peer.wait_closed_by_server() == b""


async def test_a_request_waiting_for_the_client_is_not_cut_by_the_idle_timeout(
    dovecot: Serve,
) -> None:
    server = await dovecot(idle_timeout=0.1)
    peer = await Peer.client(server.address(Role.CLIENT))
    peer.send("AUTH\t1\tLOGIN\tservice=imap")
    assert (await peer.line()).startswith("CONT\t1\t")
    await asyncio.sleep(0.5)  # longer than the idle timeout: the request keeps it open
    peer.send("CONT\t1\tYm9i")  # "bob"
    assert (await peer.line()).startswith("CONT\t1\t")
    peer.send("CONT\t1\tYm9icHc=")  # "bobpw"
    assert (await peer.line()).startswith("OK\t1\tuser=bob")
    await peer.close()


async def test_requests_beyond_the_process_wide_cap_get_a_temporary_failure(
    dovecot: Serve,
) -> None:
    server = await dovecot(max_pending_total=3)
    first = await Peer.client(server.address(Role.CLIENT))
    second = await Peer.client(server.address(Role.CLIENT))
    # LOGIN without an initial response waits for the client: each holds a place.
    first.send("AUTH\t1\tLOGIN\tservice=imap", "AUTH\t2\tLOGIN\tservice=imap")
    assert [(await first.line()).split("\t")[:2] for _ in range(2)] == [
        ["CONT", "1"],
        ["CONT", "2"],
    ]
    second.send("AUTH\t1\tLOGIN\tservice=imap", "AUTH\t2\tLOGIN\tservice=imap")
    replies = sorted([await second.line(), await second.line()])
    assert replies[0].startswith("CONT\t1\t")
    assert replies[1] == "FAIL\t2\tcode=temp_fail"
    # The master side shares the cap.
    userdb = await Peer.master(server.address(Role.USERDB))
    userdb.send("USER\t7\talice\tservice=imap")
    assert await userdb.line() == "FAIL\t7"

    # An answered request gives its place back.
    first.send("CONT\t1\tYm9i")
    assert (await first.line()).startswith("CONT\t1\t")
    first.send("CONT\t1\tYm9icHc=")
    assert (await first.line()).startswith("OK\t1\tuser=bob")
    userdb.send("USER\t8\talice\tservice=imap")
    assert (await userdb.line()).startswith("USER\t8\talice\t")
    # A closed connection gives back every place it held.
    await first.close()
    await second.close()
    await eventually(lambda: server.state.requests.active == 0, "every place was given back")
    await userdb.close()


# --------------------------------------------------------------------------- saslauthd


async def test_saslauthd_closes_connections_beyond_its_cap(tmp_path: Path, engine: Engine) -> None:
    config = SaslauthdConfig(socket=str(tmp_path / "mux"), max_connections=2, failure_delay=0)
    server = await start_saslauthd(engine, config, resolve=Path)
    try:
        held = [await asyncio.open_unix_connection(str(tmp_path / "mux")) for _ in range(2)]
        await eventually(lambda: server.gate.active == 2, "two connections admitted")
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "mux"))
        assert await closed_without_a_word(reader)
        writer.close()

        _, first = held.pop()
        first.close()
        await eventually(lambda: server.gate.active == 1, "a place given back")
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "mux"))
        writer.write(sasl_proto.encode_request(b"alice", b"secret", b"imap", b""))
        assert (await asyncio.wait_for(reader.read(), BOUND)).endswith(b"OK")
        writer.close()
        for _, w in held:
            w.close()
    finally:
        await server.close()


# --------------------------------------------------------------------------- control


async def test_the_control_socket_caps_connections_and_closes_silent_ones(
    tmp_path: Path, engine: Engine
) -> None:
    async def status() -> dict[str, Any]:
        return {}

    path = tmp_path / "control"
    server = ControlServer(engine, status, max_connections=2, idle_timeout=0.2)
    await server.listen(path, 0o600)
    try:
        held = [await asyncio.open_unix_connection(str(path)) for _ in range(2)]
        await eventually(lambda: server.gate.active == 2, "two connections admitted")
        reader, writer = await asyncio.open_unix_connection(str(path))
        assert await closed_without_a_word(reader)
        writer.close()
        # The two held connections say nothing: both are closed, and their places
        # serve the next ones.
        for r, w in held:
            assert await asyncio.wait_for(r.read(), BOUND) == b""
            w.close()
        await eventually(lambda: server.gate.active == 0, "the places given back")
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b'{"op": "ping"}\n')
        assert json.loads(await asyncio.wait_for(reader.readline(), BOUND))["result"] == "pong"
        writer.close()
    finally:
        await server.close()


# --------------------------------------------------------------------------- HTTP


async def open_http(server: HttpServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.addresses[0]
    return await asyncio.open_connection(host, port)


async def test_http_closes_connections_beyond_its_cap(engine: Engine) -> None:
    config = dataclasses.replace(CONFIG, max_connections=3)
    server = await start_http(engine, config, resolve=Path)
    try:
        held = [await open_http(server) for _ in range(3)]
        await eventually(lambda: server.gate.active == 3, "three connections admitted")
        reader, writer = await open_http(server)
        assert await closed_without_a_word(reader)
        writer.close()
        # The connections already open are served.
        r, w = held[0]
        w.write(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(r)).status == 200
        for _, w in held:
            w.close()
    finally:
        await server.close()


async def test_http_times_out_a_silent_client_and_one_that_sends_its_head_slowly(
    engine: Engine,
) -> None:
    config = dataclasses.replace(CONFIG, header_timeout=0.2)
    server = await start_http(engine, config, resolve=Path)
    try:
        silent_reader, silent = await open_http(server)
        slow_reader, slow = await open_http(server)
        slow.write(b"GET /ping HTTP/1.1\r\nHost: x\r\n")  # ...and never the blank line
        for reader in (silent_reader, slow_reader):
            assert (await read_response(reader)).status == 408
            assert await asyncio.wait_for(reader.read(), BOUND) == b""
        # A keep-alive connection after a complete request gets the timeout again
        # for the next request's head.
        reader, writer = await open_http(server)
        writer.write(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(reader)).status == 200
        writer.write(b"GET /ping HTTP/1.1\r\n")
        assert (await read_response(reader)).status == 408
        for w in (silent, slow, writer):
            w.close()
    finally:
        await server.close()


# --------------------------------------------------------------------------- memory


def test_metric_labels_take_only_known_services_and_mechanisms() -> None:
    metrics = Metrics(services=("imap", "smtp"))
    denied = Denied(reason=DenyReason.CREDENTIALS)
    for i in range(500):
        metrics.auth(attempt("u", service=f"{i:04d}" + "x" * 8192), denied, 0.001)
        metrics.auth(attempt("u", service="IMAP", mechanism=f"M{i}"), denied, 0.001)
    metrics.auth(attempt("u", service="smtp"), denied, 0.001)
    labels = {
        (s.labels["service"], s.labels["mechanism"]): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        if family.name == "mailwarden_auth_attempts"
        for s in family.samples
        if s.name == "mailwarden_auth_attempts_total"
    }
    assert labels == {("other", "PLAIN"): 500, ("imap", "other"): 500, ("smtp", "PLAIN"): 1}


def test_metric_services_default_to_the_configs() -> None:
    metrics = Metrics()
    metrics.auth(attempt("u", service="pop3"), Denied(reason=DenyReason.CREDENTIALS), 0.001)
    assert 'service="pop3"' in metrics.render().decode()
    assert "pop3" in HttpConfig().metrics_services


def test_the_address_memo_keeps_no_junk_and_stays_bounded() -> None:
    guard = Guard(GuardConfig())
    for i in range(2000):
        # Junk is counted as the stand-in address (docs/guard.md), and not remembered.
        source = guard.source(f"{i}" + "x" * 8192)
        assert source is not None and source.ip == GuardConfig().stand_in_address
    assert len(guard._sources) == 0  # over-long text is never remembered
    for i in range(SOURCE_CACHE_SIZE + 10):
        guard.source(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(guard._sources) <= SOURCE_CACHE_SIZE
    # A real address is still remembered and answered.
    first = guard.source("192.0.2.7")
    assert first is not None and guard.source("192.0.2.7") is first


# --------------------------------------------------------------------------- fd budget


def test_caps_beyond_the_open_file_limit_are_reported() -> None:
    assert check_fd_budget({"a": 100, "b": 100}, 200 + FD_RESERVE)
    assert not check_fd_budget({"a": 100, "b": 101}, 200 + FD_RESERVE)


def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(before[0], 512), before[1]))
        assert raise_fd_limit() == before[1]
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (before[1], before[1])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)
