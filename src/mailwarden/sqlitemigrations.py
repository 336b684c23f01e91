"""Versioned SQLite schemas: ``PRAGMA user_version`` counts the steps applied.

Shared by the SQLite directory (directories/sqlite/schema.py) and the SQLite state
store (state/sqlite.py), each with its own list of steps.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence


def apply(
    conn: sqlite3.Connection,
    version: int,
    steps: Sequence[Sequence[str]],
    *,
    with_each: Sequence[str] = (),
) -> None:
    """Apply the steps after ``version``, each in one transaction with its version
    bump (and the ``with_each`` statements). Nothing to do (the usual case) takes no
    write lock, so opening never waits for another process that is writing."""
    for target in range(version + 1, len(steps) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have migrated.
            if conn.execute("PRAGMA user_version").fetchone()[0] < target:
                for statement in (*steps[target - 1], *with_each):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
