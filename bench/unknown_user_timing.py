"""Does the time of a refusal say whether an account exists? (issue 15, item 6)

Starts ``mailwarden serve`` on a site like the one of the report: accounts imported
as SHA512-CRYPT while the policy scheme is ARGON2ID (the default), guard and failure
delays off so that only the verification is measured. Then, on each front end — the
Dovecot client socket, the HTTP JSON endpoint and the web sign-in — it sends
``--samples`` wrong passwords for a real account and as many for unknown names,
alternating (a fresh password and name each time, so no cache answers), one request
at a time, and prints both medians and the two-sided Mann-Whitney p-value. A small p
(say below 0.01) means an observer can tell the two apart; before the fix the medians
were about 5 vs 260 ms.

Usage: ``.venv/bin/python bench/unknown_user_timing.py [--samples 500] [--accounts 20]``
(a few minutes in all). Every child process is stopped at the end. Timing belongs
here, never in the test suite.

Measured on a shared 2-vCPU VM (500 samples each, 500 SHA512-CRYPT accounts)::

                    before (policy-scheme dummy)     after (auth/dummies.py)
    dovecot socket  wrong 4.21  unknown 324.06 ms    wrong 1.84  unknown 1.81 ms  p = 0.003
    http json       wrong 4.03  unknown 292.00 ms    wrong 1.99  unknown 1.97 ms  p = 0.22
    web sign-in     wrong 3.50  unknown 244.21 ms    wrong 1.93  unknown 1.90 ms  p = 2e-6
    (before: p = 6e-165 on each)

What is left is tens of microseconds, the other way round: an existing account's row
is decoded and its stored value parsed, an unknown name has neither. Loopback and 500
samples show it; a network's jitter hides it far better than it hid 300 ms.

With ``--accounts`` as large as ``--samples`` (the default) every real account is
asked once, like every unknown name: the SQLite directory keeps found accounts in
memory, never misses, so an account asked again answers about 0.2 ms faster than
a name asked for the first time — a directory cache effect, not the password check
(``--accounts 20`` shows it on the Dovecot socket).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import math
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailwarden import schemes
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.model import Account

CONFIG = """\
[directory]
path = "mailwarden.db"

[server]
control_socket = "run/control"

[dovecot]
client_socket = "run/auth-client"
master_socket = "run/auth-master"
userdb_socket = "run/auth-userdb"
failure_delay = 0

[http]
enabled = true
listen = ["127.0.0.1:{port}"]
auth_username = "bench"
auth_password = "bench"

[guard]
enabled = false

[log]
level = "warning"
"""

BASIC = "Basic " + base64.b64encode(b"bench:bench").decode()


def mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation with tie
    correction; fine for samples of hundreds)."""
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    n1, n2 = len(a), len(b)
    r1 = sum(r for r, (_, side) in zip(ranks, pooled, strict=True) if side == 0)
    u = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    if sigma == 0:
        return 1.0
    z = (abs(u - n1 * n2 / 2) - 0.5) / sigma
    return math.erfc(max(z, 0.0) / math.sqrt(2))


# --------------------------------------------------------------------------- clients


class DovecotClient:
    """One connection to the client socket, AUTH PLAIN one request at a time."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")
        self.file.write(f"VERSION\t1\t2\nCPID\t{os.getpid()}\n".encode())
        self.file.flush()
        while self.file.readline() not in (b"DONE\n", b""):
            pass
        self.ids = 0

    def attempt(self, user: str, password: str) -> None:
        self.ids += 1
        resp = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.file.write(f"AUTH\t{self.ids}\tPLAIN\tservice=imap\tresp={resp}\n".encode())
        self.file.flush()
        line = self.file.readline()
        if not line.startswith(b"FAIL\t"):
            raise RuntimeError(f"expected FAIL, got {line!r}")

    def close(self) -> None:
        self.sock.close()


class HttpJson:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def attempt(self, user: str, password: str) -> None:
        body = json.dumps({"username": user, "password": password, "service": "imap"})
        self.conn.request(
            "POST",
            "/api/v1/auth/json",
            body,
            {"Authorization": BASIC, "Content-Type": "application/json"},
        )
        reply = self.conn.getresponse()
        reply.read()
        if reply.status == 200:
            raise RuntimeError("a wrong password was accepted")

    def close(self) -> None:
        self.conn.close()


class WebSignIn:
    """The user sign-in form: its pre-session cookie and CSRF token, then POSTs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", "/ui/login")
        reply = self.conn.getresponse()
        page = reply.read().decode()
        cookie = reply.getheader("Set-Cookie", "")
        self.cookie = cookie.split(";", 1)[0]
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        if found is None or not self.cookie:
            raise RuntimeError("no sign-in form")
        self.csrf = found.group(1)

    def attempt(self, user: str, password: str) -> None:
        body = urllib.parse.urlencode({"username": user, "password": password, "csrf": self.csrf})
        self.conn.request(
            "POST",
            "/ui/login",
            body,
            {
                "Cookie": self.cookie,
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": f"http://127.0.0.1:{self.port}",
            },
        )
        reply = self.conn.getresponse()
        page = reply.read()
        if b"invalid login" not in page:
            raise RuntimeError(f"expected 'invalid login', got {reply.status}")

    def close(self) -> None:
        self.conn.close()


Attempt = Callable[[str, str], None]


def measure(name: str, attempt: Attempt, samples: int, accounts: int) -> None:
    wrong: list[float] = []
    unknown: list[float] = []
    for i in range(samples):
        for user, into in ((f"user{i % accounts}", wrong), (f"nobody-{i}", unknown)):
            guess = secrets.token_hex(8)  # a fresh one: no cache may answer
            start = time.perf_counter()
            attempt(user, guess)
            into.append(time.perf_counter() - start)
    p = mann_whitney_p(wrong, unknown)
    print(
        f"{name:16s} wrong {statistics.median(wrong) * 1000:8.2f} ms   "
        f"unknown {statistics.median(unknown) * 1000:8.2f} ms   "
        f"Mann-Whitney p = {p:.3g}   (n = {samples} each)"
    )


# --------------------------------------------------------------------------- the site


async def populate(path: Path, accounts: int, scheme: str) -> None:
    directory = await SQLiteDirectory.open(path, create=True, readers=1)
    try:
        for i in range(accounts):
            stored = schemes.generate(f"pw{i}".encode(), scheme)
            await directory.create(Account(uid=f"user{i}", password=stored))
    finally:
        await directory.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(proc: subprocess.Popen[bytes], path: Path, port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("mailwarden serve stopped:\n" + log.read_text())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            if path.exists():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("mailwarden serve did not start:\n" + log.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--scheme", default="SHA512-CRYPT", help="of the imported accounts")
    a = parser.parse_args()
    if a.samples < 2 or a.accounts < 1:
        parser.error("--samples at least 2, --accounts at least 1")
    root = Path(tempfile.mkdtemp(prefix="mw-timing-"))
    try:
        asyncio.run(populate(root / "mailwarden.db", a.accounts, a.scheme))
        port = free_port()
        (root / "mailwarden.toml").write_text(CONFIG.format(port=port))
        log = root / "serve.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mailwarden", "--config", "mailwarden.toml", "serve"],
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            socket_path = root / "run" / "auth-client"
            wait_ready(proc, socket_path, port, log)
            print(f"accounts: {a.accounts} x {a.scheme}; policy scheme: the default (ARGON2ID)")
            for name, make in (
                ("dovecot socket", lambda: DovecotClient(str(socket_path))),
                ("http json", lambda: HttpJson(port)),
                ("web sign-in", lambda: WebSignIn(port)),
            ):
                client = make()
                try:
                    client.attempt("warm-up", "x")
                    measure(name, client.attempt, a.samples, a.accounts)
                finally:
                    client.close()
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
