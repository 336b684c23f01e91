"""Debian's nginx mail proxy using mailwarden as its ``auth_http`` server.

nginx (with libnginx-mod-mail) runs in the foreground with a private prefix and
config, IMAP and POP3 on free loopback ports. Two small line-based backends stand
for two mail hosts; each names itself in its replies, so a test sees which host a
user was routed to. Everything is stopped at the end.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailwarden.auth.engine import Engine
from mailwarden.config import HttpConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.frontends.http import HttpServer, start_http
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account
from tests.helpers import make_config
from tests.peers.conftest import START_TIMEOUT, connectable, private_dir, stop_process, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MAIL_MODULE = Path("/usr/lib/nginx/modules/ngx_mail_module.so")

pytestmark = pytest.mark.peer

T = TypeVar("T")

CONFIG = """\
load_module {module};
daemon off;
master_process off;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{
  worker_connections 64;
}}
mail {{
  server_name mail.test;
  auth_http 127.0.0.1:{api}/api/v1/auth/nginx;
  auth_http_header Authorization "{creds}";
  proxy_pass_error_message on;
  server {{
    listen 127.0.0.1:{imap};
    protocol imap;
    imap_auth plain login;
  }}
  server {{
    listen 127.0.0.1:{pop3};
    protocol pop3;
    pop3_auth plain;
  }}
}}
"""


class Backend:
    """A tiny IMAP or POP3 server that accepts any login and names itself."""

    def __init__(self, name: str, protocol: str) -> None:
        self.name = name
        self.protocol = protocol
        self.server: asyncio.Server | None = None
        self.seen: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        greeting = "* OK ready" if self.protocol == "imap" else "+OK ready"
        writer.write(f"{greeting}\r\n".encode())
        tag: str | None = None
        try:
            for _ in range(20):
                line = await asyncio.wait_for(reader.readline(), 10)
                if not line:
                    break
                self.seen.append(line)
                words = line.decode("latin-1").split()
                if self.protocol == "pop3":
                    writer.write(f"+OK {self.name}\r\n".encode())
                elif line.rstrip().endswith(b"}"):
                    # nginx sends LOGIN with literals, under the client's own tag.
                    tag = tag or words[0]
                    writer.write(b"+ go ahead\r\n")
                elif tag is not None:
                    writer.write(f"{tag} OK logged in\r\n".encode())
                    tag = None
                else:
                    writer.write(f"{words[0] if words else '*'} OK {self.name}\r\n".encode())
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port


class World:
    """The HTTP API and the backends on one event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="nginx-world")
        self._thread.start()
        self.hasher = Hasher(workers=1)
        self.backends = [
            Backend(name, proto) for name in ("mx1", "mx2") for proto in ("imap", "pop3")
        ]
        self.api: HttpServer | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(START_TIMEOUT)

    async def _start(self) -> int:
        ports = [await b.start() for b in self.backends]
        routes: dict[str, dict[str, str]] = {}
        for backend, port in zip(self.backends, ports, strict=True):
            routes.setdefault(backend.name, {})[backend.protocol] = f"127.0.0.1:{port}"
        directory = MemoryDirectory()
        await directory.create(Account(uid="alice", password="{PLAIN}secret", mail_host="mx1"))
        await directory.create(Account(uid="erin", password="{PLAIN}secret", mail_host="mx2"))
        engine = Engine(
            directory=directory,
            hasher=self.hasher,
            config=make_config(passwords={"scheme": "SHA512-CRYPT", "rehash": "never"}),
        )
        config = HttpConfig(
            listen=("127.0.0.1:0",),
            auth_username="nginx",
            auth_password="nginx-secret",
            nginx_backends=routes,
        )
        self.api = await start_http(engine, config, resolve=Path)
        return self.api.addresses[0][1]

    def start(self) -> int:
        return self.run(self._start())

    async def _close(self) -> None:
        if self.api is not None:
            await self.api.close()
        for backend in self.backends:
            if backend.server is not None:
                backend.server.close()

    def close(self) -> None:
        self.run(self._close())
        self.hasher.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def nginx() -> Iterator[dict[str, int]]:
    if shutil.which(NGINX) is None or not MAIL_MODULE.exists():
        pytest.skip("nginx / libnginx-mod-mail is not installed")
    world = World()
    try:
        api = world.start()
        with private_dir("nginx") as root:
            ports = {"imap": free_port(), "pop3": free_port()}
            creds = "Basic " + base64.b64encode(b"nginx:nginx-secret").decode()
            conf = root / "nginx.conf"
            conf.write_text(
                CONFIG.format(module=MAIL_MODULE, root=root, api=api, creds=creds, **ports)
            )
            proc = subprocess.Popen(
                [NGINX, "-c", str(conf), "-p", str(root), "-e", str(root / "error.log")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                wait_until(
                    lambda: proc.poll() is not None or connectable(("127.0.0.1", ports["pop3"])),
                    "nginx",
                )
                assert proc.poll() is None, (root / "error.log").read_text()
                yield ports
            finally:
                stop_process(proc, sig=15)
    finally:
        world.close()


def converse(port: int, lines: list[str]) -> list[str]:
    """Send each line after reading one reply line; returns the reply lines."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        stream = sock.makefile("rwb")
        replies.append(stream.readline().decode().strip())
        for line in lines:
            stream.write(f"{line}\r\n".encode())
            stream.flush()
            replies.append(stream.readline().decode().strip())
    return replies


@pytest.mark.parametrize(("user", "host"), [("alice", "mx1"), ("erin", "mx2")])
def test_imap_logins_are_proxied_to_the_users_mail_host(
    nginx: dict[str, int], user: str, host: str
) -> None:
    replies = converse(nginx["imap"], [f"a LOGIN {user} secret", "b NOOP"])
    assert replies[1].startswith("a OK"), replies
    assert replies[2] == f"b OK {host}", replies


@pytest.mark.parametrize(("user", "host"), [("alice", "mx1"), ("erin", "mx2")])
def test_pop3_logins_are_proxied_to_the_users_mail_host(
    nginx: dict[str, int], user: str, host: str
) -> None:
    replies = converse(nginx["pop3"], [f"USER {user}", "PASS secret", "NOOP"])
    assert replies[2].startswith("+OK"), replies
    assert replies[3] == f"+OK {host}", replies


def test_a_wrong_password_is_refused_by_nginx(nginx: dict[str, int]) -> None:
    replies = converse(nginx["imap"], ["a LOGIN alice wrong"])
    assert replies[1].startswith("a NO"), replies
