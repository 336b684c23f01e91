"""OAuth2 bearer tokens from a real OpenID provider, through real mail peers.

Node's ``oidc-provider`` (pinned in tests/peers/oidc/, installed by
``scripts/bootstrap.sh test`` into .cache/) runs with a private configuration on a
free loopback port (tests/peers/oidc/provider.mjs). Each test drives its
authorization code flow over HTTP as a mail client's browser would (login form,
consent, code, token endpoint with PKCE), and logs in with the access token it
issued, through ``mailwarden serve`` with ``[oauth2]`` pointed at the provider:

* the Dovecot client socket, a raw XOAUTH2 / OAUTHBEARER exchange;
* Postfix's SMTP AUTH XOAUTH2 (``smtpd_sasl_type = dovecot``);
* IMAP AUTHENTICATE XOAUTH2 on a private Dovecot whose login processes use
  mailwarden's login socket and whose imap process fetches the user over the master
  socket.

The JWT is validated locally against the provider's published keys; an opaque token
(a resource whose server asked for one) is introspected. Refused: another user's
token, a token for another audience, a tampered one, ``alg: none``. A key rotation
(the provider restarted with a new key) is picked up; the provider down makes an
opaque token a temporary failure.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import imaplib
import json
import os
import secrets
import shutil
import smtplib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey

from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.model import Account
from tests.oauth2.issuer import b64, tampered, unsigned
from tests.peers.configs import daemon_toml
from tests.peers.conftest import (
    connectable,
    free_port,
    private_dir,
    running_serve,
    stop_process,
    wait_until,
)
from tests.peers.test_example_config import running_imap, running_postfix
from tests.peers.test_postfix import POSTFIX

ROOT = Path(__file__).resolve().parents[2]
OIDC = ROOT / "tests" / "peers" / "oidc"
NODE = shutil.which("node")
NOBODY = 65534

RESOURCE = "https://imap.example.test/"
OPAQUE = "https://imap.example.test/opaque"
WEBMAIL = "https://webmail.example.test/"
REDIRECT = "http://127.0.0.1:9/cb"  # nothing listens: the code is read from Location
API_SECRET = "apisecret"


def oidc_modules() -> Path | None:
    """Where bootstrap.sh installed the pinned oidc-provider (None: not installed)."""
    digest = hashlib.sha256((OIDC / "package-lock.json").read_bytes()).hexdigest()[:16]
    path = ROOT / ".cache" / f"oidc-provider-{digest}"
    return path if (path / "node_modules" / "oidc-provider" / "package.json").exists() else None


pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        NODE is None or oidc_modules() is None,
        reason="node and oidc-provider are needed (scripts/bootstrap.sh test installs them)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="the peers' sockets and users need root"),
    pytest.mark.skipif(
        not (os.access(POSTFIX, os.X_OK) and os.path.exists("/usr/lib/dovecot/imap-login")),
        reason="postfix and dovecot-imapd are needed",
    ),
]


# --------------------------------------------------------------------------- the provider


def signing_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


class Provider:
    """oidc-provider on a free port, with ``keys`` (the first signs); restartable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.client_secret = secrets.token_urlsafe(16)
        self.introspect_secret = secrets.token_urlsafe(16)
        self.proc: subprocess.Popen[Any] | None = None
        modules = oidc_modules()
        assert modules is not None
        # provider.mjs beside a link to the installed modules: node resolves the
        # package from the script's folder.
        (root / "node_modules").symlink_to(modules / "node_modules")
        shutil.copy(OIDC / "provider.mjs", root / "provider.mjs")

    def start(self, *keys: RSAKey) -> None:
        config = {
            "port": self.port,
            "issuer": self.issuer,
            "jwks": {"keys": [k.as_dict(private=True) for k in keys]},
            "client_secret": self.client_secret,
            "introspect_secret": self.introspect_secret,
            "redirect_uri": REDIRECT,
            "resource": RESOURCE,
            "ttl": 600,
        }
        path = self.root / "provider.json"
        path.write_text(json.dumps(config))
        with (self.root / "provider.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [str(NODE), str(self.root / "provider.mjs"), str(path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = self.proc
        wait_until(
            lambda: proc.poll() is not None or connectable(("127.0.0.1", self.port)),
            "oidc-provider",
        )
        assert proc.poll() is None, (self.root / "provider.log").read_text()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def token(self, login: str, *, resource: str | None = None) -> str:
        """An access token for ``login``, through the authorization code flow."""
        verifier = secrets.token_urlsafe(48)
        challenge = b64(hashlib.sha256(verifier.encode()).digest())
        params = {
            "client_id": "mailclient",
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "scope": "openid mail",
            "state": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if resource is not None:
            params["resource"] = resource
        with httpx.Client(base_url=self.issuer, follow_redirects=False, timeout=20) as http:
            reply = http.get("/auth", params=params)
            location = ""
            # Login, then consent: each an interaction page and a resume of /auth.
            for _ in range(8):
                assert reply.status_code in (302, 303), (reply.status_code, reply.text[:500])
                location = reply.headers["location"]
                if location.startswith(REDIRECT):
                    break
                if "/interaction/" in location:
                    page = http.get(location)
                    form = (
                        {"prompt": "login", "login": login, "password": "any"}
                        if 'name="login"' in page.text
                        else {"prompt": "consent"}
                    )
                    reply = http.post(location, data=form)
                else:
                    reply = http.get(location)
            query = parse_qs(urlsplit(location).query)
            assert "code" in query, location
            answer = http.post(
                "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": query["code"][0],
                    "redirect_uri": REDIRECT,
                    "code_verifier": verifier,
                },
                auth=("mailclient", self.client_secret),
            )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token


# --------------------------------------------------------------------------- mailwarden


async def _accounts(db: Path, home: Path) -> None:
    directory = await SQLiteDirectory.open(db, create=True)
    try:
        await directory.create(
            Account(
                uid="alice",
                mail="alice@example.com",
                password="{PLAIN}secret",
                home=str(home),
                mail_location="maildir:~/Maildir",
                uid_number=NOBODY,
                gid_number=NOBODY,
            )
        )
        await directory.create(Account(uid="bob", mail="bob@example.com", password="{PLAIN}b"))
    finally:
        await directory.close()


def mailwarden_config(root: Path, provider: Provider, http_port: int) -> Path:
    (root / "oauth2.secret").write_text(provider.introspect_secret + "\n")
    path = root / "mailwarden.toml"
    path.write_text(
        daemon_toml(
            http={
                "enabled": True,
                "listen": [f"127.0.0.1:{http_port}"],
                "auth_username": "dovecot",
                "auth_password": API_SECRET,
            },
            dovecot={
                "login_socket": "run/auth-login",
                "login_socket_user": "dovenull",
                "mechanisms": ["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"],
            },
            oauth2={
                "issuer": provider.issuer,
                "audience": [RESOURCE],
                "scope": ["mail"],
                "username_claim": "email",
                # The rotation test must not wait a minute for the next refresh.
                "jwks_refresh_interval": 0.01,
                "introspection_url": f"{provider.issuer}/token/introspection",
                "client_id": "mailwarden",
                "client_secret_file": "oauth2.secret",
            },
        )
    )
    return path


class Site:
    """The provider, mailwarden serve, Postfix and Dovecot, all private."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.provider = Provider(root / "oidc")
        self.http_port = free_port()
        self.config = mailwarden_config(root, self.provider, self.http_port)
        home = root / "home" / "alice"
        for sub in ("cur", "new", "tmp"):
            (home / "Maildir" / sub).mkdir(parents=True)
        for path in [root / "home", home, *home.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)
        asyncio.run(_accounts(root / "mailwarden.db", home))
        self.client_socket = str(root / "run" / "auth-client")
        self.login_socket = str(root / "run" / "auth-login")
        self.master_socket = str(root / "run" / "auth-master")
        self.smtp_port = free_port()
        self.imap_port = free_port()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with private_dir("oauth2") as root:
        (root / "oidc").mkdir()
        s = Site(root)
        s.provider.start(signing_key("k-first"))
        try:
            with (
                running_serve(
                    s.config,
                    ready=(s.client_socket, s.login_socket, ("127.0.0.1", s.http_port)),
                ),
                running_postfix(root, port=s.smtp_port, client_socket=s.client_socket),
                running_imap(
                    root,
                    port=s.imap_port,
                    pop3_port=free_port(),
                    login_socket=s.login_socket,
                    master_socket=s.master_socket,
                ),
            ):
                yield s
        finally:
            s.provider.stop()


def serve_log(site: Site) -> str:
    with contextlib.suppress(OSError):
        return (site.root / "serve.log").read_text()
    return ""


# --------------------------------------------------------------------------- clients


def xoauth2(user: str, token: str) -> bytes:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer(user: str, token: str) -> bytes:
    return f"n,a={user},\x01host=127.0.0.1\x01port=993\x01auth=Bearer {token}\x01\x01".encode()


def socket_login(path: str, mech: str, data: bytes) -> str:
    """One AUTH with an initial response on the Dovecot client socket; a CONT (the
    OAuth error JSON) is answered empty, as clients do. The final reply line."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(20)
        sock.connect(path)
        stream = sock.makefile("rwb")
        stream.write(b"VERSION\t1\t2\nCPID\t4242\n")
        stream.flush()
        for _ in range(100):
            line = stream.readline()
            assert line, "the socket closed during the handshake"
            if line == b"DONE\n":
                break
        resp = base64.b64encode(data).decode()
        stream.write(f"AUTH\t1\t{mech}\tservice=imap\tresp={resp}\n".encode())
        stream.flush()
        for _ in range(3):
            reply = stream.readline().decode().rstrip("\n")
            if not reply.startswith("CONT\t"):
                return reply
            stream.write(b"CONT\t1\t\n")
            stream.flush()
    raise AssertionError("no final reply")


def smtp_xoauth2(port: int, user: str, token: str) -> int:
    """SMTP AUTH XOAUTH2 with an initial response; the final reply code."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        assert "XOAUTH2" in smtp.esmtp_features["auth"].split()
        code, _ = smtp.docmd("AUTH", "XOAUTH2 " + base64.b64encode(xoauth2(user, token)).decode())
        if code == 334:  # the error JSON; the client answers empty, then the failure
            code, _ = smtp.docmd("")
        return code


def imap_xoauth2(port: int, user: str, token: str) -> bool:
    """IMAP AUTHENTICATE XOAUTH2 and a SELECT; whether both succeeded."""
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    sent: list[bytes] = []

    def answer(_challenge: bytes) -> bytes:
        # The first continuation asks for the client data; a second one carries the
        # error JSON, which a client answers with an empty line.
        sent.append(b"")
        return xoauth2(user, token) if len(sent) == 1 else b""

    try:
        try:
            imap.authenticate("XOAUTH2", answer)
        except imaplib.IMAP4.error:
            return False
        return imap.select("INBOX")[0] == "OK"
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            imap.logout()


def http_login(port: int, user: str, token: str) -> httpx.Response:
    """POST /api/v1/auth/json with ``"method": "xoauth2"``: the password is the token."""
    body = {"username": user, "password": token, "service": "imap", "method": "xoauth2"}
    return httpx.post(
        f"http://127.0.0.1:{port}/api/v1/auth/json",
        json=body,
        auth=("dovecot", API_SECRET),
        timeout=30,
    )


def payload_of(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return payload


def first_word(reply: str) -> str:
    return reply.split("\t", maxsplit=1)[0]


# --------------------------------------------------------------------------- tests


def test_a_token_from_the_code_flow_logs_in_on_the_dovecot_client_socket(site: Site) -> None:
    token = site.provider.token("alice@example.com")
    assert token.count(".") == 2  # a JWT: validated locally
    reply = socket_login(site.client_socket, "XOAUTH2", xoauth2("alice@example.com", token))
    assert first_word(reply) == "OK", reply + serve_log(site)
    assert "user=alice" in reply.split("\t")
    reply = socket_login(site.client_socket, "OAUTHBEARER", oauthbearer("alice", token))
    assert first_word(reply) == "OK", reply


def test_the_token_is_refused_for_another_user(site: Site) -> None:
    token = site.provider.token("alice@example.com")
    reply = socket_login(site.client_socket, "XOAUTH2", xoauth2("bob@example.com", token))
    assert first_word(reply) == "FAIL"
    assert "code=temp_fail" not in reply


def test_postfix_smtp_auth_xoauth2(site: Site) -> None:
    token = site.provider.token("alice@example.com")
    assert smtp_xoauth2(site.smtp_port, "alice@example.com", token) == 235
    assert smtp_xoauth2(site.smtp_port, "bob@example.com", token) == 535


def test_imap_on_dovecot_that_uses_mailwarden(site: Site) -> None:
    token = site.provider.token("alice@example.com")
    assert imap_xoauth2(site.imap_port, "alice@example.com", token)
    assert not imap_xoauth2(site.imap_port, "alice@example.com", tampered(token, scope="x"))


def test_the_http_api_takes_the_token_when_the_caller_says_so(site: Site) -> None:
    token = site.provider.token("alice@example.com")
    answer = http_login(site.http_port, "alice", token)
    assert answer.status_code == 200, answer.text
    assert answer.headers["auth-user"] == "alice"
    assert http_login(site.http_port, "bob", token).status_code == 403


def test_an_opaque_token_is_introspected(site: Site) -> None:
    token = site.provider.token("alice@example.com", resource=OPAQUE)
    assert token.count(".") != 2
    reply = socket_login(site.client_socket, "XOAUTH2", xoauth2("alice", token))
    assert first_word(reply) == "OK", reply + serve_log(site)
    assert smtp_xoauth2(site.smtp_port, "alice", token) == 235
    reply = socket_login(site.client_socket, "XOAUTH2", xoauth2("bob", token))
    assert first_word(reply) == "FAIL"


def test_tokens_the_provider_did_not_make_for_this_service_are_refused(site: Site) -> None:
    good = site.provider.token("alice@example.com")
    other_audience = site.provider.token("alice@example.com", resource=WEBMAIL)
    forged = [
        other_audience,
        tampered(good, email="bob@example.com"),
        unsigned(payload_of(good)),
    ]
    for token in forged:
        reply = socket_login(site.client_socket, "XOAUTH2", xoauth2("alice", token))
        assert first_word(reply) == "FAIL", reply
        assert "code=temp_fail" not in reply
    log = serve_log(site)
    assert "wrong audience" in log
    assert "signature not valid" in log
    assert "algorithm 'none' not allowed" in log
    assert good not in log


def test_a_key_rotation_at_the_provider_is_picked_up(site: Site) -> None:
    before = site.provider.token("alice@example.com")
    assert first_word(socket_login(site.client_socket, "XOAUTH2", xoauth2("alice", before))) == (
        "OK"
    )
    site.provider.stop()
    site.provider.start(signing_key("k-second"))
    after = site.provider.token("alice@example.com")
    reply = socket_login(site.client_socket, "XOAUTH2", xoauth2("alice", after))
    assert first_word(reply) == "OK", reply + serve_log(site)
    assert imap_xoauth2(site.imap_port, "alice@example.com", after)


def test_the_provider_down_is_a_temporary_failure_never_a_refusal(site: Site) -> None:
    token = site.provider.token("alice@example.com", resource=OPAQUE)
    site.provider.stop()
    try:
        reply = socket_login(site.client_socket, "XOAUTH2", xoauth2("alice", token))
        assert first_word(reply) == "FAIL"
        assert "code=temp_fail" in reply.split("\t"), reply
        assert smtp_xoauth2(site.smtp_port, "alice", token) == 454
        assert http_login(site.http_port, "alice", token).status_code == 500
    finally:
        site.provider.start(signing_key("k-third"))
