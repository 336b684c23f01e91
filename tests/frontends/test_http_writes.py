"""How the HTTP front end writes a response: one write per response (frontends/httpconn.py).

The connection class the server gives every accepted socket is driven here with a
transport that records each write, so the test sees the writes themselves, which
a socket would merge or split at will.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from mailwarden.auth.engine import Engine
from mailwarden.config import HttpConfig
from mailwarden.frontends.http import HttpServer

CONFIG = HttpConfig(
    enabled=True, listen=("127.0.0.1:0",), auth_username="dovecot", auth_password="apisecret"
)
CREDS = base64.b64encode(b"dovecot:apisecret").decode()


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 9080)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def auth_request(password: str, *, expect: bool = False) -> tuple[bytes, bytes]:
    body = json.dumps({"username": "alice", "password": password, "service": "imap"}).encode()
    head = (
        f"POST /api/v1/auth/json HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {CREDS}\r\n"
        f"{'Expect: 100-continue' + chr(13) + chr(10) if expect else ''}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


async def settle(transport: RecordingTransport, count: int) -> None:
    for _ in range(200):
        if len(transport.writes) >= count:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.01)  # and nothing more follows


async def test_each_keep_alive_response_leaves_in_one_write(engine: Engine) -> None:
    server = HttpServer(engine, CONFIG, resolve=Path)
    protocol = server.protocol_factory()()
    transport = RecordingTransport()
    protocol.connection_made(transport)
    try:
        for n, (password, status) in enumerate((("secret", b"200"), ("bad", b"403")), 1):
            head, body = auth_request(password)
            protocol.data_received(head + body)
            await settle(transport, n)
            assert len(transport.writes) == n
            reply = transport.writes[-1]
            assert reply.startswith(b"HTTP/1.1 " + status)
            head_end = reply.index(b"\r\n\r\n") + 4
            if status == b"403":
                assert reply[head_end:] == b"null"
            assert len(reply) - head_end == int(
                reply.split(b"content-length: ")[1].split(b"\r\n")[0]
            )
    finally:
        protocol.connection_lost(None)


async def test_100_continue_still_goes_out_before_the_body_arrives(engine: Engine) -> None:
    server = HttpServer(engine, CONFIG, resolve=Path)
    protocol = server.protocol_factory()()
    transport = RecordingTransport()
    protocol.connection_made(transport)
    try:
        head, body = auth_request("secret", expect=True)
        protocol.data_received(head)
        await settle(transport, 1)
        assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
        protocol.data_received(body)
        await settle(transport, 2)
        assert len(transport.writes) == 2
        assert transport.writes[1].startswith(b"HTTP/1.1 200 ")
    finally:
        protocol.connection_lost(None)


async def answer_of(engine: Engine, data: bytes) -> tuple[bytes, bool]:
    """The bytes one request on a new connection gets, and whether it was closed."""
    server = HttpServer(engine, CONFIG, resolve=Path)
    protocol = server.protocol_factory()()
    transport = RecordingTransport()
    protocol.connection_made(transport)
    try:
        protocol.data_received(data)
        await settle(transport, 1)
        assert len(transport.writes) == 1
        return transport.writes[0], transport.closed
    finally:
        protocol.connection_lost(None)


def without_session(reply: bytes) -> bytes:
    return re.sub(rb"(session: )[0-9a-f]{24}", rb"\1-", reply)


@pytest.mark.parametrize("password", ["secret", "bad"])
@pytest.mark.parametrize("close", [False, True])
async def test_post_answered_directly_gets_the_bytes_uvicorn_writes_for_get(
    engine: Engine, password: str, close: bool
) -> None:
    # POST /api/v1/auth/json skips the ASGI messages; GET with the same body goes
    # through them and uvicorn's own send.
    head, body = auth_request(password)
    if close:
        head = head.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    direct, direct_closed = await answer_of(engine, head + body)
    through_asgi, asgi_closed = await answer_of(engine, head.replace(b"POST", b"GET", 1) + body)
    assert without_session(direct) == without_session(through_asgi)
    assert (direct_closed, asgi_closed) == (close, close)
    assert (b"connection: close\r\n" in direct) == close
