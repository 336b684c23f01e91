"""HTTP API benchmark: ``POST /api/v1/auth/json`` with keep-alive at 1, 16 and 64 clients.

The server (uvicorn + httptools, the real HttpApi and Engine over a MemoryDirectory)
runs in a child process so the load generator does not share its event loop; each
client is one keep-alive connection sending the seed script's JSON body in a loop.
The account's password is ``{PLAIN}`` by default so the figures measure the HTTP
path and the engine, not a password hash (``--scheme SHA512-CRYPT`` to include one).

Bounded: each level stops after ``--requests`` answers or ``--seconds`` seconds.

Usage: ``python bench/http_auth.py [--requests N] [--seconds S] [--scheme S]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import make_config

import children
from mailwarden import schemes
from mailwarden.auth.engine import Engine
from mailwarden.config import HttpConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.frontends.http import start_http
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account

LEVELS = (1, 16, 64)
CREDS = "Basic " + base64.b64encode(b"bench:bench").decode()


def serve(conn: Connection, scheme: str) -> None:
    async def main() -> None:
        directory = MemoryDirectory()
        stored = "{PLAIN}secret" if scheme == "PLAIN" else schemes.generate(b"secret", scheme)
        await directory.create(Account(uid="alice", password=stored, mail_location="maildir:~/M"))
        hasher = Hasher(workers=1)
        config = make_config(passwords={"scheme": "SHA512-CRYPT", "rehash": "never"})
        engine = Engine(directory=directory, hasher=hasher, config=config)
        http = HttpConfig(listen=("127.0.0.1:0",), auth_username="bench", auth_password="bench")
        server = await start_http(engine, http, resolve=Path)
        conn.send(server.addresses[0][1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await server.close()
        hasher.close()

    asyncio.run(main())


async def client(port: int, deadline: float, budget: list[int], latencies: list[float]) -> None:
    body = json.dumps(
        {"username": "alice", "password": "secret", "service": "imap", "client_ip": "127.0.0.1"}
    ).encode()
    request = (
        f"POST /api/v1/auth/json HTTP/1.1\r\nHost: bench\r\nAuthorization: {CREDS}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while budget[0] > 0 and time.monotonic() < deadline:
            budget[0] -= 1
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode("latin-1"))
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


async def level(port: int, clients: int, requests: int, seconds: float) -> None:
    latencies: list[float] = []
    budget = [requests]
    start = time.monotonic()
    await asyncio.gather(
        *(client(port, start + seconds, budget, latencies) for _ in range(clients))
    )
    elapsed = time.monotonic() - start
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"clients={clients:3d}  requests={len(ordered):6d}  auth/s={len(ordered) / elapsed:8.0f}"
        f"  p50={statistics.median(ordered) * 1000:6.2f} ms  p99={p99 * 1000:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--scheme", default="PLAIN")
    args = parser.parse_args()
    ours, theirs = children.MP.Pipe()
    proc = children.MP.Process(target=serve, args=(theirs, args.scheme))
    proc.start()
    try:
        if not ours.poll(20):
            raise SystemExit("server did not start")
        port = ours.recv()
        print(f"POST /api/v1/auth/json, keep-alive, scheme={args.scheme}")
        for clients in LEVELS:
            asyncio.run(level(port, clients, args.requests, args.seconds))
    finally:
        ours.send("stop")
        proc.join(20)
        if proc.is_alive():
            proc.kill()
            proc.join(10)


if __name__ == "__main__":
    main()
