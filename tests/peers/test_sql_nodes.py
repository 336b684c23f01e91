"""Two ``mailwarden serve`` nodes sharing one PostgreSQL (own schema) and one Redis.

Node A (127.0.0.2) lists a streaming replica of the database in ``sql.replicas``;
node B (127.0.0.3) does not. A password changed through A is refused on B at
once, though B had the old one in its verified-login cache (B's cache is emptied
too); a ban made on A holds on B; and when the primary stops, A keeps answering
from the replica while B answers with temporary failures, never a wrong password.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.peers.configs import GUARD_RULE_IP
from tests.peers.conftest import private_dir, stop_process
from tests.peers.test_guard_nodes import Node, http, json_auth, status
from tests.peers.test_sql_serve import ADMIN, cli, serve, sql_section, write_node
from tests.redisserver import have_redis, running_redis
from tests.sqlservers import PostgresServer, have_postgres

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(not have_redis(), reason="redis-server is not installed"),
    pytest.mark.skipif(not have_postgres(), reason="PostgreSQL 15 is not installed"),
]

CLIENT = "198.51.100.1"
ATTACKER = "192.0.2.9"


class Cluster:
    def __init__(
        self, primary: PostgresServer, replica: PostgresServer, database: str, a: Node, b: Node
    ) -> None:
        self.database = database
        self.primary = primary
        self.replica = replica
        self.a = a
        self.b = b


def guard(redis_url: str) -> dict[str, Any]:
    return {
        "store": "redis",
        "allow_networks": [],
        "ban_time": 600.0,
        "account_threshold": 0,
        "redis": {"url": redis_url, "key_prefix": "sqlnodes:", "retry_interval": 0.5},
        "rules": [GUARD_RULE_IP],
    }


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with (
        private_dir("sqlnodes") as root,
        private_dir("pgreplica") as replica_root,
        running_redis() as redis,
    ):
        (root / "pg").mkdir(mode=0o711)
        primary = PostgresServer(root / "pg")
        replica: PostgresServer | None = None
        procs: list[subprocess.Popen[Any]] = []
        try:
            primary.start()
            database = primary.create_database()
            replica = primary.make_replica(replica_root)
            replica.start()
            common = {"passwords": {"scheme": "SHA512-CRYPT"}, "guard": guard(redis.url)}
            a = write_node(
                root / "a",
                "127.0.0.2",
                sql_section(primary, database, replicas=[f"{replica.host}:{replica.port}"]),
                **common,
            )
            b = write_node(root / "b", "127.0.0.3", sql_section(primary, database), **common)
            assert cli(a.config, "init").returncode == 0
            done = cli(
                a.config, "user", "add", "alice@example.org", "--password-stdin", stdin="old\n"
            )
            assert done.returncode == 0, done.stderr
            procs = [serve(a), serve(b)]
            yield Cluster(primary, replica, database, a, b)
        finally:
            for proc in procs:
                stop_process(proc)
            if replica is not None:
                replica.stop()
            primary.stop()


def test_a_password_changed_on_node_a_is_refused_on_node_b_at_once(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    assert json_auth(b, "alice@example.org", "old", CLIENT) == 200
    assert status(b)["cache"]["entries"] == 1  # B verified it once and keeps it
    code, reply = http(
        a, "PUT", "/api/v1/accounts/alice@example.org/password", {"password": "new"}, ADMIN
    )
    assert code == 200, reply
    assert json_auth(b, "alice@example.org", "old", CLIENT) == 403
    assert json_auth(b, "alice@example.org", "new", CLIENT) == 200
    assert json_auth(a, "alice@example.org", "old", CLIENT) == 403


def test_a_ban_made_on_node_a_holds_on_node_b(cluster: Cluster) -> None:
    for i in range(3):
        assert json_auth(cluster.a, "alice@example.org", f"guess{i}", ATTACKER) == 403
    assert json_auth(cluster.b, "alice@example.org", "new", ATTACKER) == 403
    assert json_auth(cluster.b, "alice@example.org", "new", CLIENT) == 200


def test_without_the_primary_node_a_reads_the_replica_and_node_b_fails_temporarily(
    cluster: Cluster,
) -> None:
    query = "SELECT password FROM accounts;"
    stored = cluster.primary.run_sql(query, cluster.database)
    deadline = time.monotonic() + 30
    # The replica has caught up with the password change before the primary goes.
    while cluster.replica.run_sql(query, cluster.database) != stored:
        assert time.monotonic() < deadline, "the replica did not catch up"
        time.sleep(0.1)
    cluster.primary.stop()
    try:
        assert json_auth(cluster.a, "alice@example.org", "new", CLIENT) == 200
        assert json_auth(cluster.a, "alice@example.org", "wrong", CLIENT) == 403
        # 500: the JSON API's temporary failure.
        assert json_auth(cluster.b, "alice@example.org", "new", CLIENT) == 500
        assert json_auth(cluster.b, "alice@example.org", "wrong", CLIENT) == 500
        code, _reply = http(
            cluster.a,
            "PUT",
            "/api/v1/accounts/alice@example.org/password",
            {"password": "x"},
            ADMIN,
        )
        assert code == 503  # a write needs the primary
    finally:
        cluster.primary.start()
    assert json_auth(cluster.b, "alice@example.org", "new", CLIENT) == 200
