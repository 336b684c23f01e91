"""The saslauthd protocol (bytes in, requests out), and our socket driven by testsaslauthd."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.auth.engine import Engine
from mailwarden.config import SaslauthdConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.errors import ProtocolError
from mailwarden.frontends.saslauthd import start_saslauthd
from mailwarden.protocols import saslauthd as proto
from tests.classic.conftest import (
    APP_PASSWORD,
    EXPIRED_APP_PASSWORD,
    SMTP_APP_PASSWORD,
    UNKNOWN_APP_PASSWORD,
    serving_saslauthd,
)
from tests.conftest import EngineFactory
from tests.helpers import FAST

REQUEST = proto.encode_request(b"alice", b"secret", b"smtp", b"example.com")


# --------------------------------------------------------------------------- protocol


def test_a_whole_request_parses() -> None:
    reader = proto.RequestReader()
    reader.receive_data(REQUEST)
    request = reader.next_event()
    assert request is not None
    assert (request.login, request.password.value, request.service, request.realm) == (
        "alice",
        b"secret",
        "smtp",
        "example.com",
    )


def test_a_request_fed_byte_by_byte_completes_only_at_the_last_byte() -> None:
    reader = proto.RequestReader()
    for i, byte in enumerate(REQUEST):
        assert reader.next_event() is None, i
        reader.receive_data(bytes([byte]))
    assert reader.next_event() is not None


def test_trailing_data_is_a_protocol_error() -> None:
    reader = proto.RequestReader()
    with pytest.raises(ProtocolError):
        reader.receive_data(REQUEST + b"\0")


def test_an_oversized_field_is_refused_before_it_is_sent() -> None:
    reader = proto.RequestReader(max_field=16)
    with pytest.raises(ProtocolError, match="longer than 16"):
        reader.receive_data(b"\x00\x05alice\x04\x00")


def test_replies_are_counted_strings() -> None:
    assert proto.reply_ok() == b"\x00\x02OK"
    assert proto.reply_no("authentication failed") == b"\x00\x18NO authentication failed"


@given(st.binary(max_size=300))
def test_any_input_parses_or_raises_protocol_error(data: bytes) -> None:
    reader = proto.RequestReader(max_field=64)
    try:
        reader.receive_data(data)
        reader.next_event()
    except ProtocolError:
        pass


# --------------------------------------------------------------------------- daemon

TESTSASLAUTHD = shutil.which("testsaslauthd") or "/usr/sbin/testsaslauthd"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Path]:
    """``mailwarden serve`` with only the saslauthd socket; yields the socket path."""
    with serving_saslauthd(tmp_path) as sock:
        yield sock


def run_testsaslauthd(sock: Path, *args: str) -> str:
    result = subprocess.run(
        [TESTSASLAUTHD, "-f", str(sock), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout.strip()


needs_sasl2_bin = pytest.mark.skipif(
    not os.path.exists(TESTSASLAUTHD), reason="testsaslauthd (sasl2-bin) is not installed"
)


@needs_sasl2_bin
@pytest.mark.parametrize("password", ["secret", APP_PASSWORD])
def test_testsaslauthd_gets_ok_for_a_right_password(daemon: Path, password: str) -> None:
    assert run_testsaslauthd(daemon, "-u", "alice", "-p", password) == '0: OK "Success."'


@needs_sasl2_bin
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
def test_testsaslauthd_gets_no_for_a_wrong_password_or_unknown_user(
    daemon: Path, user: str, password: str
) -> None:
    assert run_testsaslauthd(daemon, "-u", user, "-p", password) == '0: NO "authentication failed"'


@needs_sasl2_bin
def test_the_service_switch_is_checked_for_the_service_named(daemon: Path) -> None:
    assert run_testsaslauthd(daemon, "-u", "carol", "-p", "carolpw", "-s", "imap").startswith(
        "0: OK"
    )
    assert run_testsaslauthd(daemon, "-u", "carol", "-p", "carolpw", "-s", "pop3").startswith(
        "0: NO"
    )


@needs_sasl2_bin
def test_an_app_password_opens_only_the_services_it_names(daemon: Path) -> None:
    ok = run_testsaslauthd(daemon, "-u", "alice", "-p", SMTP_APP_PASSWORD, "-s", "smtp")
    assert ok == '0: OK "Success."'
    refused = run_testsaslauthd(daemon, "-u", "alice", "-p", SMTP_APP_PASSWORD, "-s", "imap")
    assert refused == '0: NO "authentication failed"'


@needs_sasl2_bin
def test_a_realm_is_appended_to_the_login(daemon: Path) -> None:
    # No account is called alice@example.com: the appended realm makes the login unknown.
    reply = run_testsaslauthd(daemon, "-u", "alice", "-p", "secret", "-r", "example.com")
    assert reply == '0: NO "authentication failed"'


def test_many_connections_at_once_each_get_their_answer(daemon: Path) -> None:
    async def one(password: bytes) -> bytes:
        reader, writer = await asyncio.open_unix_connection(str(daemon))
        writer.write(proto.encode_request(b"alice", password, b"smtp", b""))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        return data

    async def many() -> list[bytes]:
        return await asyncio.gather(*(one(b"secret" if i % 2 else b"x") for i in range(40)))

    replies = asyncio.run(many())
    assert replies.count(proto.reply_ok()) == 20
    assert replies.count(proto.reply_no("authentication failed")) == 20


def test_a_malformed_request_closes_only_its_connection(daemon: Path) -> None:
    async def go() -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_unix_connection(str(daemon))
        writer.write(b"\xff\xffjunk")
        await writer.drain()
        bad = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        reader, writer = await asyncio.open_unix_connection(str(daemon))
        writer.write(REQUEST.replace(b"\x0bexample.com", b"\x00"))
        await writer.drain()
        good = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        return bad, good

    bad, good = asyncio.run(go())
    assert bad == b""
    assert good == proto.reply_ok()


async def test_a_refusal_is_delayed_and_an_accept_is_not(
    tmp_path: Path, engine: Engine, directory: MemoryDirectory
) -> None:
    """saslauthd.failure_delay, on a real socket: wrong password late, right one at once."""
    config = SaslauthdConfig(socket=str(tmp_path / "mux"), failure_delay=0.4)
    server = await start_saslauthd(engine, config, resolve=Path)

    async def ask(password: bytes) -> tuple[bytes, float]:
        started = time.monotonic()
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "mux"))
        fields = (b"alice", password, b"imap", b"")
        writer.write(b"".join(len(f).to_bytes(2, "big") + f for f in fields))
        reply = await reader.read()
        writer.close()
        return reply, time.monotonic() - started

    try:
        ok, fast = await ask(b"secret")
        no, slow = await ask(b"wrong")
    finally:
        await server.close()
    assert ok.endswith(b"OK") and no[2:4] == b"NO"
    assert slow >= 0.4 * 0.9
    assert fast < 0.4 * 0.9


async def test_saslauthd_failures_count_per_account_and_as_the_stand_in_address(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    """saslauthd carries no client address: its failures used to count nowhere."""
    guard = dataclasses.replace(FAST.guard, account_threshold=5, account_delay=0.01)
    engine = make_engine(dataclasses.replace(FAST, guard=guard))
    config = SaslauthdConfig(socket=str(tmp_path / "mux"), failure_delay=0)
    server = await start_saslauthd(engine, config, resolve=Path)

    async def ask(password: bytes) -> bytes:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "mux"))
        fields = (b"alice", password, b"imap", b"")
        writer.write(b"".join(len(f).to_bytes(2, "big") + f for f in fields))
        reply = await reader.read()
        writer.close()
        return reply

    try:
        for i in range(5):
            assert (await ask(f"guess{i}".encode()))[2:4] == b"NO"
        assert {b.target for b in await engine.guard.bans()} == {"account:alice"}
        for i in range(5, 10):  # the default rule: 10 a minute from one address
            await ask(f"guess{i}".encode())
        assert "0.0.0.0/32" in {b.target for b in await engine.guard.bans()}
        assert (await ask(b"secret"))[2:4] == b"NO"
    finally:
        await server.close()
