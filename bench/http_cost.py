"""The CPU cost of one ``POST /api/v1/auth/json`` request, without the sockets.

The HTTP twin of bench/request_cost.py. ``bench/compare --scenarios http`` measures
the whole daemon under a load generator that shares the two cores, and its figure
swings from run to run. This bench takes the kernel and the generator out: the
daemon's own HTTP front end (:class:`~mailwarden.frontends.http.HttpServer`, the
connection class it serves every accepted socket with) runs on the daemon's event
loop (uvloop) with the daemon's engine (SQLite directory with its login cache,
guard on, metrics on, log level warning, as in ``bench/compare``). ``--clients``
keep-alive connections each get a fake transport: a request is fed to the
connection, the reply it writes is read, and the next request follows on the next
loop iteration, as a client on the same machine would send it. The bench prints
the process CPU time per request: the best and the median of ``--rounds`` rounds
(the best is the steadiest figure on a shared machine), and the same for the
driver alone (a connection that answers at once without any work), which is
part of the figure and can be taken off it.

Every request is ``{PLAIN}`` and right (``--wrong``: a wrong password), for one of
``--accounts`` accounts in turn; a warm-up logs every account in once, so the
measured requests hit the verified-login cache as the realistic repeat logins do.

``--profile FILE`` writes a cProfile of the measured rounds (read it with
``python -m pstats FILE``).

Usage: ``python bench/http_cost.py [--accounts N] [--clients C] [--requests R]
[--rounds K] [--wrong] [--profile FILE]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from mailwarden.app import running_app, setup_logging
from mailwarden.config import loads
from mailwarden.frontends.http import HttpServer
from mailwarden.loop import run_loop
from mailwarden.metrics import Metrics
from mailwarden.model import Account

CONFIG = """\
[directory]
path = "{root}/accounts.db"

[cache]
enabled = true

[passwords]
scheme = "PLAIN"
rehash = "never"

[log]
level = "warning"

[http]
enabled = true
listen = ["127.0.0.1:9080"]
auth_username = "bench"
auth_password = "bench"

[guard]
allow_networks = []
"""

CREDS = base64.b64encode(b"bench:bench")
_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


class FakeTransport(asyncio.Transport):
    """What an HTTP connection uses of its transport; hands every write to ``sink``."""

    def __init__(self, sink: Callable[[bytes], None], port: int) -> None:
        super().__init__()
        self._sink = sink
        self._closing = False
        self._extra = {"peername": ("127.0.0.1", port), "sockname": ("127.0.0.1", 9080)}

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._sink(bytes(data))

    def writelines(self, lines: Any) -> None:
        self._sink(b"".join(lines))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


class Client:
    """One keep-alive connection: sends the next request once the last reply is whole."""

    def __init__(self, driver: Driver, protocol: asyncio.Protocol, port: int) -> None:
        self.driver = driver
        self.protocol = protocol
        self.buffer = b""
        self.transport = FakeTransport(self.received, port)
        protocol.connection_made(self.transport)

    def received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            found = _LENGTH.search(buffer, 0, end + 2)
            total = end + 4 + (int(found.group(1)) if found else 0)
            if len(buffer) < total:
                break
            if not buffer.startswith(self.driver.expect):
                raise SystemExit(f"unexpected reply: {buffer[:total]!r}")
            buffer = buffer[total:]
            self.driver.answered(self)
        self.buffer = buffer

    def send(self) -> None:
        self.protocol.data_received(self.driver.next_request())


class Driver:
    """Feeds ``clients`` connections until ``wanted`` replies came back."""

    def __init__(self, requests: list[bytes], *, expect: bytes) -> None:
        self.requests = requests
        self.expect = expect
        self.sent = 0
        self.replies = 0
        self.wanted = 0
        self.done = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def next_request(self) -> bytes:
        request = self.requests[self.sent % len(self.requests)]
        self.sent += 1
        return request

    def answered(self, client: Client) -> None:
        self.replies += 1
        if self.sent < self.wanted:
            self.loop.call_soon(client.send)
        elif self.replies >= self.wanted:
            self.done.set()

    async def round(self, clients: list[Client], requests: int) -> float:
        started = time.process_time()
        self.wanted = self.sent + requests
        self.done.clear()
        for client in clients:
            if self.sent < self.wanted:
                self.loop.call_soon(client.send)
        await self.done.wait()
        return (time.process_time() - started) / requests


class Echo(asyncio.Protocol):
    """The driver alone: every request answered at once with a fixed reply."""

    REPLY = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(self.REPLY)


def accounts(count: int) -> Iterator[Account]:
    for i in range(count):
        yield Account(uid=f"user{i}", password=f"{{PLAIN}}pw{i}", mail_location="maildir:~/M")


def request(i: int, *, wrong: bool) -> bytes:
    """The seed script's request (a ``bench/compare`` client's, headers and body)."""
    body = json.dumps(
        {
            "username": f"user{i}",
            "password": f"x{i}" if wrong else f"pw{i}",
            "client_ip": f"10.{(i >> 8) & 255}.{i & 255}.1",
            "service": "imap",
        }
    ).encode()
    return (
        b"POST /api/v1/auth/json HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (CREDS, len(body), body)
    )


async def measure(
    factory: Callable[[], asyncio.Protocol],
    requests: list[bytes],
    args: argparse.Namespace,
    *,
    expect: bytes,
    warm_up: int,
    profile: cProfile.Profile | None = None,
) -> list[float]:
    driver = Driver(requests, expect=expect)
    clients = [Client(driver, factory(), 40000 + n) for n in range(args.clients)]
    await driver.round(clients, warm_up)
    if profile is not None:
        profile.enable()
    costs = [await driver.round(clients, args.requests) for _ in range(args.rounds)]
    if profile is not None:
        profile.disable()
    for client in clients:
        client.protocol.connection_lost(None)
    return costs


def line(what: str, costs: list[float]) -> str:
    return (
        f"{what}: {min(costs) * 1e6:.1f} µs CPU per request at best, "
        f"{statistics.median(costs) * 1e6:.1f} µs median "
        f"(rounds: {', '.join(f'{c * 1e6:.1f}' for c in costs)})"
    )


async def main(args: argparse.Namespace) -> None:
    requests = [request(i, wrong=args.wrong) for i in range(args.accounts)]
    echo = await measure(Echo, requests, args, expect=b"HTTP/1.1 200 ", warm_up=args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        config = loads(CONFIG.format(root=tmp))
        setup_logging(config)
        metrics = Metrics(services=config.http.metrics_services)
        async with running_app(config, create=True, metrics=metrics) as app:
            await app.directory.bulk_upsert(accounts(args.accounts), replace=False)
            server = HttpServer(app.engine, config.http, admin=app.admin, metrics=metrics)
            profile = cProfile.Profile() if args.profile else None
            costs = await measure(
                server.protocol_factory(),
                requests,
                args,
                expect=b"HTTP/1.1 403 " if args.wrong else b"HTTP/1.1 200 ",
                warm_up=args.accounts,
                profile=profile,
            )
            if profile is not None:
                profile.dump_stats(args.profile)
    password = "wrong" if args.wrong else "right"
    print(line(f"{password} {{PLAIN}} passwords, {args.clients} keep-alive clients", costs))
    print(line("the driver alone (included above)", echo))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--wrong", action="store_true")
    parser.add_argument("--profile", metavar="FILE")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run_loop(main(parse_args(sys.argv[1:])))
