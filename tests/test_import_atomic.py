"""``mailwarden import passwd-file`` is all or none on SQLite (issue 15, item 5).

An import killed while it writes must leave either nothing or everything behind
(it once committed batches of 5,000), and running it again must complete it
without duplicates. The import runs as a real process and gets SIGKILL as soon as
it is well into writing (its WAL file passed 2 MB, or an account is visible).
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.peers.conftest import stop_process

ACCOUNTS = 30_000
# The WAL of the whole import is about 5 MB; batches of 5,000 committed one by one
# ~0.9 MB each. Past 2 MB the import is well into writing, and batched commits
# would already show accounts.
WAL_WRITING = 2_000_000


def _config(root: Path) -> Path:
    config = root / "mw.toml"
    config.write_text(
        '[directory]\npath = "mw.db"\n'
        '[dovecot]\nclient_socket = "run/auth-client"\nmaster_socket = "run/auth-master"\n'
        'userdb_socket = "run/auth-userdb"\n'
        '[server]\ncontrol_socket = "run/control"\n'
    )
    return config


def _mailwarden(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwarden", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _count(db: Path) -> int:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        count: int = conn.execute("SELECT count(*) FROM accounts").fetchone()[0]
        return count
    finally:
        conn.close()


def test_an_import_killed_while_writing_leaves_nothing_and_a_rerun_completes_it(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    db = tmp_path / "mw.db"
    assert _mailwarden(config, "init").returncode == 0
    passwd = tmp_path / "big.passwd"
    passwd.write_text(
        "".join(
            f"user{i:05d}:{{PLAIN}}pw{i}:{5000 + i}:5000::/home/user{i:05d}::\n"
            for i in range(ACCOUNTS)
        )
    )
    wal = db.with_name(db.name + "-wal")
    command = ["import", "passwd-file", "-q", str(passwd)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailwarden", "-c", str(config), *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if (wal.exists() and wal.stat().st_size > WAL_WRITING) or _count(db) > 0:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(30)
    finally:
        stop_process(proc)
    assert proc.returncode == -signal.SIGKILL, "the import was not caught while writing"
    assert _count(db) in (0, ACCOUNTS)

    done = _mailwarden(config, *command)
    assert done.returncode == 0, done.stderr
    assert _count(db) == ACCOUNTS
    again = _mailwarden(config, *command)
    assert again.returncode == 0, again.stderr
    assert f"0 created, 0 replaced, {ACCOUNTS} existing skipped" in again.stdout
    assert _count(db) == ACCOUNTS
