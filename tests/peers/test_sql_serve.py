"""``mailwarden serve`` on the SQL directory (own schema) against real servers.

End to end: ``init`` and ``user add`` through the CLI, a login over the Dovecot
client socket, a password change through the admin API, the old password refused.
Faults: the database SIGKILLed under a bounded load of logins and restarted; only
temporary failures follow and the service recovers without a restart (the time
it took is printed; docs/sql.md records it).
"""

from __future__ import annotations

import base64
import concurrent.futures
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.peers.configs import daemon_toml
from tests.peers.conftest import private_dir, stop_process, wait_until
from tests.peers.test_guard_nodes import (
    Node,
    free_port_on,
    http,
    json_auth,
    spawn,
    status,
    wait_serving,
)
from tests.sqlservers import (
    PASSWORD,
    USER,
    SqlServer,
)
from tests.staffing import ADMIN_TOKEN, seed_tokens

pytestmark = pytest.mark.peer

ADMIN = "Bearer " + ADMIN_TOKEN


def sql_section(server: SqlServer, database: str, **extra: Any) -> dict[str, Any]:
    return {
        "driver": server.name,
        "hosts": [f"{server.host}:{server.port}"],
        "database": database,
        "user": USER,
        "password": PASSWORD,
        "timeout": 2.0,
        "connect_timeout": 1.0,
        "backoff_max": 0.2,
        "poll_interval": 0.2,
        **extra,
    }


def node_toml(sql: dict[str, Any], address: str, port: int, **sections: Any) -> str:
    return daemon_toml(
        directory={"backend": "sql", "path": None},
        sql=sql,
        state={"path": "state.db"},
        http={
            "enabled": True,
            "listen": [f"{address}:{port}"],
            "auth_username": "dovecot",
            "auth_password": "apisecret",
            "admin_token": "admintoken",
        },
        **sections,
    )


def cli(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwarden", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_node(root: Path, address: str, sql: dict[str, Any], **sections: Any) -> Node:
    root.mkdir()
    node = Node(root, root / "mailwarden.toml", address, free_port_on(address))
    node.config.write_text(node_toml(sql, address, node.port, **sections))
    seed_tokens(root / "state.db")
    return node


def serve(node: Node) -> subprocess.Popen[Any]:
    proc = spawn(node)
    wait_serving(proc, node)
    return proc


def dovecot_login(path: Path, user: str, password: str) -> str:
    """One AUTH PLAIN over the Dovecot client socket: the reply line's first word."""
    resp = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"VERSION\t1\t2\nCPID\t4242\n")
        buf = b""
        while b"DONE\n" not in buf:
            chunk = sock.recv(4096)
            assert chunk, "the socket closed during the handshake"
            buf += chunk
        sock.sendall(f"AUTH\t1\tPLAIN\tservice=imap\tresp={resp}\n".encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            assert chunk, "the socket closed before the reply"
            reply += chunk
    return reply.decode().split("\t")[0]


def stored_passwords(server: SqlServer, database: str) -> str:
    return server.run_sql("SELECT password FROM accounts;", database)


def test_cli_login_and_admin_password_change_through_serve_on_sql(
    sql_server: SqlServer,
) -> None:
    with private_dir("sqlserve") as root:
        database = sql_server.create_database()
        node = write_node(
            root / "a",
            "127.0.0.2",
            sql_section(sql_server, database),
            passwords={"scheme": "SHA512-CRYPT", "rehash": "weaker"},
        )
        done = cli(node.config, "init")
        assert done.returncode == 0, done.stderr
        done = cli(
            node.config,
            *("user", "add", "alice@example.org", "--scheme", "PLAIN", "--password-stdin"),
            stdin="one\n",
        )
        assert done.returncode == 0, done.stderr
        proc = serve(node)
        try:
            client = node.root / "run" / "auth-client"
            assert dovecot_login(client, "alice@example.org", "one") == "OK"
            assert dovecot_login(client, "alice@example.org", "two") == "FAIL"
            # Rehash on login: the PLAIN value becomes SHA512-CRYPT, in the background.
            wait_until(
                lambda: "{SHA512-CRYPT}" in stored_passwords(sql_server, database),
                "the rehash on login",
                timeout=10,
            )
            code, reply = http(
                node,
                "PUT",
                "/api/v1/accounts/alice@example.org/password",
                {"password": "two"},
                ADMIN,
            )
            assert code == 200, reply
            assert dovecot_login(client, "alice@example.org", "one") == "FAIL"
            assert dovecot_login(client, "alice@example.org", "two") == "OK"
        finally:
            stop_process(proc)


# ------------------------------------------------------------------ faults


#: Bounds of the load: requests in flight, and the most it may send.
WORKERS = 4
MAX_REQUESTS = 20_000
MAX_SECONDS = 90.0


def test_killing_the_database_under_load_gives_only_temporary_failures(
    killable_sql_server: SqlServer,
) -> None:
    server = killable_sql_server
    with private_dir("sqlfault") as root:
        sql = sql_section(killable_sql_server, killable_sql_server.create_database())
        node = write_node(root / "a", "127.0.0.2", sql, passwords={"scheme": "PLAIN"})
        assert cli(node.config, "init").returncode == 0
        for i in range(WORKERS):
            done = cli(
                node.config,
                "user",
                "add",
                f"u{i}@example.org",
                "--password-stdin",
                stdin=f"right{i}\n",
            )
            assert done.returncode == 0, done.stderr
        proc = serve(node)
        wrong: list[str] = []
        answers: dict[int, int] = {}
        state = {"stop": False, "sent": 0}
        recovered_at: list[float] = []
        restarted_at: list[float] = []

        def load(i: int) -> None:
            n = 0
            started = time.monotonic()
            while not state["stop"] and state["sent"] < MAX_REQUESTS:
                assert time.monotonic() - started < MAX_SECONDS
                n += 1
                state["sent"] += 1
                right = n % 2 == 0
                code = json_auth(
                    node, f"u{i}@example.org", f"right{i}" if right else "nope", "198.51.100.7"
                )
                answers[code] = answers.get(code, 0) + 1
                if (right and code == 403) or (not right and code == 200):
                    wrong.append(f"u{i} right={right}: {code}")
                if right and code == 200 and restarted_at and not recovered_at:
                    recovered_at.append(time.monotonic())

        try:
            with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
                futures = [pool.submit(load, i) for i in range(WORKERS)]
                time.sleep(1.0)
                killed_at = time.monotonic()
                killable_sql_server.kill()
                time.sleep(1.0)
                killable_sql_server.start()
                restarted_at.append(time.monotonic())
                deadline = time.monotonic() + 30
                while not recovered_at and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.5)
                state["stop"] = True
                for future in futures:
                    future.result()
            assert recovered_at, f"no right password was accepted after the restart: {answers}"
            assert not wrong, wrong[:10]
            # 500 is the JSON API's temporary failure (Nauthilus's convention).
            assert set(answers) <= {200, 403, 500}, answers
            assert answers.get(500, 0) > 0, answers  # the outage was seen
            assert "Traceback" not in (node.root / "serve.log").read_text()
            after_restart = recovered_at[0] - restarted_at[0]
            down = restarted_at[0] - killed_at
            print(
                f"\n{server.name}: down {down:.2f} s; first right login accepted "
                f"{after_restart:.3f} s after the server was up; answers {answers}"
            )
        finally:
            state["stop"] = True
            stop_process(proc)


def test_a_change_made_by_another_process_empties_the_daemons_cache(
    sql_server: SqlServer,
) -> None:
    """The change feed end to end: the CLI (another process, no shared guard store)
    edits an account, and the daemon drops its cached login of it (NOTIFY on
    PostgreSQL, the polled change log on MariaDB)."""
    with private_dir("sqlfeed") as root:
        sql = sql_section(sql_server, sql_server.create_database())
        node = write_node(root / "a", "127.0.0.2", sql, passwords={"scheme": "SHA512-CRYPT"})
        assert cli(node.config, "init").returncode == 0
        for uid in ("alice@example.org", "bob@example.org"):
            done = cli(node.config, "user", "add", uid, "--password-stdin", stdin="pw\n")
            assert done.returncode == 0, done.stderr
        proc = serve(node)
        try:

            def both_cached() -> bool:
                # The feed's start drops everything once (nothing it missed may stay
                # cached), which can fall after the first logins: log in again then.
                for uid in ("alice@example.org", "bob@example.org"):
                    assert json_auth(node, uid, "pw", "198.51.100.7") == 200
                return bool(status(node)["cache"]["entries"] == 2)

            wait_until(both_cached, "two cached logins", timeout=10)
            done = cli(node.config, "user", "set", "alice@example.org", "mail_host=mx2")
            assert done.returncode == 0, done.stderr
            wait_until(lambda: status(node)["cache"]["entries"] == 1, "the feed", timeout=10)
        finally:
            stop_process(proc)
