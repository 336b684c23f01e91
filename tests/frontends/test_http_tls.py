"""The HTTP API over TLS: ``tls_cert``/``tls_key`` from the config, real HTTPS clients.

A throw-away self-signed certificate is made with the ``openssl`` command for each
test; the clients trust exactly that certificate (it is its own CA) and check the
host name, as Dovecot's Lua HTTP client does with ``ssl_client_ca_file``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import http.client
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from mailwarden.auth.engine import Engine
from mailwarden.config import HttpConfig
from mailwarden.errors import ConfigError
from mailwarden.frontends.http import HttpServer, start_http
from tests.helpers import Pem, make_cert

CREDS = "Basic " + base64.b64encode(b"dovecot:apisecret").decode()
CONFIG = HttpConfig(
    enabled=True,
    listen=("127.0.0.1:0",),
    auth_username="dovecot",
    auth_password="apisecret",
    attributes={"rnsMSMailPath": "userdb:mail"},
)


@pytest.fixture
def pem(tmp_path: Path) -> Pem:
    return make_cert(tmp_path)


@pytest_asyncio.fixture
async def server(engine: Engine, pem: Pem, tmp_path: Path) -> AsyncIterator[HttpServer]:
    # Relative names, as in a config file: start_http resolves them.
    config = dataclasses.replace(CONFIG, tls_cert="cert.pem", tls_key="key.pem")
    running = await start_http(engine, config, resolve=lambda p: tmp_path / p)
    yield running
    await running.close()


def client_context(pem: Pem) -> ssl.SSLContext:
    """Verifies the server against ``pem`` only, host name included."""
    return ssl.create_default_context(cafile=str(pem.cert))


def auth_body(user: str, password: str) -> str:
    return json.dumps({"username": user, "password": password, "service": "imap"})


HEADERS = {"Authorization": CREDS, "Content-Type": "application/json"}


def post_twice_on_one_connection(
    address: tuple[str, int], pem: Pem, passwords: tuple[str, str]
) -> list[tuple[int, str | None, bytes, tuple[str, int]]]:
    """Two auth requests over one HTTPS connection (http.client keeps it open)."""
    host, port = address
    conn = http.client.HTTPSConnection(host, port, context=client_context(pem), timeout=10)
    results = []
    try:
        for password in passwords:
            conn.request("POST", "/api/v1/auth/json", auth_body("alice", password), HEADERS)
            response = conn.getresponse()
            body = response.read()
            assert conn.sock is not None, "the server closed the connection"
            local = conn.sock.getsockname()[:2]
            results.append((response.status, response.getheader("Auth-Status"), body, local))
    finally:
        conn.close()
    return results


async def test_https_auth_good_and_bad_password_on_one_kept_alive_connection(
    server: HttpServer, pem: Pem
) -> None:
    good, bad = await asyncio.to_thread(
        post_twice_on_one_connection, server.addresses[0], pem, ("secret", "wrong")
    )
    assert good[:2] == (200, "OK")
    assert json.loads(good[2])["attributes"] == {"rnsMSMailPath": ["maildir:~/Maildir"]}
    assert bad[:3] == (403, "Invalid login or password", b"null")
    # http.client reconnects silently; the same local port proves it did not.
    assert good[3] == bad[3]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
async def test_tls_handshake_offers_only_modern_protocols(server: HttpServer, pem: Pem) -> None:
    host, port = server.addresses[0]
    modern = client_context(pem)
    _, writer = await asyncio.open_connection(host, port, ssl=modern)
    version = writer.get_extra_info("ssl_object").version()
    writer.close()
    assert version in ("TLSv1.2", "TLSv1.3")
    legacy = client_context(pem)
    legacy.minimum_version = ssl.TLSVersion.TLSv1
    legacy.maximum_version = ssl.TLSVersion.TLSv1_1
    legacy.set_ciphers("ALL:@SECLEVEL=0")  # this client can speak TLS 1.1 to servers that do
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.wait_for(asyncio.open_connection(host, port, ssl=legacy), 5)


async def test_a_client_that_does_not_trust_the_certificate_fails_the_handshake(
    server: HttpServer, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    other = make_cert(tmp_path / "other")
    host, port = server.addresses[0]
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.wait_for(asyncio.open_connection(host, port, ssl=client_context(other)), 5)


async def test_plain_http_on_the_tls_port_gets_no_http_answer(server: HttpServer, pem: Pem) -> None:
    host, port = server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    body = auth_body("alice", "secret").encode()
    writer.write(
        b"POST /api/v1/auth/json HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: {CREDS}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(65536), 10)
    except ConnectionError:
        answer = b""
    writer.close()
    # At most a TLS alert record (content type 21), never an HTTP status line.
    assert not answer.startswith(b"HTTP/")
    assert answer == b"" or answer[0] == 21
    # The listener is unharmed and still serves TLS clients.
    good, _ = await asyncio.to_thread(
        post_twice_on_one_connection, server.addresses[0], pem, ("secret", "secret")
    )
    assert good[0] == 200


@pytest.mark.parametrize("broken", ["missing", "not-pem", "wrong-key"])
async def test_an_unusable_certificate_or_key_is_a_config_error(
    engine: Engine, pem: Pem, tmp_path: Path, broken: str
) -> None:
    cert, key = pem.cert, pem.key
    if broken == "missing":
        cert = tmp_path / "absent.pem"
    elif broken == "not-pem":
        key = tmp_path / "garbage.pem"
        key.write_text("not a key\n")
    else:
        other = tmp_path / "other"
        other.mkdir()
        key = make_cert(other).key
    config = dataclasses.replace(CONFIG, tls_cert=str(cert), tls_key=str(key))
    with pytest.raises(ConfigError) as info:
        await start_http(engine, config, resolve=Path)
    assert info.value.key == "http.tls_cert"
